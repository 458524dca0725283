//! A minimal FFI of NVIDIA's video decoder (`nvcuvid.h` / `cuviddec.h` of the
//! Video Codec SDK): the parser and the decoder, loaded at run time from
//! `libnvcuvid.so.1` (the driver ships it; nothing is needed at build time).
//!
//! Struct layouts follow the SDK headers field by field; fields this crate
//! does not use are reserved words kept zero. Sizes are asserted below.
// The SDK's names are kept, so the code reads against the headers.
#![allow(
    unsafe_code,
    non_snake_case,
    non_camel_case_types,
    clippy::upper_case_acronyms
)]

use std::ffi::c_void;

pub type CUresult = i32;
pub type CUvideoparser = *mut c_void;
pub type CUvideodecoder = *mut c_void;
pub type CUvideoctxlock = *mut c_void;
pub type CUstream = *mut c_void;

/// `cudaVideoCodec`.
pub const CODEC_H264: i32 = 4;
/// `cudaVideoCodec_HEVC`.
pub const CODEC_HEVC: i32 = 8;
/// `cudaVideoChromaFormat_420`.
pub const CHROMA_420: i32 = 1;
/// `cudaVideoSurfaceFormat_NV12`.
pub const SURFACE_NV12: i32 = 0;
/// `cudaVideoSurfaceFormat_P016` (10-bit samples in the high bits: P010).
pub const SURFACE_P016: i32 = 1;
/// `cudaVideoDeinterlaceMode_Weave` / `_Adaptive`.
pub const DEINTERLACE_WEAVE: i32 = 0;
pub const DEINTERLACE_ADAPTIVE: i32 = 2;
/// `cudaVideoCreate_PreferCUVID`.
pub const CREATE_PREFER_CUVID: u64 = 4;
/// `CUvideopacketflags`.
pub const PKT_ENDOFSTREAM: u64 = 0x01;
pub const PKT_TIMESTAMP: u64 = 0x02;
pub const PKT_NOTIFY_EOS: u64 = 0x10;

/// `CUVIDEOFORMAT`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CUVIDEOFORMAT {
    pub codec: i32,
    pub frame_rate_num: u32,
    pub frame_rate_den: u32,
    pub progressive_sequence: u8,
    pub bit_depth_luma_minus8: u8,
    pub bit_depth_chroma_minus8: u8,
    pub min_num_decode_surfaces: u8,
    pub coded_width: u32,
    pub coded_height: u32,
    pub display_left: i32,
    pub display_top: i32,
    pub display_right: i32,
    pub display_bottom: i32,
    pub chroma_format: i32,
    pub bitrate: u32,
    pub display_aspect_x: i32,
    pub display_aspect_y: i32,
    pub video_signal_description: [u8; 4],
    pub seqhdr_data_length: u32,
}

/// `CUVIDPARSERDISPINFO`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CUVIDPARSERDISPINFO {
    pub picture_index: i32,
    pub progressive_frame: i32,
    pub top_field_first: i32,
    pub repeat_first_field: i32,
    pub timestamp: i64,
}

/// `CUVIDPICPARAMS`: only passed from the parser to the decoder.
pub enum CUVIDPICPARAMS {}

pub type PFNVIDSEQUENCECALLBACK = unsafe extern "C" fn(*mut c_void, *mut CUVIDEOFORMAT) -> i32;
pub type PFNVIDDECODECALLBACK = unsafe extern "C" fn(*mut c_void, *mut CUVIDPICPARAMS) -> i32;
pub type PFNVIDDISPLAYCALLBACK = unsafe extern "C" fn(*mut c_void, *mut CUVIDPARSERDISPINFO) -> i32;

/// `CUVIDPARSERPARAMS` (bAnnexb / bMemoryOptimize bits and the operating
/// point / SEI callbacks of newer SDKs are left zero, their defaults).
#[repr(C)]
pub struct CUVIDPARSERPARAMS {
    pub CodecType: i32,
    pub ulMaxNumDecodeSurfaces: u32,
    pub ulClockRate: u32,
    pub ulErrorThreshold: u32,
    pub ulMaxDisplayDelay: u32,
    pub uReserved1: [u32; 5],
    pub pUserData: *mut c_void,
    pub pfnSequenceCallback: Option<PFNVIDSEQUENCECALLBACK>,
    pub pfnDecodePicture: Option<PFNVIDDECODECALLBACK>,
    pub pfnDisplayPicture: Option<PFNVIDDISPLAYCALLBACK>,
    pub pvReserved2: [*mut c_void; 7],
    pub pExtVideoInfo: *mut c_void,
}

/// `CUVIDSOURCEDATAPACKET`.
#[repr(C)]
pub struct CUVIDSOURCEDATAPACKET {
    pub flags: u64,
    pub payload_size: u64,
    pub payload: *const u8,
    pub timestamp: i64,
}

/// `CUVIDDECODECREATEINFO`.
#[repr(C)]
pub struct CUVIDDECODECREATEINFO {
    pub ulWidth: u64,
    pub ulHeight: u64,
    pub ulNumDecodeSurfaces: u64,
    pub CodecType: i32,
    pub ChromaFormat: i32,
    pub ulCreationFlags: u64,
    pub bitDepthMinus8: u64,
    pub ulIntraDecodeOnly: u64,
    pub ulMaxWidth: u64,
    pub ulMaxHeight: u64,
    pub Reserved1: u64,
    pub display_area: [i16; 4],
    pub OutputFormat: i32,
    pub DeinterlaceMode: i32,
    pub ulTargetWidth: u64,
    pub ulTargetHeight: u64,
    pub ulNumOutputSurfaces: u64,
    pub vidLock: CUvideoctxlock,
    pub target_rect: [i16; 4],
    pub enableHistogram: u64,
    pub Reserved2: [u64; 4],
}

/// `CUVIDRECONFIGUREDECODERINFO` (`cuvidReconfigureDecoder`, SDK 9.0+).
#[repr(C)]
pub struct CUVIDRECONFIGUREDECODERINFO {
    pub ulWidth: u32,
    pub ulHeight: u32,
    pub ulTargetWidth: u32,
    pub ulTargetHeight: u32,
    pub ulNumDecodeSurfaces: u32,
    pub reserved1: [u32; 12],
    pub display_area: [i16; 4],
    pub target_rect: [i16; 4],
    pub reserved2: [u32; 11],
}

/// `CUVIDPROCPARAMS`.
#[repr(C)]
pub struct CUVIDPROCPARAMS {
    pub progressive_frame: i32,
    pub second_field: i32,
    pub top_field_first: i32,
    pub unpaired_field: i32,
    pub reserved_flags: u32,
    pub reserved_zero: u32,
    pub raw_input_dptr: u64,
    pub raw_input_pitch: u32,
    pub raw_input_format: u32,
    pub raw_output_dptr: u64,
    pub raw_output_pitch: u32,
    pub Reserved1: u32,
    pub output_stream: CUstream,
    pub Reserved: [u32; 46],
    pub Reserved2: [*mut c_void; 2],
}

/// `CUVIDDECODECAPS`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct CUVIDDECODECAPS {
    pub eCodecType: i32,
    pub eChromaFormat: i32,
    pub nBitDepthMinus8: u32,
    pub reserved1: [u32; 3],
    pub bIsSupported: u8,
    pub nNumNVDECs: u8,
    pub nOutputFormatMask: u16,
    pub nMaxWidth: u32,
    pub nMaxHeight: u32,
    pub nMaxMBCount: u32,
    pub nMinWidth: u16,
    pub nMinHeight: u16,
    pub bIsHistogramSupported: u8,
    pub nCounterBitDepth: u8,
    pub nMaxHistogramBins: u16,
    pub reserved3: [u32; 10],
}

const _: () = {
    assert!(std::mem::size_of::<CUVIDEOFORMAT>() == 64);
    assert!(std::mem::size_of::<CUVIDPARSERDISPINFO>() == 24);
    assert!(std::mem::size_of::<CUVIDSOURCEDATAPACKET>() == 32);
    assert!(std::mem::size_of::<CUVIDPARSERPARAMS>() == 136);
    assert!(std::mem::size_of::<CUVIDDECODECREATEINFO>() == 176);
    assert!(std::mem::size_of::<CUVIDPROCPARAMS>() == 264);
    assert!(std::mem::size_of::<CUVIDDECODECAPS>() == 88);
    assert!(std::mem::size_of::<CUVIDRECONFIGUREDECODERINFO>() == 128);
};

/// The entry points, resolved once from `libnvcuvid.so.1`.
pub struct Nvcuvid {
    _lib: libloading::Library,
    pub create_parser: unsafe extern "C" fn(*mut CUvideoparser, *mut CUVIDPARSERPARAMS) -> CUresult,
    pub parse: unsafe extern "C" fn(CUvideoparser, *mut CUVIDSOURCEDATAPACKET) -> CUresult,
    pub destroy_parser: unsafe extern "C" fn(CUvideoparser) -> CUresult,
    pub create_decoder:
        unsafe extern "C" fn(*mut CUvideodecoder, *mut CUVIDDECODECREATEINFO) -> CUresult,
    pub destroy_decoder: unsafe extern "C" fn(CUvideodecoder) -> CUresult,
    pub decode_picture: unsafe extern "C" fn(CUvideodecoder, *mut CUVIDPICPARAMS) -> CUresult,
    pub map_frame: unsafe extern "C" fn(
        CUvideodecoder,
        i32,
        *mut u64,
        *mut u32,
        *mut CUVIDPROCPARAMS,
    ) -> CUresult,
    pub unmap_frame: unsafe extern "C" fn(CUvideodecoder, u64) -> CUresult,
    pub get_caps: unsafe extern "C" fn(*mut CUVIDDECODECAPS) -> CUresult,
    /// `cuvidReconfigureDecoder`; `None` with drivers older than SDK 9.0.
    pub reconfigure:
        Option<unsafe extern "C" fn(CUvideodecoder, *mut CUVIDRECONFIGUREDECODERINFO) -> CUresult>,
}

impl std::fmt::Debug for Nvcuvid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Nvcuvid")
    }
}

impl Nvcuvid {
    /// Loads `libnvcuvid.so.1` and resolves every entry point.
    pub fn load() -> Result<Self, libloading::Error> {
        // SAFETY: loading NVIDIA's decoder library runs its initialisers,
        // which only set up the library itself (it is designed to be dlopened
        // by applications, as FFmpeg does).
        let lib = unsafe { libloading::Library::new("libnvcuvid.so.1") }?;
        macro_rules! sym {
            ($name:literal) => {
                // SAFETY: the symbol is declared in nvcuvid.h / cuviddec.h with
                // exactly the signature of the field it is stored in; the
                // library stays loaded as long as `Nvcuvid` (it owns `_lib`).
                *unsafe { lib.get(concat!($name, "\0").as_bytes()) }?
            };
        }
        Ok(Nvcuvid {
            create_parser: sym!("cuvidCreateVideoParser"),
            parse: sym!("cuvidParseVideoData"),
            destroy_parser: sym!("cuvidDestroyVideoParser"),
            create_decoder: sym!("cuvidCreateDecoder"),
            destroy_decoder: sym!("cuvidDestroyDecoder"),
            decode_picture: sym!("cuvidDecodePicture"),
            map_frame: sym!("cuvidMapVideoFrame64"),
            unmap_frame: sym!("cuvidUnmapVideoFrame64"),
            get_caps: sym!("cuvidGetDecoderCaps"),
            // SAFETY: as in `sym!`: declared in cuviddec.h with this signature.
            reconfigure: unsafe { lib.get(b"cuvidReconfigureDecoder\0") }
                .ok()
                .map(|f| *f),
            _lib: lib,
        })
    }
}
