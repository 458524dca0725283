//! The parser/decoder pair and its callbacks.
#![allow(unsafe_code)]

use super::ffi::{self, Nvcuvid};
use cuframes_core::{Codec, PixelFormat};
use cuframes_cuda::{CudaDevice, CudaError, RawStream};
use std::collections::VecDeque;
use std::ffi::c_void;
use std::sync::{Arc, OnceLock};

/// What can go wrong in NVDEC decoding.
#[derive(Debug, thiserror::Error)]
pub enum NvdecError {
    /// `libnvcuvid.so.1` is not on this machine (no NVIDIA driver, or a
    /// container without the video driver capability).
    #[error("NVDEC is not available: cannot load libnvcuvid.so.1: {0}")]
    Unavailable(String),
    /// A CUDA call failed.
    #[error(transparent)]
    Cuda(#[from] CudaError),
    /// An NVDEC call failed.
    #[error("{call} failed with CUresult {code}")]
    Call {
        /// The nvcuvid function.
        call: &'static str,
        /// Its result code.
        code: i32,
    },
    /// The GPU's NVDEC cannot decode this stream.
    #[error("NVDEC on this GPU cannot decode {what}")]
    Unsupported {
        /// Codec, chroma format, bit depth or size.
        what: String,
    },
}

fn call(name: &'static str, r: i32) -> Result<(), NvdecError> {
    if r == 0 {
        Ok(())
    } else {
        Err(NvdecError::Call {
            call: name,
            code: r,
        })
    }
}

fn cuvid_codec(c: Codec) -> Result<i32, NvdecError> {
    match c {
        Codec::H264 => Ok(ffi::CODEC_H264),
        Codec::Hevc => Ok(ffi::CODEC_HEVC),
        Codec::Unknown(_) => Err(NvdecError::Unsupported {
            what: format!("{c:?} (only H.264 and HEVC)"),
        }),
    }
}

fn library() -> Result<Arc<Nvcuvid>, NvdecError> {
    static LIB: OnceLock<Result<Arc<Nvcuvid>, String>> = OnceLock::new();
    LIB.get_or_init(|| Nvcuvid::load().map(Arc::new).map_err(|e| e.to_string()))
        .clone()
        .map_err(NvdecError::Unavailable)
}

/// Whether NVDEC can be used here: libnvcuvid loads and a CUDA driver is present.
pub fn nvdec_available() -> bool {
    cuframes_cuda::driver_present() && library().is_ok()
}

/// The geometry of decoded surfaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SurfaceInfo {
    /// Displayed width, pixels.
    pub width: u32,
    /// Displayed height, pixels.
    pub height: u32,
    /// NV12 (8-bit) or P010 (10-bit).
    pub format: PixelFormat,
    /// Rows of the luma plane in the surface (the chroma plane starts at
    /// `pitch * surface_rows`).
    pub surface_rows: u32,
}

#[derive(Debug, Clone, Copy)]
struct Display {
    /// The decoder that decoded the picture (a retired one after a change
    /// that recreated the decoder).
    decoder: ffi::CUvideodecoder,
    /// Its geometry at decode time.
    info: SurfaceInfo,
    index: i32,
    progressive: bool,
    top_field_first: bool,
    timestamp: Option<i64>,
}

/// Callback state: lives in a Box whose address the parser holds.
struct State {
    lib: Arc<Nvcuvid>,
    codec: Codec,
    decoder: ffi::CUvideodecoder,
    /// Largest coded size the current decoder accepts (`ulMaxWidth`,
    /// `ulMaxHeight`), pixels: the bound for `cuvidReconfigureDecoder`.
    max_coded: (u32, u32),
    info: Option<(SurfaceInfo, ffi::CUVIDEOFORMAT)>,
    queue: VecDeque<Display>,
    /// Decoders replaced after a mid-stream change whose pictures are still
    /// queued; destroyed once none is ([`NvdecDecoder::next_frame`], drop).
    retired: Vec<ffi::CUvideodecoder>,
    /// Timestamps that were sent with a packet (the parser returns 0 for
    /// pictures whose packet had none).
    error: Option<NvdecError>,
    eos: bool,
    decoded: u64,
}

fn describe(f: &ffi::CUVIDEOFORMAT) -> String {
    format!(
        "{}x{} (coded {}x{}) {}-bit chroma {}",
        f.display_right - f.display_left,
        f.display_bottom - f.display_top,
        f.coded_width,
        f.coded_height,
        f.bit_depth_luma_minus8 + 8,
        f.chroma_format
    )
}

impl State {
    /// The sequence callback (`pfnSequenceCallback`): the first sequence
    /// header creates the decoder; a later one with another coded size,
    /// display area, bit depth or chroma format reconfigures or replaces it,
    /// following the Video Codec SDK's `NvDecoder::HandleVideoSequence` /
    /// `ReconfigureDecoder`:
    ///
    /// - same codec, chroma format and bit depth, new coded size within the
    ///   decoder's `ulMaxWidth` x `ulMaxHeight`, no decoded picture waiting
    ///   in the display queue, and the driver has it:
    ///   `cuvidReconfigureDecoder` (keeps the decoder, resets its surfaces);
    /// - otherwise a new decoder (`cuvidCreateDecoder`); the old one is
    ///   retired, not destroyed, while pictures it decoded are still queued
    ///   (they are mapped from it with their own geometry), because
    ///   reconfiguring would discard them.
    ///
    /// Returns the number of decode surfaces for the parser.
    fn sequence(&mut self, f: &ffi::CUVIDEOFORMAT) -> Result<i32, NvdecError> {
        let surfaces = (f.min_num_decode_surfaces as u32).max(1) + 4;
        if let Some((_, old)) = &self.info {
            let same = old.coded_width == f.coded_width
                && old.coded_height == f.coded_height
                && old.bit_depth_luma_minus8 == f.bit_depth_luma_minus8
                && old.chroma_format == f.chroma_format
                && (
                    old.display_left,
                    old.display_top,
                    old.display_right,
                    old.display_bottom,
                ) == (
                    f.display_left,
                    f.display_top,
                    f.display_right,
                    f.display_bottom,
                );
            if same && !self.decoder.is_null() {
                return Ok(surfaces as i32);
            }
        }
        let codec = cuvid_codec(self.codec)?;
        let depth = f.bit_depth_luma_minus8 as u32;
        if f.chroma_format != ffi::CHROMA_420 || !(depth == 0 || depth == 2) {
            return Err(NvdecError::Unsupported {
                what: format!("{} (only 4:2:0 at 8 or 10 bits is shared)", describe(f)),
            });
        }
        let mut caps = ffi::CUVIDDECODECAPS {
            eCodecType: codec,
            eChromaFormat: f.chroma_format,
            nBitDepthMinus8: depth,
            ..Default::default()
        };
        // SAFETY: `caps` is a valid CUVIDDECODECAPS with its IN fields set;
        // a CUDA context is current (made so before every parse call).
        call("cuvidGetDecoderCaps", unsafe {
            (self.lib.get_caps)(&mut caps)
        })?;
        if caps.bIsSupported == 0
            || f.coded_width > caps.nMaxWidth
            || f.coded_height > caps.nMaxHeight
        {
            return Err(NvdecError::Unsupported {
                what: format!(
                    "{:?} {} (max {}x{})",
                    self.codec,
                    describe(f),
                    caps.nMaxWidth,
                    caps.nMaxHeight
                ),
            });
        }
        let width = (f.display_right - f.display_left).max(0) as u32;
        let height = (f.display_bottom - f.display_top).max(0) as u32;
        if width == 0 || height == 0 || width % 2 != 0 || height % 2 != 0 {
            return Err(NvdecError::Unsupported {
                what: format!("display area {}", describe(f)),
            });
        }
        let format = if depth == 0 {
            PixelFormat::Nv12
        } else {
            PixelFormat::P010
        };
        let info = SurfaceInfo {
            width,
            height,
            format,
            surface_rows: height,
        };
        if self.try_reconfigure(f, info, surfaces)? {
            return Ok(surfaces as i32);
        }
        let mut ci = ffi::CUVIDDECODECREATEINFO {
            ulWidth: f.coded_width as u64,
            ulHeight: f.coded_height as u64,
            ulNumDecodeSurfaces: surfaces as u64,
            CodecType: codec,
            ChromaFormat: f.chroma_format,
            ulCreationFlags: ffi::CREATE_PREFER_CUVID,
            bitDepthMinus8: depth as u64,
            ulIntraDecodeOnly: 0,
            ulMaxWidth: f.coded_width as u64,
            ulMaxHeight: f.coded_height as u64,
            Reserved1: 0,
            display_area: [
                f.display_left as i16,
                f.display_top as i16,
                f.display_right as i16,
                f.display_bottom as i16,
            ],
            OutputFormat: if depth == 0 {
                ffi::SURFACE_NV12
            } else {
                ffi::SURFACE_P016
            },
            DeinterlaceMode: if f.progressive_sequence != 0 {
                ffi::DEINTERLACE_WEAVE
            } else {
                ffi::DEINTERLACE_ADAPTIVE
            },
            ulTargetWidth: width as u64,
            ulTargetHeight: height as u64,
            ulNumOutputSurfaces: 2,
            vidLock: std::ptr::null_mut(),
            target_rect: [0; 4],
            enableHistogram: 0,
            Reserved2: [0; 4],
        };
        let mut dec = std::ptr::null_mut();
        // SAFETY: `ci` is fully initialised per cuviddec.h; `dec` is a valid
        // out pointer; the context is current.
        call("cuvidCreateDecoder", unsafe {
            (self.lib.create_decoder)(&mut dec, &mut ci)
        })?;
        if !self.decoder.is_null() {
            // Pictures of the old decoder may still be queued: it is
            // destroyed once they are taken (`collect_retired`).
            self.retired.push(self.decoder);
        }
        self.decoder = dec;
        self.max_coded = (f.coded_width, f.coded_height);
        self.info = Some((info, *f));
        Ok(surfaces as i32)
    }

    /// `cuvidReconfigureDecoder` for a new size of the same codec, chroma
    /// format and bit depth, when that is possible (see [`State::sequence`]);
    /// `Ok(false)` when a new decoder is needed instead.
    fn try_reconfigure(
        &mut self,
        f: &ffi::CUVIDEOFORMAT,
        info: SurfaceInfo,
        surfaces: u32,
    ) -> Result<bool, NvdecError> {
        let Some((_, old)) = &self.info else {
            return Ok(false);
        };
        let Some(reconfigure) = self.lib.reconfigure else {
            return Ok(false);
        };
        let fits = f.coded_width <= self.max_coded.0 && f.coded_height <= self.max_coded.1;
        if self.decoder.is_null()
            || !fits
            || !self.queue.is_empty()
            || old.bit_depth_luma_minus8 != f.bit_depth_luma_minus8
            || old.chroma_format != f.chroma_format
        {
            return Ok(false);
        }
        let mut rc = ffi::CUVIDRECONFIGUREDECODERINFO {
            ulWidth: f.coded_width,
            ulHeight: f.coded_height,
            ulTargetWidth: info.width,
            ulTargetHeight: info.height,
            ulNumDecodeSurfaces: surfaces,
            reserved1: [0; 12],
            display_area: [
                f.display_left as i16,
                f.display_top as i16,
                f.display_right as i16,
                f.display_bottom as i16,
            ],
            target_rect: [0; 4],
            reserved2: [0; 11],
        };
        // SAFETY: a live decoder created by this state with ulMaxWidth /
        // ulMaxHeight >= the new coded size (checked above); `rc` is fully
        // initialised per cuviddec.h; no picture of it is queued or mapped
        // (the queue is empty and mappings borrow the decoder, which is
        // exclusively borrowed by the parse call we are inside); the
        // context is current.
        call("cuvidReconfigureDecoder", unsafe {
            reconfigure(self.decoder, &mut rc)
        })?;
        self.info = Some((info, *f));
        Ok(true)
    }

    /// Destroys retired decoders none of whose pictures is queued any more.
    /// Call only while no frame is mapped (`&mut` access to the decoder).
    fn collect_retired(&mut self) {
        let queue = &self.queue;
        let lib = &self.lib;
        self.retired.retain(|&old| {
            if queue.iter().any(|d| d.decoder == old) {
                return true;
            }
            // SAFETY: a decoder this state created and retired; no queued
            // picture refers to it and no mapping exists (the caller holds
            // the decoder exclusively, and mappings borrow it).
            let _ = unsafe { (lib.destroy_decoder)(old) };
            false
        });
    }
}

unsafe extern "C" fn on_sequence(user: *mut c_void, f: *mut ffi::CUVIDEOFORMAT) -> i32 {
    // SAFETY: `user` is the `State` box registered with this parser, only
    // touched from inside cuvidParseVideoData on the decoding thread; `f` is
    // valid for the call (nvcuvid.h).
    let (st, f) = unsafe { (&mut *user.cast::<State>(), &*f) };
    match st.sequence(f) {
        Ok(n) => n,
        Err(e) => {
            st.error.get_or_insert(e);
            0
        }
    }
}

unsafe extern "C" fn on_decode(user: *mut c_void, pic: *mut ffi::CUVIDPICPARAMS) -> i32 {
    // SAFETY: as in `on_sequence`; `pic` is the parser's, valid for the call.
    let st = unsafe { &mut *user.cast::<State>() };
    if st.decoder.is_null() {
        return 0;
    }
    // SAFETY: a live decoder created in the sequence callback; the picture
    // parameters come straight from the parser, as cuviddec.h intends.
    let r = unsafe { (st.lib.decode_picture)(st.decoder, pic) };
    if let Err(e) = call("cuvidDecodePicture", r) {
        st.error.get_or_insert(e);
        return 0;
    }
    st.decoded += 1;
    1
}

unsafe extern "C" fn on_display(user: *mut c_void, d: *mut ffi::CUVIDPARSERDISPINFO) -> i32 {
    // SAFETY: as in `on_sequence`; `d` is null at end of stream, else valid.
    let st = unsafe { &mut *user.cast::<State>() };
    // SAFETY: checked for null by `as_ref`.
    match unsafe { d.as_ref() } {
        None => st.eos = true,
        Some(d) => {
            let Some((info, _)) = st.info else {
                return 0;
            };
            st.queue.push_back(Display {
                decoder: st.decoder,
                info,
                index: d.picture_index,
                progressive: d.progressive_frame != 0,
                top_field_first: d.top_field_first != 0,
                timestamp: Some(d.timestamp),
            })
        }
    }
    1
}

/// An NVDEC decoder for one stream.
pub struct NvdecDecoder {
    lib: Arc<Nvcuvid>,
    parser: ffi::CUvideoparser,
    state: Box<State>,
    device: CudaDevice,
    header: Vec<u8>,
}

// SAFETY: the parser and decoder handles are used only through `&mut self`
// (one thread at a time) with the device's context made current first;
// NVDEC objects are not tied to the creating thread.
unsafe impl Send for NvdecDecoder {}

impl std::fmt::Debug for NvdecDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvdecDecoder")
            .field("codec", &self.state.codec)
            .field("info", &self.info())
            .finish()
    }
}

impl NvdecDecoder {
    /// A decoder for `codec` on `device`. `header` (Annex B parameter sets,
    /// may be empty) is fed before the first packet and after every
    /// [`NvdecDecoder::restart`].
    ///
    /// Errors: [`NvdecError::Unavailable`] without libnvcuvid, CUDA errors.
    pub fn new(device: &CudaDevice, codec: Codec, header: &[u8]) -> Result<Self, NvdecError> {
        let lib = library()?;
        device.make_current()?;
        let state = Box::new(State {
            lib: Arc::clone(&lib),
            codec,
            decoder: std::ptr::null_mut(),
            max_coded: (0, 0),
            info: None,
            queue: VecDeque::new(),
            retired: Vec::new(),
            error: None,
            eos: false,
            decoded: 0,
        });
        let mut d = NvdecDecoder {
            lib,
            parser: std::ptr::null_mut(),
            state,
            device: device.clone(),
            header: header.to_vec(),
        };
        d.create_parser()?;
        Ok(d)
    }

    fn create_parser(&mut self) -> Result<(), NvdecError> {
        let mut p = ffi::CUVIDPARSERPARAMS {
            CodecType: cuvid_codec(self.state.codec)?,
            ulMaxNumDecodeSurfaces: 1,
            ulClockRate: 0,
            ulErrorThreshold: 0,
            ulMaxDisplayDelay: 0,
            uReserved1: [0; 5],
            pUserData: (&mut *self.state as *mut State).cast(),
            pfnSequenceCallback: Some(on_sequence),
            pfnDecodePicture: Some(on_decode),
            pfnDisplayPicture: Some(on_display),
            pvReserved2: [std::ptr::null_mut(); 7],
            pExtVideoInfo: std::ptr::null_mut(),
        };
        let mut parser = std::ptr::null_mut();
        // SAFETY: `p` is fully initialised; `pUserData` points into a Box that
        // lives as long as `self` (the parser is destroyed first, in drop or
        // before re-creation); the callbacks match the SDK signatures.
        call("cuvidCreateVideoParser", unsafe {
            (self.lib.create_parser)(&mut parser, &mut p)
        })?;
        self.parser = parser;
        self.state.eos = false;
        if !self.header.is_empty() {
            let h = std::mem::take(&mut self.header);
            let r = self.parse(&h, None, 0);
            self.header = h;
            r?;
        }
        Ok(())
    }

    fn parse(&mut self, data: &[u8], pts: Option<i64>, flags: u64) -> Result<(), NvdecError> {
        self.device.make_current()?;
        let mut pkt = ffi::CUVIDSOURCEDATAPACKET {
            flags: flags | if pts.is_some() { ffi::PKT_TIMESTAMP } else { 0 },
            payload_size: data.len() as u64,
            payload: if data.is_empty() {
                std::ptr::null()
            } else {
                data.as_ptr()
            },
            timestamp: pts.unwrap_or(0),
        };
        // SAFETY: a live parser; `pkt.payload` points to `payload_size` bytes
        // borrowed for the call; the callbacks run inside this call on this
        // thread, with the state box exclusively ours (`&mut self`).
        let r = unsafe { (self.lib.parse)(self.parser, &mut pkt) };
        if let Some(e) = self.state.error.take() {
            return Err(e);
        }
        call("cuvidParseVideoData", r)
    }

    /// Feeds one Annex B access unit with its presentation timestamp (any
    /// unit: it comes back unchanged on the decoded frame).
    pub fn send_packet(&mut self, annexb: &[u8], pts: Option<i64>) -> Result<(), NvdecError> {
        if annexb.is_empty() {
            return Ok(());
        }
        self.parse(annexb, pts, 0)
    }

    /// Signals the end of the stream: the remaining frames are displayed.
    pub fn send_eof(&mut self) -> Result<(), NvdecError> {
        self.parse(&[], None, ffi::PKT_ENDOFSTREAM | ffi::PKT_NOTIFY_EOS)
    }

    /// Whether end of stream was signalled and every frame has been taken.
    pub fn is_drained(&self) -> bool {
        self.state.eos && self.state.queue.is_empty()
    }

    /// Starts the stream again (e.g. a looped file): a new parser, the same
    /// decoder if the format does not change.
    pub fn restart(&mut self) -> Result<(), NvdecError> {
        self.destroy_parser();
        self.state.queue.clear();
        self.create_parser()
    }

    /// Geometry of the latest sequence header parsed (frames still queued
    /// from before a change keep theirs: [`MappedFrame::info`]).
    pub fn info(&self) -> Option<SurfaceInfo> {
        self.state.info.map(|(i, _)| i)
    }

    /// Pictures decoded so far (decode order).
    pub fn decoded(&self) -> u64 {
        self.state.decoded
    }

    /// The next decoded frame in display order, mapped; `None` until more
    /// input is sent. Blocks until its decode finished. The mapping's
    /// post-processing is queued on `stream` (`CUVIDPROCPARAMS::output_stream`):
    /// copies of the frame must be queued on the same stream.
    pub fn next_frame(&mut self, stream: RawStream) -> Result<Option<MappedFrame<'_>>, NvdecError> {
        self.device.make_current()?;
        // No frame is mapped here (`&mut self`): retired decoders whose
        // pictures were all taken can go.
        self.state.collect_retired();
        let Some(d) = self.state.queue.pop_front() else {
            return Ok(None);
        };
        let info = d.info;
        let mut pp = ffi::CUVIDPROCPARAMS {
            progressive_frame: d.progressive as i32,
            second_field: 0,
            top_field_first: d.top_field_first as i32,
            unpaired_field: 0,
            reserved_flags: 0,
            reserved_zero: 0,
            raw_input_dptr: 0,
            raw_input_pitch: 0,
            raw_input_format: 0,
            raw_output_dptr: 0,
            raw_output_pitch: 0,
            Reserved1: 0,
            output_stream: stream.as_raw().cast(),
            Reserved: [0; 46],
            Reserved2: [std::ptr::null_mut(); 2],
        };
        let (mut ptr, mut pitch) = (0u64, 0u32);
        // SAFETY: a live decoder and a picture index the parser displayed;
        // valid out pointers; the context is current.
        call("cuvidMapVideoFrame64", unsafe {
            (self.lib.map_frame)(d.decoder, d.index, &mut ptr, &mut pitch, &mut pp)
        })?;
        Ok(Some(MappedFrame {
            dec: self,
            decoder: d.decoder,
            ptr,
            pitch: pitch as usize,
            info,
            pts: d.timestamp,
        }))
    }

    fn destroy_parser(&mut self) {
        if !self.parser.is_null() {
            // SAFETY: the parser created in `create_parser`, not used after.
            let _ = unsafe { (self.lib.destroy_parser)(self.parser) };
            self.parser = std::ptr::null_mut();
        }
    }
}

impl Drop for NvdecDecoder {
    fn drop(&mut self) {
        let _ = self.device.make_current();
        self.destroy_parser();
        if !self.state.decoder.is_null() {
            // SAFETY: the decoder created in the sequence callback; no frame
            // is mapped (MappedFrame borrows `self`, so none outlives it).
            let _ = unsafe { (self.lib.destroy_decoder)(self.state.decoder) };
        }
        for old in std::mem::take(&mut self.state.retired) {
            // SAFETY: retired decoders of this state, destroyed once; no
            // frame is mapped (as above).
            let _ = unsafe { (self.lib.destroy_decoder)(old) };
        }
    }
}

/// A decoded surface mapped for reading (`cuvidMapVideoFrame64`); unmapped
/// on drop. Copy it out (e.g. into a ring slot) and wait for that copy before
/// dropping it.
pub struct MappedFrame<'a> {
    dec: &'a NvdecDecoder,
    /// The decoder the picture was mapped from (a retired one for pictures
    /// decoded before a mid-stream change).
    decoder: ffi::CUvideodecoder,
    ptr: u64,
    pitch: usize,
    info: SurfaceInfo,
    pts: Option<i64>,
}

impl MappedFrame<'_> {
    /// Geometry and pixel format of this picture: after a mid-stream
    /// resolution change, the new size.
    pub fn info(&self) -> SurfaceInfo {
        self.info
    }

    /// The timestamp sent with the picture's packet.
    pub fn pts(&self) -> Option<i64> {
        self.pts
    }

    /// Plane `i` (0: Y, 1: interleaved CbCr) as (device pointer, pitch bytes).
    pub fn plane(&self, i: usize) -> Option<(u64, usize)> {
        match i {
            0 => Some((self.ptr, self.pitch)),
            1 => {
                let rows = (self.info.surface_rows as u64 + 1) & !1;
                Some((self.ptr + self.pitch as u64 * rows, self.pitch))
            }
            _ => None,
        }
    }
}

impl Drop for MappedFrame<'_> {
    fn drop(&mut self) {
        let _ = self.dec.device.make_current();
        // SAFETY: unmaps the pointer mapped in `next_frame` on the same
        // decoder, exactly once.
        let _ = unsafe { (self.dec.lib.unmap_frame)(self.decoder, self.ptr) };
    }
}

impl std::fmt::Debug for MappedFrame<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedFrame")
            .field("ptr", &format_args!("{:#x}", self.ptr))
            .field("pitch", &self.pitch)
            .field("info", &self.info)
            .field("pts", &self.pts)
            .finish()
    }
}
