//! Publisher functions.

use super::{
    call, count, get, handle, id, init_sized, path, read_options, slice, string, write_out,
    write_sized, OptionStruct, SizePrefixed,
};
use crate::error::*;
use crate::publisher::{
    default_frame_meta, default_publisher_options, PublishConfig, PublisherObj,
};
use crate::registry;
use crate::types::*;
use cuframes_core::ring::FrameMeta;
use cuframes_facade::cuda::RawStream;
use std::ffi::{c_int, c_void};
use std::mem::size_of;
use std::sync::Arc;
use std::time::Duration;

// SAFETY: `#[repr(C)]`, first field `struct_size: usize`; the other fields
// are integers and raw pointers, valid for any bit pattern.
unsafe impl SizePrefixed for cuframes_publisher_options_t {}
impl OptionStruct for cuframes_publisher_options_t {
    const FIRST_VERSION: usize = PUBLISHER_OPTIONS_V1;
    const NAME: &'static str = "cuframes_publisher_options_t";
    fn defaults() -> Self {
        default_publisher_options()
    }
}
// SAFETY: as above (integers only).
unsafe impl SizePrefixed for cuframes_frame_meta_t {}
impl OptionStruct for cuframes_frame_meta_t {
    const FIRST_VERSION: usize = FRAME_META_V1;
    const NAME: &'static str = "cuframes_frame_meta_t";
    fn defaults() -> Self {
        default_frame_meta()
    }
}
// SAFETY: as above (integers, and pointers in `planes`).
unsafe impl SizePrefixed for cuframes_slot_t {}

/// Fills the first version of `*opts` (the fields through
/// `max_packet_size`) with the defaults and sets `opts->struct_size` to its
/// size. The header maps `cuframes_publisher_options_init(opts)` to
/// [`cuframes_publisher_options_init_sized`]`(opts, sizeof *(opts))`.
///
/// Returns `CUFRAMES_OK`, or `CUFRAMES_ERR_INVALID_ARG` for NULL.
/// Thread-safety: any thread.
///
/// # Safety
/// `opts` is NULL or points to a writable `cuframes_publisher_options_t`
/// of any published version.
#[no_mangle]
pub unsafe extern "C" fn cuframes_publisher_options_init(
    opts: *mut cuframes_publisher_options_t,
) -> c_int {
    // SAFETY: `opts` is NULL or writable for the first version (contract).
    call(|| unsafe { init_sized(opts, None) })
}

/// Fills `*opts`, a struct of `size` bytes (`sizeof *opts` in the caller's
/// header), with the defaults and sets `opts->struct_size` to the bytes it
/// filled; writes nothing past `size`.
///
/// Returns `CUFRAMES_OK`, or `CUFRAMES_ERR_INVALID_ARG` for NULL or a
/// `size` below the first version's. Thread-safety: any thread.
///
/// # Safety
/// `opts` is NULL or aligned and writable for `size` bytes.
#[no_mangle]
pub unsafe extern "C" fn cuframes_publisher_options_init_sized(
    opts: *mut cuframes_publisher_options_t,
    size: usize,
) -> c_int {
    // SAFETY: `opts` is NULL or writable for `size` bytes (contract).
    call(|| unsafe { init_sized(opts, Some(size)) })
}

/// Fills `*meta` with the defaults (no pts, no flags, automatic source
/// index) and sets `meta->struct_size`.
///
/// Returns `CUFRAMES_OK`, or `CUFRAMES_ERR_INVALID_ARG` for NULL.
///
/// # Safety
/// `meta` is NULL or points to a writable `cuframes_frame_meta_t`.
#[no_mangle]
pub unsafe extern "C" fn cuframes_frame_meta_init(meta: *mut cuframes_frame_meta_t) -> c_int {
    // SAFETY: `meta` is NULL or writable for the first version (contract).
    call(|| unsafe { init_sized(meta, None) })
}

/// As `cuframes_frame_meta_init` for a struct of `size` bytes (`sizeof
/// *meta` in the caller's header); writes nothing past `size`. The header
/// maps `cuframes_frame_meta_init(meta)` to this.
///
/// Returns `CUFRAMES_OK`, or `CUFRAMES_ERR_INVALID_ARG` for NULL or a
/// `size` below the first version's.
///
/// # Safety
/// `meta` is NULL or aligned and writable for `size` bytes.
#[no_mangle]
pub unsafe extern "C" fn cuframes_frame_meta_init_sized(
    meta: *mut cuframes_frame_meta_t,
    size: usize,
) -> c_int {
    // SAFETY: `meta` is NULL or writable for `size` bytes (contract).
    call(|| unsafe { init_sized(meta, Some(size)) })
}

/// Starts publishing `opts->key`: binds the key's socket in the runtime
/// directory and allocates the frame ring (and the packet ring with
/// `opts->packets`). Subscribers can connect as soon as this returns.
///
/// Returns `CUFRAMES_OK` with the publisher in `*pub_out`;
/// `CUFRAMES_ERR_INVALID_ARG` (NULL arguments, a size or format the ring
/// cannot hold, slots outside 2..=64, bad packet ring sizes),
/// `CUFRAMES_ERR_BAD_KEY`, `CUFRAMES_ERR_ALREADY_EXISTS` (a live publisher
/// on the key; a dead one's socket is replaced), `CUFRAMES_ERR_CUDA`,
/// `CUFRAMES_ERR_IO`. Thread-safety: any thread.
///
/// # Safety
/// `opts` is NULL or an initialised options struct whose string pointers
/// are NULL or valid for the call; `pub_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cuframes_publisher_create(
    opts: *const cuframes_publisher_options_t,
    pub_out: *mut *mut cuframes_publisher_t,
) -> c_int {
    call(|| {
        if pub_out.is_null() {
            return Err(Error::arg("pub_out is NULL"));
        }
        // SAFETY: NULL or an initialised options struct (contract).
        let o = unsafe { read_options(opts, "opts")? };
        // SAFETY: the struct's string pointers are NULL or valid (contract).
        let (key, dir) = unsafe {
            (
                string(o.key, "opts->key")?.ok_or_else(|| Error::arg("opts->key is NULL"))?,
                path(o.runtime_dir),
            )
        };
        let p = PublisherObj::create(PublishConfig::from_c(&o, key, dir)?)?;
        let h = registry::insert(p);
        // SAFETY: checked non-NULL; writable by contract.
        unsafe { write_out(pub_out, handle(h), "pub_out") }
    })
}

/// Stops the publisher: says GOODBYE (shutdown) to every subscriber,
/// removes the socket and frees the handle (an acquired slot is
/// abandoned). Subscribers with reconnection on wait for the next publisher
/// of the key; others see `CUFRAMES_ERR_DISCONNECTED` after the frames left.
///
/// Returns `CUFRAMES_OK` or `CUFRAMES_ERR_INVALID_HANDLE`. Thread-safety:
/// any thread, no other call on this publisher running or after.
#[no_mangle]
pub extern "C" fn cuframes_publisher_destroy(publisher: *mut cuframes_publisher_t) -> c_int {
    call(|| registry::remove::<PublisherObj>(id(publisher)).map(drop))
}

/// Ends the stream: says GOODBYE (end of stream) to every subscriber, which
/// drain the frames left and then see `CUFRAMES_ERR_DISCONNECTED` with
/// `CUFRAMES_END_OF_STREAM` (no reconnection); removes the socket and frees
/// the handle.
///
/// Returns `CUFRAMES_OK` or `CUFRAMES_ERR_INVALID_HANDLE`. Thread-safety:
/// as `cuframes_publisher_destroy`.
#[no_mangle]
pub extern "C" fn cuframes_publisher_finish(publisher: *mut cuframes_publisher_t) -> c_int {
    call(|| {
        let p = registry::remove::<PublisherObj>(id(publisher))?;
        match Arc::try_unwrap(p) {
            Ok(p) => p.finish(),
            // Another thread is inside a call with it: it ends when that
            // call returns (GOODBYE shutdown instead of end of stream).
            Err(p) => drop(p),
        }
        Ok(())
    })
}

/// Claims a slot for the next frame and describes it in `*slot` (whose
/// `struct_size` the caller set): per plane a host pointer (`data`) or a
/// CUDA device pointer (`device_ptr`), the pitch, row bytes and rows.
/// Write the frame there, then `cuframes_publisher_commit` (or
/// `cuframes_publisher_abandon`). No subscriber can lease the slot
/// meanwhile. Under `CUFRAMES_POLICY_WAIT` this blocks up to the wait
/// timeout for a free slot.
///
/// Returns `CUFRAMES_OK`; `CUFRAMES_ERR_DROPPED` (every slot is leased:
/// the frame is counted as dropped, nothing to commit);
/// `CUFRAMES_ERR_UNSUPPORTED` (a slot is already acquired);
/// `CUFRAMES_ERR_INVALID_HANDLE`, `CUFRAMES_ERR_INVALID_ARG`.
/// Thread-safety: one thread at a time per publisher (calls are serialised).
///
/// # Safety
/// `slot` is NULL or a writable `cuframes_slot_t` with `struct_size` set.
#[no_mangle]
pub unsafe extern "C" fn cuframes_publisher_acquire(
    publisher: *mut cuframes_publisher_t,
    slot: *mut cuframes_slot_t,
) -> c_int {
    call(|| {
        if slot.is_null() {
            return Err(Error::arg("slot is NULL"));
        }
        let p = get::<PublisherObj, _>(publisher)?;
        let info = p.acquire()?;
        let mut planes = [cuframes_slot_plane_t {
            data: std::ptr::null_mut(),
            device_ptr: 0,
            pitch: 0,
            row_bytes: 0,
            rows: 0,
        }; CUFRAMES_MAX_PLANES];
        for (c, &(host, dev, pitch, row_bytes, rows)) in planes.iter_mut().zip(&info.planes) {
            *c = cuframes_slot_plane_t {
                // The address of the slot's mapping, which lives until commit.
                data: host as *mut c_void,
                device_ptr: dev,
                pitch,
                row_bytes,
                rows,
            };
        }
        let v = cuframes_slot_t {
            struct_size: size_of::<cuframes_slot_t>(),
            width: info.width,
            height: info.height,
            pixel_format: info.pixel_format,
            memory: info.memory as i32,
            plane_count: info.plane_count,
            planes,
        };
        // SAFETY: non-NULL, writable with `struct_size` set (contract). On
        // a too-small `struct_size` the slot stays acquired: abandon it.
        unsafe { write_sized(slot, &v, size_of::<cuframes_slot_t>(), "slot") }
    })
}

/// Publishes the frame written into the acquired slot with `*meta` (NULL:
/// defaults) and returns its sequence number in `*seq_out` (if not NULL).
/// CUDA slots: `cu_stream` is the stream the frame was written on (NULL:
/// the legacy default stream); under host-fence sync it is synchronised
/// first, under IPC events the slot's event is recorded on it. Host slots
/// ignore it.
///
/// Returns `CUFRAMES_OK`; `CUFRAMES_ERR_UNSUPPORTED` (no slot acquired);
/// `CUFRAMES_ERR_CUDA` (the fence failed: the slot was abandoned);
/// `CUFRAMES_ERR_INVALID_HANDLE`, `CUFRAMES_ERR_INVALID_ARG`.
/// Thread-safety: as `cuframes_publisher_acquire`.
///
/// # Safety
/// `meta` is NULL or an initialised `cuframes_frame_meta_t`; `seq_out` is
/// NULL or writable; `cu_stream` is NULL or a live `CUstream`.
#[no_mangle]
pub unsafe extern "C" fn cuframes_publisher_commit(
    publisher: *mut cuframes_publisher_t,
    meta: *const cuframes_frame_meta_t,
    cu_stream: *mut c_void,
    seq_out: *mut u64,
) -> c_int {
    call(|| {
        let m = if meta.is_null() {
            default_frame_meta()
        } else {
            // SAFETY: non-NULL and initialised (contract).
            unsafe { read_options(meta, "meta")? }
        };
        let fm = FrameMeta {
            pts_ns: (m.pts_ns != CUFRAMES_TS_NONE).then_some(m.pts_ns),
            flags: m.flags,
            source_index: u64::try_from(m.source_index).unwrap_or(u64::MAX),
            ..FrameMeta::default()
        };
        let stream = (!cu_stream.is_null())
            .then(|| RawStream::from_raw(cu_stream as cudarc::driver::sys::CUstream));
        let seq = get::<PublisherObj, _>(publisher)?.commit(fm, stream)?;
        if !seq_out.is_null() {
            // SAFETY: non-NULL and writable (contract).
            unsafe { seq_out.write(seq) };
        }
        Ok(())
    })
}

/// Gives the acquired slot back unpublished (nothing reaches subscribers).
///
/// Returns `CUFRAMES_OK`; `CUFRAMES_ERR_UNSUPPORTED` (no slot acquired);
/// `CUFRAMES_ERR_INVALID_HANDLE`. Thread-safety: as `cuframes_publisher_acquire`.
#[no_mangle]
pub extern "C" fn cuframes_publisher_abandon(publisher: *mut cuframes_publisher_t) -> c_int {
    call(|| get::<PublisherObj, _>(publisher)?.abandon())
}

/// Publishes one encoded packet (one access unit, Annex B) with its
/// timestamps in ns (`CUFRAMES_TS_NONE`: unknown) and `CUFRAMES_PKT_FLAG_*`
/// flags (set `CUFRAMES_PKT_FLAG_KEY` on every IDR: late subscribers start
/// there). Never blocks; the oldest packets are overwritten.
///
/// Returns `CUFRAMES_OK`; `CUFRAMES_ERR_NO_PACKET_RING` (created without
/// `packets`); `CUFRAMES_ERR_PACKET_OVERSIZED` (empty, or larger than
/// `max_packet_size`: nothing published); `CUFRAMES_ERR_UNSUPPORTED` (a
/// slot is acquired); `CUFRAMES_ERR_INVALID_HANDLE`,
/// `CUFRAMES_ERR_INVALID_ARG` (NULL `data` with a size). Thread-safety: as
/// `cuframes_publisher_acquire`.
///
/// # Safety
/// `data` is valid for reads of `size` bytes (or `size` is 0).
#[no_mangle]
pub unsafe extern "C" fn cuframes_publisher_publish_packet(
    publisher: *mut cuframes_publisher_t,
    data: *const c_void,
    size: usize,
    pts_ns: i64,
    dts_ns: i64,
    flags: u32,
) -> c_int {
    call(|| {
        let p = get::<PublisherObj, _>(publisher)?;
        // SAFETY: `size` readable bytes at `data` (contract).
        let bytes = unsafe { slice(data as *const u8, size, "data")? };
        let ts = |t: i64| (t != CUFRAMES_TS_NONE).then_some(t);
        p.publish_packet(bytes, ts(pts_ns), ts(dts_ns), flags)
            .map(drop)
    })
}

/// Stores the codec extradata (Annex B SPS/PPS, VPS for HEVC; ≤ 4096
/// bytes) subscribers read with `cuframes_subscriber_get_codec_params`.
/// Call it before the first packet.
///
/// Returns `CUFRAMES_OK`; `CUFRAMES_ERR_NO_PACKET_RING`;
/// `CUFRAMES_ERR_INVALID_ARG` (over 4096 bytes: nothing stored; NULL with a
/// size); `CUFRAMES_ERR_UNSUPPORTED` (a slot is acquired);
/// `CUFRAMES_ERR_INVALID_HANDLE`. Thread-safety: as `cuframes_publisher_acquire`.
///
/// # Safety
/// `extradata` is valid for reads of `size` bytes (or `size` is 0).
#[no_mangle]
pub unsafe extern "C" fn cuframes_publisher_set_codec_extradata(
    publisher: *mut cuframes_publisher_t,
    extradata: *const c_void,
    size: usize,
) -> c_int {
    call(|| {
        let p = get::<PublisherObj, _>(publisher)?;
        // SAFETY: `size` readable bytes (contract).
        let bytes = unsafe { slice(extradata as *const u8, size, "extradata")? };
        p.set_codec_extradata(bytes)
    })
}

/// Subscribers connected now (≥ 0), or a negative error
/// (`CUFRAMES_ERR_INVALID_HANDLE`, `CUFRAMES_ERR_UNSUPPORTED` while a slot
/// is acquired). Thread-safety: as `cuframes_publisher_acquire`.
#[no_mangle]
pub extern "C" fn cuframes_publisher_subscriber_count(
    publisher: *mut cuframes_publisher_t,
) -> c_int {
    count(|| {
        let n = get::<PublisherObj, _>(publisher)?.subscriber_count()?;
        Ok(n.min(c_int::MAX as usize) as c_int)
    })
}

/// Blocks until at least `n` subscribers are connected or `timeout_ms`
/// passed (negative: no limit). Returns `CUFRAMES_OK` when they are,
/// `CUFRAMES_ERR_TIMEOUT` otherwise, `CUFRAMES_ERR_INVALID_HANDLE`.
#[no_mangle]
pub extern "C" fn cuframes_publisher_wait_for_subscribers(
    publisher: *mut cuframes_publisher_t,
    n: u32,
    timeout_ms: i32,
) -> c_int {
    call(|| {
        let p = get::<PublisherObj, _>(publisher)?;
        let t = u64::try_from(timeout_ms).map_or(Duration::MAX, Duration::from_millis);
        let t = t.min(Duration::from_secs(365 * 24 * 3600));
        if p.wait_for_subscribers(n as usize, t)? {
            Ok(())
        } else {
            Err(Error::new(
                CUFRAMES_ERR_TIMEOUT,
                format!("fewer than {n} subscribers within {timeout_ms} ms"),
            ))
        }
    })
}
