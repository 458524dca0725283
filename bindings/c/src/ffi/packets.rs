//! Packet functions: the encoded packets of a subscriber that asked for
//! them (`CUFRAMES_SUBSCRIBE_PACKETS`), and the ring's codec parameters.

use super::{call, get, handle, id, value, write_out};
use crate::error::*;
use crate::registry;
use crate::subscriber::{PacketObj, SubscriberObj, Wait};
use crate::types::*;
use std::ffi::{c_int, c_void};

/// Returns the next encoded packet in `*pkt_out` (a subscriber created with
/// `CUFRAMES_SUBSCRIBE_PACKETS`). The first packet is the publisher's last
/// keyframe (late join). A reader that falls behind the ring loses packets
/// and resumes at the next keyframe, which then carries
/// `CUFRAMES_PKT_FLAG_DISCONTINUITY` (no error is returned for it).
/// Release the packet with `cuframes_subscriber_release_packet`.
///
/// `timeout_ms` as for `cuframes_subscriber_next`.
///
/// Returns `CUFRAMES_OK`; `CUFRAMES_ERR_TIMEOUT`, `CUFRAMES_ERR_WOULD_BLOCK`,
/// `CUFRAMES_ERR_DISCONNECTED`, `CUFRAMES_ERR_NOT_SUBSCRIBED`,
/// `CUFRAMES_ERR_CORRUPT` (a corrupt slot was skipped; call again),
/// `CUFRAMES_ERR_PROTOCOL`, `CUFRAMES_ERR_INVALID_HANDLE`,
/// `CUFRAMES_ERR_INVALID_ARG`. Thread-safety: as `cuframes_subscriber_next`.
///
/// # Safety
/// `pkt_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cuframes_subscriber_next_packet(
    sub: *mut cuframes_subscriber_t,
    pkt_out: *mut *mut cuframes_packet_t,
    timeout_ms: i32,
) -> c_int {
    call(|| {
        if pkt_out.is_null() {
            return Err(Error::arg("pkt_out is NULL"));
        }
        let s = get::<SubscriberObj, _>(sub)?;
        let p = s.next_packet(Wait::from_ms(timeout_ms))?;
        let h = registry::insert(p);
        // SAFETY: checked non-NULL; writable by contract.
        unsafe { write_out(pkt_out, handle(h), "pkt_out") }
    })
}

/// Frees a packet (its data is a copy: holding it holds nothing of the
/// publisher's). `sub` is not used and may be NULL.
///
/// Returns `CUFRAMES_OK` or `CUFRAMES_ERR_INVALID_HANDLE`. Thread-safety:
/// any thread.
#[no_mangle]
pub extern "C" fn cuframes_subscriber_release_packet(
    sub: *mut cuframes_subscriber_t,
    pkt: *mut cuframes_packet_t,
) -> c_int {
    let _ = sub;
    cuframes_packet_release(pkt)
}

/// As `cuframes_subscriber_release_packet`, without the subscriber argument.
#[no_mangle]
pub extern "C" fn cuframes_packet_release(pkt: *mut cuframes_packet_t) -> c_int {
    call(|| registry::remove::<PacketObj>(id(pkt)).map(drop))
}

fn packet(p: *const cuframes_packet_t) -> Result<std::sync::Arc<PacketObj>, Error> {
    get::<PacketObj, _>(p)
}

/// The packet's bytes: one access unit, Annex B (start codes); valid until
/// the packet is released. NULL for an invalid handle. Thread-safety of
/// every `cuframes_packet_*` accessor: any thread, while the packet is not
/// being released.
#[no_mangle]
pub extern "C" fn cuframes_packet_data(p: *const cuframes_packet_t) -> *const c_void {
    value(std::ptr::null(), || {
        Ok(packet(p)?.packet.data.as_ptr() as *const c_void)
    })
}

/// Bytes in the packet (0 for an invalid handle).
#[no_mangle]
pub extern "C" fn cuframes_packet_size(p: *const cuframes_packet_t) -> usize {
    value(0, || Ok(packet(p)?.packet.data.len()))
}

/// Presentation time, ns (`CUFRAMES_TS_NONE` if unknown or for an invalid
/// handle).
#[no_mangle]
pub extern "C" fn cuframes_packet_pts(p: *const cuframes_packet_t) -> i64 {
    value(CUFRAMES_TS_NONE, || {
        Ok(packet(p)?.packet.meta.pts_ns.unwrap_or(CUFRAMES_TS_NONE))
    })
}

/// Decode time, ns (`CUFRAMES_TS_NONE` if unknown or for an invalid handle).
#[no_mangle]
pub extern "C" fn cuframes_packet_dts(p: *const cuframes_packet_t) -> i64 {
    value(CUFRAMES_TS_NONE, || {
        Ok(packet(p)?.packet.meta.dts_ns.unwrap_or(CUFRAMES_TS_NONE))
    })
}

/// `CUFRAMES_PKT_FLAG_*` bits as published, plus
/// `CUFRAMES_PKT_FLAG_DISCONTINUITY` when this reader lost packets before
/// it (0 for an invalid handle).
#[no_mangle]
pub extern "C" fn cuframes_packet_flags(p: *const cuframes_packet_t) -> u32 {
    value(0, || {
        let m = packet(p)?.packet.meta;
        Ok(if m.discontinuity {
            m.flags | CUFRAMES_PKT_FLAG_DISCONTINUITY
        } else {
            m.flags
        })
    })
}

/// The publisher's sequence number of the packet (from 0; 0 also for an
/// invalid handle).
#[no_mangle]
pub extern "C" fn cuframes_packet_seq(p: *const cuframes_packet_t) -> u64 {
    value(0, || Ok(packet(p)?.packet.meta.seq))
}

/// Packets this reader lost between the previous packet and this one (0
/// for an invalid handle).
#[no_mangle]
pub extern "C" fn cuframes_packet_skipped(p: *const cuframes_packet_t) -> u64 {
    value(0, || Ok(packet(p)?.packet.meta.skipped))
}

/// The packet ring's codec: `*codec_id_out` an FFmpeg `AVCodecID`
/// (`CUFRAMES_AV_CODEC_ID_H264` / `_HEVC`), `*extradata_out` and
/// `*extradata_size_out` the Annex B parameter sets (SPS/PPS, VPS for
/// HEVC; ≤ 4096 bytes). The extradata stays valid until the subscriber is
/// destroyed or a later call finds it changed; copy it to keep it. NULL
/// out-pointers are skipped.
///
/// Returns `CUFRAMES_OK`; `CUFRAMES_ERR_NO_CODEC_PARAMS` (the publisher set
/// no extradata yet; `*codec_id_out` is written, the others are NULL / 0);
/// `CUFRAMES_ERR_NOT_SUBSCRIBED` (no `CUFRAMES_SUBSCRIBE_PACKETS`),
/// `CUFRAMES_ERR_PROTOCOL`, `CUFRAMES_ERR_INVALID_HANDLE`.
/// Thread-safety: as `cuframes_subscriber_next`.
///
/// # Safety
/// Each out-pointer is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cuframes_subscriber_get_codec_params(
    sub: *mut cuframes_subscriber_t,
    codec_id_out: *mut u32,
    extradata_out: *mut *const c_void,
    extradata_size_out: *mut usize,
) -> c_int {
    call(|| {
        let (codec, ptr, len) = get::<SubscriberObj, _>(sub)?.codec_params()?;
        let (ptr, len) = if len == 0 {
            (std::ptr::null(), 0)
        } else {
            (ptr as *const c_void, len)
        };
        // SAFETY: each is checked for NULL; writable by contract.
        unsafe {
            if !codec_id_out.is_null() {
                codec_id_out.write(codec);
            }
            if !extradata_out.is_null() {
                extradata_out.write(ptr);
            }
            if !extradata_size_out.is_null() {
                extradata_size_out.write(len);
            }
        }
        if len == 0 {
            return Err(Error::new(
                CUFRAMES_ERR_NO_CODEC_PARAMS,
                "the publisher has set no codec extradata (yet)",
            ));
        }
        Ok(())
    })
}
