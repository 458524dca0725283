//! Packet subscribers (`docs/protocol.md` §9): the packet ring a
//! [`Subscriber`] maps when [`SubscribeOptions::packets`] is set, and
//! [`Subscriber::next_packet`] / [`Subscriber::codec_params`] on top of
//! [`crate::packet::PacketReader`].
//!
//! ```no_run
//! use cuframes_core::runtime::{PacketRecvError, SubscribeOptions, Subscriber};
//! use cuframes_core::DeliveryMode;
//! use std::time::Duration;
//!
//! let mut opts = SubscribeOptions::new(DeliveryMode::InOrder);
//! opts.frames = false; // packets only: no decoding needed to record
//! opts.packets = true;
//! let sub = Subscriber::connect_host("cam1", opts)?;
//! let params = sub.codec_params()?; // AVCodecID + Annex B SPS/PPS(/VPS)
//! println!("codec {} with {} bytes of extradata", params.codec_id, params.extradata.len());
//! loop {
//!     match sub.next_packet(Duration::from_secs(5)) {
//!         Ok(p) => {
//!             if p.meta.discontinuity {
//!                 // Packets were lost (or the source jumped): `p` is a keyframe.
//!                 eprintln!("gap of {} packets before {}", p.meta.skipped, p.meta.seq);
//!             }
//!             // p.data: one Annex B access unit; p.meta.pts_ns / dts_ns in ns.
//!         }
//!         Err(PacketRecvError::Disconnected) => break,
//!         Err(e) => return Err(e.into()),
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use super::engine::Subscriber;
#[cfg(doc)]
use super::options::SubscribeOptions;
use super::packet_ring::{
    CodecParams, Packet, PacketRecvError, PacketStats, ReadFn, Step, SLICE, SOCKET_POLL_EVERY,
};
use crate::packet::{PacketMeta, PacketReadError, PacketView, MAX_EXTRADATA};
use crate::runtime::backend::Importer;
use std::prelude::rust_2021::*;
use std::time::{Duration, Instant};

impl<B: Importer> Subscriber<B> {
    /// The next packet after the last one returned, waiting at most `timeout`.
    ///
    /// The first packet is the newest keyframe in the ring when the
    /// subscriber connected (or the first one after). A reader that falls
    /// behind by the ring's slot count or data size loses packets; it then
    /// resumes at the next keyframe, whose [`PacketMeta::discontinuity`] is
    /// set and [`PacketMeta::skipped`] counts the loss. The packet is copied
    /// once, into a new `Vec`; [`Subscriber::next_packet_into`] reuses the
    /// caller's buffer instead. Waiting: as for `next_packet_into`.
    ///
    /// With [`SubscribeOptions::reconnect`], a vanished publisher is
    /// reconnected to as for frames ([`Subscriber::next_frame`]); the first
    /// packet afterwards has [`PacketMeta::discontinuity`] set.
    ///
    /// Errors: [`PacketRecvError::NotSubscribed`], `Timeout`, `Disconnected`
    /// (after the remaining packets), `Corrupt`, `Control`.
    pub fn next_packet(&self, timeout: Duration) -> Result<Packet, PacketRecvError> {
        let mut data = Vec::new();
        let meta = self.next_packet_into(&mut data, timeout)?;
        Ok(Packet { data, meta })
    }

    /// [`Subscriber::next_packet`] into `buf`: on success `buf` holds exactly
    /// the packet (`meta.len` bytes, one Annex B access unit), copied once
    /// from the ring; its capacity is reused (bytes beyond its current
    /// length are zero-filled before the copy, so a buffer kept across calls
    /// costs one copy per packet). On error `buf` is empty.
    ///
    /// Waiting, up to `timeout` (`Duration::ZERO`: one look, no wait): on a
    /// ring of layout 3 the reader loads the `wake` futex word before it
    /// looks, spins about 20 µs while `wake` is unchanged, then sleeps on it
    /// (FUTEX_WAIT, in slices of at most 10 ms, servicing the control socket
    /// between them) until the publisher publishes. On a layout-2 ring (the
    /// reference's, no futex word) it polls every 1 ms. `docs/protocol.md`
    /// §9.5.
    ///
    /// Errors: as [`Subscriber::next_packet`].
    pub fn next_packet_into(
        &self,
        buf: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<PacketMeta, PacketRecvError> {
        let r = self.packet_with(
            &mut |reader, cursor| reader.read_into(cursor, &mut *buf),
            timeout,
        );
        if r.is_err() {
            buf.clear();
        }
        r
    }

    /// The next packet, read **in place** (no copy): `visit` gets a
    /// [`PacketView`] of the payload in the shared ring (`byte`,
    /// `copy_to`) and returns what it made of it, which comes back with the
    /// packet's metadata. The packet ring has no leases: the publisher may
    /// overwrite a payload while `visit` runs, so what `visit` saw is
    /// validated afterwards (the seqlock re-check, `docs/protocol.md`
    /// §9.5); a packet overwritten meanwhile is counted lost (the next
    /// packet's `skipped`) and the next one is visited instead. `visit` may
    /// therefore run more than once per call and must not act on what it
    /// saw before this returns. Waiting as [`Subscriber::next_packet_into`].
    ///
    /// Errors: as [`Subscriber::next_packet`].
    pub fn next_packet_with<T>(
        &self,
        timeout: Duration,
        mut visit: impl FnMut(PacketView<'_>) -> T,
    ) -> Result<(PacketMeta, T), PacketRecvError> {
        let mut out = None;
        let meta = self.packet_with(
            &mut |reader, cursor| {
                let (read, got) = reader.read_view(cursor, &mut visit)?;
                out = got;
                Ok(read)
            },
            timeout,
        )?;
        // A packet read always carries its visit's result (its length is
        // above 0, checked before the visit).
        match out {
            Some(t) => Ok((meta, t)),
            None => Err(PacketRecvError::Corrupt(PacketReadError::Corrupt {
                seq: meta.seq,
                len: meta.len as u32,
            })),
        }
    }

    /// The next packet, read from the ring by `read` (a copy into a
    /// buffer, or a visit in place), waiting up to `timeout` (§9.5).
    fn packet_with(
        &self,
        read: &mut ReadFn<'_>,
        timeout: Duration,
    ) -> Result<PacketMeta, PacketRecvError> {
        let start = Instant::now();
        let deadline = start
            .checked_add(timeout)
            .unwrap_or(start + Duration::from_secs(100 * 365 * 86_400));
        loop {
            // §9.5 order: `wake` first, then the gone state, then the ring,
            // so a packet published after the look changes `wake` (no lost
            // wake-up) and every packet published before a close is read.
            let seen = self
                .with_packets(|st| st.wake_value())
                .ok_or(PacketRecvError::NotSubscribed)?;
            let gone = self.publisher_gone();
            let got = self
                .with_packets(|st| st.read_one(gone, &mut *read))
                .ok_or(PacketRecvError::NotSubscribed)?;
            match got {
                Step::Packet(meta) => return Ok(meta),
                Step::Corrupt(e) => return Err(PacketRecvError::Corrupt(e)),
                Step::Empty { finished: false } => {}
                Step::Empty { finished: true } => {
                    self.service_socket()?;
                    match self.recover_packets(deadline) {
                        Some(None) => continue,
                        None => return Err(PacketRecvError::Disconnected),
                        Some(Some(until)) => {
                            if Instant::now() >= deadline {
                                return Err(PacketRecvError::Timeout(timeout));
                            }
                            let until = until.min(deadline);
                            std::thread::sleep(
                                until.saturating_duration_since(Instant::now()).min(SLICE),
                            );
                            continue;
                        }
                    }
                }
            }
            // The ring is open and empty. A clean shutdown sets its
            // `shutdown_flag`, seen above without a syscall; the socket (EOF
            // of a crashed publisher, GOODBYE) is read once per wait, or at
            // most every SOCKET_POLL_EVERY by a polling caller.
            let now = Instant::now();
            let socket_due = self
                .with_packets(|st| {
                    let due = timeout > SOCKET_POLL_EVERY
                        || now.saturating_duration_since(st.socket_read_at.get())
                            >= SOCKET_POLL_EVERY;
                    if due {
                        st.socket_read_at.set(now);
                    }
                    due
                })
                .unwrap_or(true);
            if socket_due {
                self.service_socket()?;
            }
            if Instant::now() >= deadline {
                return Err(PacketRecvError::Timeout(timeout));
            }
            self.with_packets(|st| st.wait(seen, deadline));
        }
    }

    /// The codec id and extradata (Annex B parameter sets) from the packet
    /// ring header, for a muxer's or decoder's codec parameters.
    ///
    /// Errors: [`PacketRecvError::NotSubscribed`], [`PacketRecvError::Codec`]
    /// (size above 4096, or rewritten during every attempt).
    pub fn codec_params(&self) -> Result<CodecParams, PacketRecvError> {
        self.with_packets(|st| {
            let reader = st.reader().ok_or(PacketRecvError::Disconnected)?;
            let mut ex = vec![0u8; MAX_EXTRADATA];
            let info = reader.codec(&mut ex)?;
            ex.truncate(info.extradata_len);
            Ok(CodecParams {
                codec_id: info.codec_id,
                extradata: ex,
            })
        })
        .ok_or(PacketRecvError::NotSubscribed)?
    }

    /// Packet counters (all zero without a packet subscription); they carry
    /// over reconnects.
    pub fn packet_stats(&self) -> PacketStats {
        self.with_packets(|s| s.stats.get()).unwrap_or_default()
    }

    /// Whether this subscriber reads the packet ring.
    pub fn has_packets(&self) -> bool {
        self.with_packets(|_| ()).is_some()
    }
}
