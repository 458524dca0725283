//! The publisher's packet ring (`docs/protocol.md` §9): a sealed memfd
//! holding layout 3 (the reference §10 layout plus the `wake` futex word),
//! written on the caller's thread by [`Publisher::publish_packet`], offered
//! to subscribers in WELCOME.

use super::{CreateError, Publisher};
use crate::packet::{
    ExtradataError, PacketGeometry, PacketLayoutError, PacketPublishError, PacketRingInit,
    PacketWriter,
};
use crate::runtime::backend::Exporter;
use crate::runtime::futex;
use crate::runtime::shm::{self, Mapping};
use rustix::fd::OwnedFd;
use std::prelude::rust_2021::*;

/// Packet ring settings (`PublisherConfig::packets`); the defaults are the
/// reference's: 64 slots, 8 MiB of data, packets up to 2 MiB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketRingConfig {
    /// Slots, 1..=1024: how many packets a reader may fall behind.
    pub slots: u32,
    /// Bytes of the data area, a multiple of 8, > 0.
    pub data_size: u32,
    /// Largest packet accepted, bytes (≤ `data_size`); larger ones are
    /// refused with [`PacketError::Publish`] and not published.
    pub max_packet_size: u32,
    /// FFmpeg `AVCodecID` of the packets ([`crate::Codec::av_codec_id`]).
    pub codec_id: u32,
    /// Codec extradata (Annex B parameter sets, ≤ 4096 bytes), stored before
    /// the socket accepts anyone, so every subscriber sees it; may be empty
    /// and set later with [`Publisher::set_codec_extradata`].
    pub extradata: Vec<u8>,
}

impl PacketRingConfig {
    /// Defaults for `codec_id`.
    pub fn new(codec_id: u32) -> Self {
        PacketRingConfig {
            slots: 64,
            data_size: 8 << 20,
            max_packet_size: 2 << 20,
            codec_id,
            extradata: Vec::new(),
        }
    }
}

/// A packet-ring operation of the publisher failed; the publisher and the
/// ring are unaffected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// The publisher was created without a packet ring.
    #[error("this publisher has no packet ring (PublisherConfig::packets is None)")]
    NoRing,
    /// The packet was refused (empty or oversized).
    #[error(transparent)]
    Publish(#[from] PacketPublishError),
    /// The extradata does not fit the header.
    #[error(transparent)]
    Extradata(#[from] ExtradataError),
}

/// The packet region a publisher owns.
pub(crate) struct PacketRegion {
    pub fd: OwnedFd,
    map: Mapping,
    pub geo: PacketGeometry,
    max_packet: usize,
}

impl PacketRegion {
    /// Creates, initialises and seals the region for `cfg`.
    pub fn create(key: &str, cfg: &PacketRingConfig) -> Result<Self, CreateError> {
        let geo = PacketGeometry::new(cfg.slots, cfg.data_size).map_err(CreateError::Packets)?;
        if cfg.max_packet_size == 0 || cfg.max_packet_size > cfg.data_size {
            return Err(CreateError::Packets(PacketLayoutError::DataSize(
                cfg.max_packet_size,
            )));
        }
        let (fd, map) = shm::create_shared(&format!("cuframes-{key}-packets"), geo.region_size())?;
        let region = PacketRegion {
            fd,
            map,
            geo,
            max_packet: cfg.max_packet_size as usize,
        };
        let mut w = region.writer();
        w.init(PacketRingInit {
            codec_id: cfg.codec_id,
            producer_pid: std::process::id() as u64,
        });
        w.set_extradata(&cfg.extradata)
            .map_err(CreateError::Extradata)?;
        Ok(region)
    }

    pub fn writer(&self) -> PacketWriter<'_> {
        match PacketWriter::new(self.map.words(), self.geo) {
            Some(w) => w,
            None => unreachable_geometry(),
        }
    }

    /// FUTEX_WAKEs every reader sleeping on the `wake` word. Always: readers
    /// map the region read-only, so no reader can announce that it sleeps
    /// (a FUTEX_WAKE without waiters is one syscall that finds none).
    fn wake(&self) {
        let word = self
            .geo
            .wake_offset()
            .and_then(|o| usize::try_from(o).ok())
            .and_then(|o| self.map.u32_at(o));
        if let Some(word) = word {
            futex::wake_all(word);
        }
    }

    /// Sets `shutdown_flag`, bumps `wake` and wakes the sleeping readers.
    pub fn close(&self) {
        self.writer().close();
        self.wake();
    }
}

#[cold]
fn unreachable_geometry() -> ! {
    // The mapping is created by `PacketRegion::create` with exactly
    // `geo.region_size()` bytes.
    core::panic!("packet region smaller than its own geometry")
}

impl<B: Exporter + Send + Sync + 'static> Publisher<B> {
    /// Stores the codec extradata subscribers read with the packets: Annex B
    /// parameter sets (SPS+PPS; VPS+SPS+PPS for HEVC), ≤ 4096 bytes. The ring
    /// does not interpret the bytes. Prefer [`PacketRingConfig::extradata`]
    /// (set before anyone connects); otherwise call it before the first packet.
    ///
    /// Errors: [`PacketError::NoRing`], [`PacketError::Extradata`] (too long;
    /// nothing stored).
    pub fn set_codec_extradata(&self, extradata: &[u8]) -> Result<(), PacketError> {
        let ring = self.shared.packets.as_ref().ok_or(PacketError::NoRing)?;
        ring.writer().set_extradata(extradata)?;
        Ok(())
    }

    /// Publishes one encoded packet (Annex B, one access unit) with its
    /// timestamps in ns (`None`: unknown) and flags
    /// ([`crate::packet::PACKET_KEY`] …). Returns its sequence number (the
    /// first is 0). Never blocks: the oldest packets are overwritten. Wakes
    /// the readers sleeping on the ring (one FUTEX_WAKE per packet).
    ///
    /// Errors: [`PacketError::NoRing`]; [`PacketError::Publish`] for an empty
    /// packet or one above `max_packet_size` (the ring is unchanged).
    pub fn publish_packet(
        &mut self,
        data: &[u8],
        pts_ns: Option<i64>,
        dts_ns: Option<i64>,
        flags: u32,
    ) -> Result<u64, PacketError> {
        let ring = self.shared.packets.as_ref().ok_or(PacketError::NoRing)?;
        let ts = |t: Option<i64>| t.unwrap_or(crate::packet::TS_NONE);
        let seq = ring
            .writer()
            .publish(data, ts(pts_ns), ts(dts_ns), flags, ring.max_packet)?;
        ring.wake();
        self.stats.packets_published += 1;
        Ok(seq)
    }

    /// Whether this publisher has a packet ring.
    pub fn has_packet_ring(&self) -> bool {
        self.shared.packets.is_some()
    }
}
