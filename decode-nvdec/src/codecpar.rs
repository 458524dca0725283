//! Fields of `AVCodecParameters` that `ffmpeg-next` 9 has no safe getter for.
//!
//! This is the only module of the crate that reads FFmpeg memory directly:
//! `ffmpeg-next` exposes neither `AVCodecParameters::extradata` nor the video
//! `width` / `height` of a stream's parameters, and the NVDEC decoder needs the
//! extradata (the `avcC` / `hvcC` record or Annex B parameter sets). The reads
//! are plain field loads and one bounded copy; nothing is written.
#![allow(unsafe_code)]

use ffmpeg_next as ffmpeg;

/// Copies of the `AVCodecParameters` fields the crate needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CodecParams {
    /// `codecpar->width` in pixels, 0 when negative or unknown.
    pub(crate) width: u32,
    /// `codecpar->height` in pixels, 0 when negative or unknown.
    pub(crate) height: u32,
    /// `codecpar->extradata[..extradata_size]`, empty when absent.
    pub(crate) extradata: Vec<u8>,
}

/// Reads width, height and extradata out of `params`.
pub(crate) fn read(params: &ffmpeg::codec::Parameters) -> CodecParams {
    // SAFETY: a `Parameters` always wraps a non-null `AVCodecParameters`
    // (allocated by `avcodec_parameters_alloc`, or a stream's `codecpar` kept
    // alive by the owner handle it holds) that stays valid while `params` is
    // borrowed; we only read it, and nothing else mutates it meanwhile
    // (`&Parameters` is shared, and the struct is not `Sync`-shared by FFmpeg).
    let raw = unsafe { &*params.as_ptr() };
    let extradata = match usize::try_from(raw.extradata_size) {
        Ok(len) if len > 0 && !raw.extradata.is_null() => {
            // SAFETY: FFmpeg's contract for `AVCodecParameters::extradata` is an
            // allocation of at least `extradata_size` bytes (plus zeroed
            // padding) whenever the pointer is non-null; `len` is that size,
            // checked positive above. The slice is copied before `params` can
            // be released.
            unsafe { std::slice::from_raw_parts(raw.extradata, len) }.to_vec()
        }
        _ => Vec::new(),
    };
    CodecParams {
        width: u32::try_from(raw.width).unwrap_or(0),
        height: u32::try_from(raw.height).unwrap_or(0),
        extradata,
    }
}
