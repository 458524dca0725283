//! Fields of `AVCodecParameters` that `ffmpeg-next` 9 has no safe accessor for.
//!
//! This is the only module of the crate that touches FFmpeg memory directly:
//! `ffmpeg-next` exposes neither `AVCodecParameters::extradata` nor the video
//! `width` / `height` of a stream's parameters, and the NVDEC decoder needs the
//! extradata (the `avcC` / `hvcC` record or Annex B parameter sets). The reads
//! are plain field loads and one bounded copy. The one write, [`write_video`],
//! describes a stream for the recorder's muxer: codec, size and extradata
//! (allocated with `av_mallocz`, as FFmpeg frees it).
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

/// Setting codec parameters failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot allocate {0} bytes of extradata")]
pub(crate) struct AllocError(pub(crate) usize);

/// Describes a video stream of `codec` (`width` × `height` pixels, Annex B
/// or `avcC`/`hvcC` `extradata`) in `params`, as a muxer needs it for a
/// stream copy. Replaces any previous extradata.
pub(crate) fn write_video(
    params: &mut ffmpeg::codec::Parameters,
    codec: ffmpeg::codec::Id,
    width: u32,
    height: u32,
    extradata: &[u8],
) -> Result<(), AllocError> {
    use ffmpeg::ffi;
    params.set_medium(ffmpeg::media::Type::Video);
    params.set_id(codec);
    let pad = ffi::AV_INPUT_BUFFER_PADDING_SIZE as usize;
    let len = i32::try_from(extradata.len()).map_err(|_| AllocError(extradata.len()))?;
    let buf = if extradata.is_empty() {
        std::ptr::null_mut()
    } else {
        // SAFETY: av_mallocz has no preconditions; it returns null or an
        // allocation of `len + pad` zeroed bytes, owned by FFmpeg's allocator
        // as `AVCodecParameters::extradata` requires.
        let p = unsafe { ffi::av_mallocz(extradata.len() + pad) }.cast::<u8>();
        if p.is_null() {
            return Err(AllocError(extradata.len()));
        }
        // SAFETY: `p` holds `extradata.len() + pad` bytes (just allocated),
        // does not overlap `extradata` (fresh allocation).
        unsafe { std::ptr::copy_nonoverlapping(extradata.as_ptr(), p, extradata.len()) };
        p
    };
    // SAFETY: a `Parameters` wraps a valid, exclusively borrowed (`&mut`)
    // `AVCodecParameters`. The old extradata was allocated by FFmpeg (or is
    // null) and is freed with `av_freep` before the field takes `buf`, which
    // FFmpeg frees in turn (`avcodec_parameters_free`).
    unsafe {
        let raw = &mut *params.as_mut_ptr();
        ffi::av_freep(std::ptr::addr_of_mut!(raw.extradata).cast());
        raw.extradata = buf;
        raw.extradata_size = len;
        raw.width = i32::try_from(width).unwrap_or(0);
        raw.height = i32::try_from(height).unwrap_or(0);
        raw.codec_tag = 0;
    }
    Ok(())
}
