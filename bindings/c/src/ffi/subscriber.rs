//! Subscriber, frame and packet functions.

use super::{
    call, count, get, handle, id, init_sized, path, read_options, slice, string, value, write_out,
    write_sized, OptionStruct, SizePrefixed,
};
use crate::error::*;
use crate::registry;
use crate::subscriber::{
    default_subscriber_options, FrameObj, SubscribeConfig, SubscriberObj, Wait,
};
use crate::types::*;
use cuframes_facade::cuda::RawStream;
use std::ffi::{c_int, c_void};
use std::mem::{offset_of, size_of};

// SAFETY: `#[repr(C)]`, first field `struct_size: usize`; the other fields
// are integers and raw pointers, valid for any bit pattern.
unsafe impl SizePrefixed for cuframes_subscriber_options_t {}
impl OptionStruct for cuframes_subscriber_options_t {
    const FIRST_VERSION: usize = SUBSCRIBER_OPTIONS_V1;
    const NAME: &'static str = "cuframes_subscriber_options_t";
    fn defaults() -> Self {
        default_subscriber_options()
    }
}
// SAFETY: as above (integers only).
unsafe impl SizePrefixed for cuframes_stream_info_t {}
// SAFETY: as above (integers, and pointers in `planes`).
unsafe impl SizePrefixed for cuframes_frame_info_t {}
// SAFETY: as above (integers only).
unsafe impl SizePrefixed for cuframes_subscriber_stats_t {}

/// `CUstream` from C (`void *`, NULL: none).
fn stream(s: *mut c_void) -> Option<RawStream> {
    (!s.is_null()).then(|| RawStream::from_raw(s as cudarc::driver::sys::CUstream))
}

/// Fills the first version of `*opts` (the fields through
/// `allow_legacy_ipc`) with the defaults and sets `opts->struct_size` to its
/// size: the function programs built before the struct grew call. The
/// header maps `cuframes_subscriber_options_init(opts)` to
/// [`cuframes_subscriber_options_init_sized`]`(opts, sizeof *(opts))`, which
/// fills every field the caller knows.
///
/// Returns `CUFRAMES_OK`, or `CUFRAMES_ERR_INVALID_ARG` for NULL.
/// Thread-safety: any thread.
///
/// # Safety
/// `opts` is NULL or points to a writable `cuframes_subscriber_options_t`
/// of any published version.
#[no_mangle]
pub unsafe extern "C" fn cuframes_subscriber_options_init(
    opts: *mut cuframes_subscriber_options_t,
) -> c_int {
    // SAFETY: `opts` is NULL or writable for the first version's bytes
    // (this function's contract).
    call(|| unsafe { init_sized(opts, None) })
}

/// Fills `*opts`, a struct of `size` bytes (`sizeof *opts` in the caller's
/// header), with the defaults, and sets `opts->struct_size` to the bytes it
/// filled (`min(size, sizeof)` of this library's struct). Writes nothing
/// past `size`.
///
/// Returns `CUFRAMES_OK`, or `CUFRAMES_ERR_INVALID_ARG` for NULL or a
/// `size` below the first version's. Thread-safety: any thread.
///
/// # Safety
/// `opts` is NULL or aligned and writable for `size` bytes.
#[no_mangle]
pub unsafe extern "C" fn cuframes_subscriber_options_init_sized(
    opts: *mut cuframes_subscriber_options_t,
    size: usize,
) -> c_int {
    // SAFETY: `opts` is NULL or writable for `size` bytes (contract).
    call(|| unsafe { init_sized(opts, Some(size)) })
}

/// Connects to the publisher of `opts->key` and returns the subscriber in
/// `*sub_out` (unchanged on error).
///
/// One connection: the handshake reports what the publisher shares, and
/// `CUFRAMES_BACKEND_AUTO` picks the backend from that (host memory for a
/// host publisher, CUDA or Vulkan for a GPU one; see `cuframes_backend`).
/// With `wait_publisher_ms` it keeps retrying while nobody publishes the
/// key.
///
/// Returns `CUFRAMES_OK`; `CUFRAMES_ERR_INVALID_ARG` (NULL `opts`,
/// `sub_out` or `key`, bad option values, `struct_size` 0),
/// `CUFRAMES_ERR_BAD_KEY`, `CUFRAMES_ERR_NO_PUBLISHER`,
/// `CUFRAMES_ERR_TIMEOUT` (no answer within `connect_timeout_ms`),
/// `CUFRAMES_ERR_REFUSED`, `CUFRAMES_ERR_PERMISSION`, `CUFRAMES_ERR_TOO_MANY`,
/// `CUFRAMES_ERR_MEMORY_KIND` (also: no backend of this build imports what
/// the publisher shares), `CUFRAMES_ERR_NO_PACKET_RING`,
/// `CUFRAMES_ERR_CUDA`, `CUFRAMES_ERR_PROTOCOL`, `CUFRAMES_ERR_IO` (also: the
/// Vulkan backend could not start).
/// Thread-safety: any thread.
///
/// # Safety
/// `opts` is NULL or points to an initialised options struct whose string
/// and array pointers are NULL or valid for the call; `sub_out` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn cuframes_subscriber_create(
    opts: *const cuframes_subscriber_options_t,
    sub_out: *mut *mut cuframes_subscriber_t,
) -> c_int {
    call(|| {
        if sub_out.is_null() {
            return Err(Error::arg("sub_out is NULL"));
        }
        // SAFETY: `opts` is NULL or an initialised options struct (contract).
        let o = unsafe { read_options(opts, "opts")? };
        // SAFETY: the struct's pointers are NULL or valid (contract).
        let (key, name, dir, uids) = unsafe {
            (
                string(o.key, "opts->key")?.ok_or_else(|| Error::arg("opts->key is NULL"))?,
                string(o.consumer_name, "opts->consumer_name")?,
                path(o.runtime_dir),
                slice(
                    o.publisher_uids,
                    o.publisher_uid_count,
                    "opts->publisher_uids",
                )?
                .to_vec(),
            )
        };
        let cfg = SubscribeConfig::from_c(&o, key, name, dir, uids)?;
        let sub = SubscriberObj::connect(&cfg)?;
        let h = registry::insert(sub);
        // SAFETY: checked non-NULL above; writable by contract.
        unsafe { write_out(sub_out, handle(h), "sub_out") }
    })
}

/// Closes the connection and frees the subscriber. Frames and packets it
/// handed out stay valid until released (they hold what they need).
///
/// Returns `CUFRAMES_OK`, or `CUFRAMES_ERR_INVALID_HANDLE` (NULL, already
/// destroyed). Thread-safety: any thread, but no other call on this
/// subscriber may still be running or start afterwards (a call running
/// meanwhile finishes first; later ones get `CUFRAMES_ERR_INVALID_HANDLE`).
#[no_mangle]
pub extern "C" fn cuframes_subscriber_destroy(sub: *mut cuframes_subscriber_t) -> c_int {
    call(|| registry::remove::<SubscriberObj>(id(sub)).map(drop))
}

/// Leases the next frame (NewestOnly: the newest; InOrder: the next in
/// sequence) and returns it in `*frame_out`. Release it with
/// `cuframes_subscriber_release` (or `cuframes_subscriber_release_after`)
/// as soon as possible: the publisher cannot reuse its slot meanwhile, and
/// revokes a lease held past its lease timeout.
///
/// `cu_stream` (a `CUstream`, or NULL) matters for CUDA frames whose
/// publisher uses IPC events: work queued on `cu_stream` afterwards is
/// ordered after the publisher's writes (`cuStreamWaitEvent`); with NULL
/// this call waits on the host until the frame is complete. Host frames
/// ignore it.
///
/// `timeout_ms`: negative blocks until a frame arrives or the stream ends;
/// 0 returns at once; positive waits at most that long.
///
/// Returns `CUFRAMES_OK`; `CUFRAMES_ERR_TIMEOUT`, `CUFRAMES_ERR_WOULD_BLOCK`
/// (`timeout_ms` 0), `CUFRAMES_ERR_DISCONNECTED` (the publisher is gone and
/// every frame was delivered), `CUFRAMES_ERR_TOO_MANY` (16 frames held),
/// `CUFRAMES_ERR_NOT_SUBSCRIBED`, `CUFRAMES_ERR_PROTOCOL`, `CUFRAMES_ERR_CUDA`,
/// `CUFRAMES_ERR_INVALID_HANDLE`, `CUFRAMES_ERR_INVALID_ARG` (NULL `frame_out`).
/// Thread-safety: one thread at a time per subscriber (concurrent calls on
/// one subscriber are serialised); different subscribers are independent.
///
/// # Safety
/// `frame_out` is NULL or writable; `cu_stream` is NULL or a live `CUstream`
/// of this process.
#[no_mangle]
pub unsafe extern "C" fn cuframes_subscriber_next(
    sub: *mut cuframes_subscriber_t,
    cu_stream: *mut c_void,
    frame_out: *mut *mut cuframes_frame_t,
    timeout_ms: i32,
) -> c_int {
    call(|| {
        if frame_out.is_null() {
            return Err(Error::arg("frame_out is NULL"));
        }
        let s = get::<SubscriberObj, _>(sub)?;
        let f = s.next_frame(Wait::from_ms(timeout_ms), stream(cu_stream))?;
        let h = registry::insert(f);
        // SAFETY: checked non-NULL; writable by contract.
        unsafe { write_out(frame_out, handle(h), "frame_out") }
    })
}

/// Returns the frame's lease now and frees the handle. CUDA frames: the
/// frame's CUDA context is synchronised first (all work queued in it
/// completes), so nothing still reads the slot.
///
/// `sub` is the subscriber the frame came from; it is not used and may be
/// NULL or already destroyed.
///
/// Returns `CUFRAMES_OK`; `CUFRAMES_ERR_LEASE_REVOKED` (released, but the
/// publisher had revoked the lease: what was read may be torn);
/// `CUFRAMES_ERR_INVALID_HANDLE` (NULL, already released). After any of
/// these the frame handle is invalid. Thread-safety: any thread (not two
/// releases of one frame at once).
#[no_mangle]
pub extern "C" fn cuframes_subscriber_release(
    sub: *mut cuframes_subscriber_t,
    frame: *mut cuframes_frame_t,
) -> c_int {
    let _ = sub;
    cuframes_frame_release(frame)
}

/// As `cuframes_subscriber_release`, without the subscriber argument.
#[no_mangle]
pub extern "C" fn cuframes_frame_release(frame: *mut cuframes_frame_t) -> c_int {
    call(|| registry::remove::<FrameObj>(id(frame))?.release())
}

/// Frees the handle of a CUDA frame now and returns its lease once all work
/// queued on `cu_stream` so far has completed (`cuLaunchHostFunc`), without
/// blocking the caller. Use it when the frame is consumed by kernels or
/// copies on your own stream.
///
/// Returns `CUFRAMES_OK`; `CUFRAMES_ERR_UNSUPPORTED` (a host frame: it stays
/// leased, release it with `cuframes_subscriber_release`);
/// `CUFRAMES_ERR_CUDA` (the lease was returned at once);
/// `CUFRAMES_ERR_INVALID_HANDLE`. Thread-safety: any thread.
///
/// # Safety
/// `cu_stream` is NULL (the legacy default stream) or a live `CUstream` of
/// this process that outlives the queued work.
#[no_mangle]
pub unsafe extern "C" fn cuframes_subscriber_release_after(
    sub: *mut cuframes_subscriber_t,
    frame: *mut cuframes_frame_t,
    cu_stream: *mut c_void,
) -> c_int {
    let _ = sub;
    call(|| {
        let f = get::<FrameObj, _>(frame)?;
        let st = stream(cu_stream).unwrap_or(RawStream::DEFAULT);
        let r = f.release_after(st);
        // Only a refused (host) frame stays leased; otherwise the lease is
        // gone or on its way back, and so is the handle.
        if !matches!(&r, Err(e) if e.code == CUFRAMES_ERR_UNSUPPORTED) {
            let _ = registry::remove::<FrameObj>(id(frame));
        }
        r
    })
}

/// Writes the stream frames are received with (size, format, pitches,
/// memory) to `*info` (whose `struct_size` the caller set).
///
/// Returns `CUFRAMES_OK`, `CUFRAMES_ERR_INVALID_HANDLE`,
/// `CUFRAMES_ERR_INVALID_ARG`. Thread-safety: as `cuframes_subscriber_next`.
///
/// # Safety
/// `info` is NULL or a writable `cuframes_stream_info_t` with `struct_size` set.
#[no_mangle]
pub unsafe extern "C" fn cuframes_subscriber_get_stream(
    sub: *mut cuframes_subscriber_t,
    info: *mut cuframes_stream_info_t,
) -> c_int {
    call(|| {
        let v = get::<SubscriberObj, _>(sub)?.stream_info();
        let min = offset_of!(cuframes_stream_info_t, plane_pitch) + 4 * size_of::<u64>();
        // SAFETY: NULL or writable with `struct_size` set (contract).
        unsafe { write_sized(info, &v, min, "info") }
    })
}

/// Writes the subscriber's counters to `*stats` (whose `struct_size` the
/// caller set).
///
/// Returns `CUFRAMES_OK`, `CUFRAMES_ERR_INVALID_HANDLE`,
/// `CUFRAMES_ERR_INVALID_ARG`. Thread-safety: as `cuframes_subscriber_next`.
///
/// # Safety
/// `stats` is NULL or a writable `cuframes_subscriber_stats_t` with
/// `struct_size` set.
#[no_mangle]
pub unsafe extern "C" fn cuframes_subscriber_get_stats(
    sub: *mut cuframes_subscriber_t,
    stats: *mut cuframes_subscriber_stats_t,
) -> c_int {
    call(|| {
        let v = get::<SubscriberObj, _>(sub)?.stats();
        let min = size_of::<cuframes_subscriber_stats_t>();
        // SAFETY: NULL or writable with `struct_size` set (contract).
        unsafe { write_sized(stats, &v, min, "stats") }
    })
}

/// Why the connection ended: a `cuframes_end_reason` (≥ 0;
/// `CUFRAMES_END_NONE` while it has not), or `CUFRAMES_ERR_INVALID_HANDLE`.
/// After `CUFRAMES_ERR_DISCONNECTED`, tells a finished stream
/// (`CUFRAMES_END_OF_STREAM`) from a crashed publisher (`CUFRAMES_END_VANISHED`).
/// Thread-safety: as `cuframes_subscriber_next`.
#[no_mangle]
pub extern "C" fn cuframes_subscriber_end_reason(sub: *mut cuframes_subscriber_t) -> c_int {
    count(|| Ok(get::<SubscriberObj, _>(sub)?.end_reason() as c_int))
}

// ---- frames ---------------------------------------------------------------

fn frame_info(frame: *const cuframes_frame_t) -> Result<crate::subscriber::FrameInfo, Error> {
    Ok(get::<FrameObj, _>(frame)?.info)
}

/// Writes everything about the frame to `*info` (whose `struct_size` the
/// caller set): size, format, memory, sequence, pts, flags, planes. The
/// plane pointers are valid until the frame is released.
///
/// Returns `CUFRAMES_OK`, `CUFRAMES_ERR_INVALID_HANDLE`,
/// `CUFRAMES_ERR_INVALID_ARG`. Thread-safety: any thread.
///
/// # Safety
/// `info` is NULL or a writable `cuframes_frame_info_t` with `struct_size` set.
#[no_mangle]
pub unsafe extern "C" fn cuframes_frame_get_info(
    frame: *const cuframes_frame_t,
    info: *mut cuframes_frame_info_t,
) -> c_int {
    call(|| {
        let v = frame_info(frame)?.to_c();
        let min = size_of::<cuframes_frame_info_t>();
        // SAFETY: NULL or writable with `struct_size` set (contract).
        unsafe { write_sized(info, &v, min, "info") }
    })
}

/// Width, pixels (0 for an invalid handle; then `cuframes_last_error()`
/// says why). Thread-safety of every `cuframes_frame_*` accessor: any
/// thread, while the frame is not being released.
#[no_mangle]
pub extern "C" fn cuframes_frame_width(frame: *const cuframes_frame_t) -> u32 {
    value(0, || Ok(frame_info(frame)?.width))
}

/// Height, pixels (0 for an invalid handle).
#[no_mangle]
pub extern "C" fn cuframes_frame_height(frame: *const cuframes_frame_t) -> u32 {
    value(0, || Ok(frame_info(frame)?.height))
}

/// Width and height, pixels, as `int32_t` (the earlier API's call; 0 and 0
/// for an invalid handle). NULL out-pointers are skipped.
///
/// # Safety
/// `w` and `h` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cuframes_frame_size(
    frame: *const cuframes_frame_t,
    w: *mut i32,
    h: *mut i32,
) {
    let (fw, fh) = value((0, 0), || {
        let i = frame_info(frame)?;
        Ok((i.width as i32, i.height as i32))
    });
    if !w.is_null() {
        // SAFETY: non-NULL and writable (contract).
        unsafe { w.write(fw) };
    }
    if !h.is_null() {
        // SAFETY: non-NULL and writable (contract).
        unsafe { h.write(fh) };
    }
}

/// A `cuframes_pixel_format` (0 for an invalid handle).
#[no_mangle]
pub extern "C" fn cuframes_frame_pixel_format(frame: *const cuframes_frame_t) -> u32 {
    value(0, || Ok(frame_info(frame)?.pixel_format))
}

/// A `cuframes_memory`: where the planes are (0 for an invalid handle).
#[no_mangle]
pub extern "C" fn cuframes_frame_memory(frame: *const cuframes_frame_t) -> i32 {
    value(0, || Ok(frame_info(frame)?.memory as i32))
}

/// Sequence number, from 1 (0 for an invalid handle).
#[no_mangle]
pub extern "C" fn cuframes_frame_seq(frame: *const cuframes_frame_t) -> u64 {
    value(0, || Ok(frame_info(frame)?.seq))
}

/// Presentation time, ns (`CUFRAMES_TS_NONE` if unknown or for an invalid
/// handle).
#[no_mangle]
pub extern "C" fn cuframes_frame_pts_ns(frame: *const cuframes_frame_t) -> i64 {
    value(CUFRAMES_TS_NONE, || Ok(frame_info(frame)?.pts_ns))
}

/// `CUFRAMES_FRAME_FLAG_*` bits (0 for an invalid handle).
#[no_mangle]
pub extern "C" fn cuframes_frame_flags(frame: *const cuframes_frame_t) -> u64 {
    value(0, || Ok(frame_info(frame)?.flags))
}

/// Index of the frame in the source's output order (0 for an invalid handle).
#[no_mangle]
pub extern "C" fn cuframes_frame_source_index(frame: *const cuframes_frame_t) -> u64 {
    value(0, || Ok(frame_info(frame)?.source_index))
}

/// Planes of the frame's format (0 for an invalid handle).
#[no_mangle]
pub extern "C" fn cuframes_frame_plane_count(frame: *const cuframes_frame_t) -> u32 {
    value(0, || Ok(frame_info(frame)?.plane_count))
}

fn plane(
    frame: *const cuframes_frame_t,
    plane: u32,
) -> Result<crate::subscriber::PlaneInfo, Error> {
    let i = frame_info(frame)?;
    i.plane(plane).copied().ok_or_else(|| {
        Error::arg(format!(
            "plane {plane} does not exist (the frame has {})",
            i.plane_count
        ))
    })
}

/// Host address of plane `plane`'s first row (read-only), valid until the
/// frame is released; NULL for a frame in CUDA memory, a plane the format
/// lacks, or an invalid handle.
#[no_mangle]
pub extern "C" fn cuframes_frame_plane_data(
    frame: *const cuframes_frame_t,
    plane_index: u32,
) -> *const c_void {
    value(std::ptr::null(), || {
        let p = plane(frame, plane_index)?;
        if p.host == 0 {
            return Err(Error::new(
                CUFRAMES_ERR_UNSUPPORTED,
                "the frame is in CUDA memory: use cuframes_frame_plane_device_ptr",
            ));
        }
        Ok(p.host as *const c_void)
    })
}

/// `CUdeviceptr` of plane `plane`'s first row in this process, valid until
/// the frame is released; 0 for a frame in host memory, a plane the format
/// lacks, or an invalid handle.
#[no_mangle]
pub extern "C" fn cuframes_frame_plane_device_ptr(
    frame: *const cuframes_frame_t,
    plane_index: u32,
) -> u64 {
    value(0, || {
        let p = plane(frame, plane_index)?;
        if p.device == 0 {
            return Err(Error::new(
                CUFRAMES_ERR_UNSUPPORTED,
                "the frame is in host memory: use cuframes_frame_plane_data",
            ));
        }
        Ok(p.device)
    })
}

/// Pitch of plane `plane`: bytes between the starts of two rows (0 for a
/// plane the format lacks or an invalid handle).
#[no_mangle]
pub extern "C" fn cuframes_frame_plane_pitch(
    frame: *const cuframes_frame_t,
    plane_index: u32,
) -> usize {
    value(0, || Ok(plane(frame, plane_index)?.pitch))
}

/// Bytes of pixels in a row of plane `plane`, without padding (NV12: the
/// width for Y, `2*ceil(width/2)` for CbCr; P010: twice that).
#[no_mangle]
pub extern "C" fn cuframes_frame_plane_row_bytes(
    frame: *const cuframes_frame_t,
    plane_index: u32,
) -> usize {
    value(0, || Ok(plane(frame, plane_index)?.row_bytes))
}

/// Rows of plane `plane` (4:2:0: the height for Y, `ceil(height/2)` for CbCr).
#[no_mangle]
pub extern "C" fn cuframes_frame_plane_rows(
    frame: *const cuframes_frame_t,
    plane_index: u32,
) -> usize {
    value(0, || Ok(plane(frame, plane_index)?.rows))
}

/// Pitch of plane 0 (Y), bytes, as `int32_t` (the earlier API's call).
#[no_mangle]
pub extern "C" fn cuframes_frame_pitch_y(frame: *const cuframes_frame_t) -> i32 {
    value(0, || {
        Ok(plane(frame, 0)?.pitch.min(i32::MAX as usize) as i32)
    })
}

/// Pitch of plane 1 (interleaved CbCr), bytes, as `int32_t` (the earlier
/// API's call).
#[no_mangle]
pub extern "C" fn cuframes_frame_pitch_uv(frame: *const cuframes_frame_t) -> i32 {
    value(0, || {
        Ok(plane(frame, 1)?.pitch.min(i32::MAX as usize) as i32)
    })
}

/// Device address of plane 0 (Y) as a pointer (the earlier API's call);
/// NULL for host frames. The CbCr plane is at
/// `cuframes_frame_plane_device_ptr(frame, 1)` (for the publishers of this
/// project that is `cuda_ptr + pitch_y * height`, but use the call).
#[no_mangle]
pub extern "C" fn cuframes_frame_cuda_ptr(frame: *const cuframes_frame_t) -> *mut c_void {
    value(std::ptr::null_mut(), || {
        let p = plane(frame, 0)?;
        if p.device == 0 {
            return Err(Error::new(
                CUFRAMES_ERR_UNSUPPORTED,
                "the frame is in host memory: use cuframes_frame_plane_data",
            ));
        }
        Ok(p.device as usize as *mut c_void)
    })
}

/// 1 while the lease is valid, 0 once the publisher revoked it (data read
/// since may be torn), or `CUFRAMES_ERR_INVALID_HANDLE`.
#[no_mangle]
pub extern "C" fn cuframes_frame_is_valid(frame: *const cuframes_frame_t) -> c_int {
    count(|| Ok(c_int::from(get::<FrameObj, _>(frame)?.is_valid()?)))
}

/// Writes to `*size_out` the bytes `cuframes_frame_copy_to_host` needs and
/// writes for this frame: its planes packed, rows without pitch padding
/// (NV12: `w × h` luma bytes plus `2⌈w/2⌉ × ⌈h/2⌉` CbCr bytes; P010:
/// twice that), whatever memory the frame is in. Size the buffer with it.
///
/// Returns `CUFRAMES_OK`; `CUFRAMES_ERR_INVALID_ARG` (NULL `size_out`);
/// `CUFRAMES_ERR_INVALID_HANDLE`. Thread-safety: any thread, while the
/// frame is not being released.
///
/// # Safety
/// `size_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cuframes_frame_packed_size(
    frame: *const cuframes_frame_t,
    size_out: *mut usize,
) -> c_int {
    call(|| {
        let f = get::<FrameObj, _>(frame)?;
        // SAFETY: NULL (refused inside) or writable by the caller's contract.
        unsafe { write_out(size_out, f.packed_size(), "size_out") }
    })
}

/// Copies the frame into `dst` in FFmpeg's packed rawvideo layout (the
/// planes in order, each row without its pitch padding: for NV12 `w × h`
/// luma bytes then `w × ⌈h/2⌉` interleaved CbCr bytes, twice that for
/// P010) and writes the byte count to `*written` (if not NULL);
/// `cuframes_frame_packed_size` gives the size `dst` needs. Host frames are
/// copied row by row; CUDA and Vulkan frames to host once the publisher's
/// writes are complete (the only way to read a `CUFRAMES_MEMORY_VULKAN`
/// frame from C). Call it before releasing the frame, and check the
/// release's result: a revoked lease means the copy may be torn.
///
/// Returns `CUFRAMES_OK`; `CUFRAMES_ERR_INVALID_ARG` (NULL `dst`, or
/// `dst_size` below the frame's packed size: nothing written);
/// `CUFRAMES_ERR_CUDA`; `CUFRAMES_ERR_IO` (a Vulkan copy failed);
/// `CUFRAMES_ERR_INVALID_HANDLE`.
/// Thread-safety: any thread, while the frame is not being released.
///
/// # Safety
/// `dst` is NULL or valid for writes of `dst_size` bytes; `written` is
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cuframes_frame_copy_to_host(
    frame: *const cuframes_frame_t,
    dst: *mut c_void,
    dst_size: usize,
    written: *mut usize,
) -> c_int {
    call(|| {
        let f = get::<FrameObj, _>(frame)?;
        if dst.is_null() {
            return Err(Error::new(CUFRAMES_ERR_INVALID_ARG, "dst is NULL"));
        }
        // SAFETY: non-NULL and valid for writes of `dst_size` bytes by the
        // caller's contract; u8 has no alignment or validity requirement;
        // the slice lives only during this call.
        let out = unsafe { std::slice::from_raw_parts_mut(dst.cast::<u8>(), dst_size) };
        let n = f.copy_to_host(out)?;
        if !written.is_null() {
            // SAFETY: non-NULL and writable by the caller's contract.
            unsafe { written.write(n) };
        }
        Ok(())
    })
}

/// The CUDA device ordinal a CUDA frame lives on (≥ 0; its slots are
/// mapped in that device's primary context), or `CUFRAMES_ERR_UNSUPPORTED`
/// for a host frame, `CUFRAMES_ERR_INVALID_HANDLE`.
/// Thread-safety: any thread, while the frame is not being released.
#[no_mangle]
pub extern "C" fn cuframes_frame_cuda_device(frame: *const cuframes_frame_t) -> c_int {
    value(CUFRAMES_ERR_INVALID_HANDLE as c_int, || {
        let f = get::<FrameObj, _>(frame)?;
        f.with_cuda(|cf| Ok(cf.memory().device().ordinal() as c_int))
    })
}

/// The primary context (`CUcontext`) of a CUDA frame's device, in which
/// its slots are mapped: for a CUDA library that should work in it (FFmpeg:
/// `AVCUDADeviceContext.cuda_ctx`, so that its frame pool and the slots
/// share one context whatever its flags). Valid while the subscriber lives.
/// NULL for a host frame or an invalid handle (`cuframes_last_error()` says
/// which). Thread-safety: any thread, while the frame is not being released.
#[no_mangle]
pub extern "C" fn cuframes_frame_cuda_context(frame: *const cuframes_frame_t) -> *mut c_void {
    value(std::ptr::null_mut(), || {
        let f = get::<FrameObj, _>(frame)?;
        f.with_cuda(|cf| Ok(cf.memory().device().raw_context()))
    })
}

/// Queues device-to-device copies of the frame's planes into your own
/// device memory (e.g. an FFmpeg CUDA frame pool), on `cu_stream`
/// (`cuMemcpy2DAsync`), ordered after the publisher's writes. Plane `i`
/// goes to `dst_planes[i]` with pitch `dst_pitches[i]` (bytes); `plane_count`
/// must equal the frame's. The destination must be memory of the frame's
/// device usable in its primary context (`cuframes_frame_cuda_device`;
/// FFmpeg: `AV_CUDA_USE_PRIMARY_CONTEXT`). Keep the lease until the copies
/// are done: `cuframes_subscriber_release` (which synchronises the
/// context) or `cuframes_subscriber_release_after(…, cu_stream)`.
///
/// Returns `CUFRAMES_OK`; `CUFRAMES_ERR_UNSUPPORTED` (a host frame: use
/// the plane pointers or `cuframes_frame_copy_to_host`);
/// `CUFRAMES_ERR_INVALID_ARG` (NULL arrays, a wrong `plane_count`, a pitch
/// below a plane's row bytes); `CUFRAMES_ERR_CUDA`;
/// `CUFRAMES_ERR_INVALID_HANDLE`. Thread-safety: any thread, while the
/// frame is not being released.
///
/// # Safety
/// `dst_planes` and `dst_pitches` are NULL or hold `plane_count` entries;
/// each `dst_planes[i]` addresses at least `dst_pitches[i] × (rows − 1) +
/// row bytes` bytes of device memory the caller may overwrite; `cu_stream`
/// is NULL (the legacy default stream) or a live `CUstream` of this
/// process.
#[no_mangle]
pub unsafe extern "C" fn cuframes_frame_copy_to_device(
    frame: *const cuframes_frame_t,
    dst_planes: *const u64,
    dst_pitches: *const usize,
    plane_count: u32,
    cu_stream: *mut c_void,
) -> c_int {
    call(|| {
        let f = get::<FrameObj, _>(frame)?;
        if plane_count != f.info.plane_count {
            return Err(Error::new(
                CUFRAMES_ERR_INVALID_ARG,
                format!(
                    "plane_count {plane_count}; the frame has {}",
                    f.info.plane_count
                ),
            ));
        }
        // SAFETY: NULL (refused inside) or `plane_count` readable entries
        // by the caller's contract.
        let ptrs = unsafe { slice(dst_planes, plane_count as usize, "dst_planes")? };
        // SAFETY: as above.
        let pitches = unsafe { slice(dst_pitches, plane_count as usize, "dst_pitches")? };
        let stream = RawStream::from_raw(cu_stream.cast());
        f.with_cuda(|cf| {
            for (i, (&dst, &pitch)) in ptrs.iter().zip(pitches).enumerate() {
                // SAFETY: `dst` addresses writable device memory of at least
                // the plane's extent at `pitch` (the caller's contract);
                // `pitch` below the row bytes is refused inside.
                unsafe {
                    cf.memory()
                        .copy_plane_to_device(cf.stream(), i, dst, pitch, stream)?
                };
            }
            Ok(())
        })
    })
}

// ---- packets --------------------------------------------------------------
