//! [`PacketReader`]: a packets-only subscriber — a recorder that never
//! decodes (`docs/protocol.md` §9). No slot is imported, so no backend is
//! involved: it reads the packet ring of any publisher.

use crate::error::Error;
use crate::options::SubscriberOptions;
use cuframes_core::packet::{PacketMeta, PacketView};
use cuframes_core::runtime::{
    self as rt, CodecParams, EndReason, HostBackend, Packet, PacketStats,
};
use std::time::Duration;

/// Reads the encoded packets of one stream key: one Annex B access unit per
/// packet, with pts / dts (ns), keyframe and discontinuity flags.
///
/// ```no_run
/// use cuframes::{PacketReader, SubscriberOptions, DeliveryMode};
/// use std::time::Duration;
///
/// let reader = PacketReader::connect("cam1", SubscriberOptions::new(DeliveryMode::InOrder))?;
/// let params = reader.codec_params()?; // AVCodecID + SPS/PPS(/VPS)
/// println!("codec id {}, {} bytes of extradata", params.codec_id, params.extradata.len());
/// let p = reader.next_packet(Duration::from_secs(5))?;
/// println!("{} bytes, keyframe {}", p.data.len(), p.meta.is_key());
/// # Ok::<(), cuframes::Error>(())
/// ```
pub struct PacketReader {
    sub: rt::Subscriber<HostBackend>,
}

impl PacketReader {
    /// Connects to `key` for packets only (`opts.subscribe.frames` and
    /// `packets` are overridden; the backend is not used). Waits up to
    /// `opts.wait_publisher` for a publisher that is not up yet.
    ///
    /// Errors: [`Error::Connect`] — among them `NoPacketRing` (the
    /// publisher has none) and a refusal.
    pub fn connect(key: &str, mut opts: SubscriberOptions) -> Result<Self, Error> {
        opts.subscribe.frames = false;
        opts.subscribe.packets = true;
        let welcomed = crate::subscriber::handshake(key, &opts)?;
        Ok(PacketReader {
            sub: welcomed.import(HostBackend)?,
        })
    }

    /// The next packet, copied out of the ring, waiting at most `timeout`.
    ///
    /// Errors: [`Error::Packet`] — `Timeout`, `Disconnected`, `Corrupt`, `Control`.
    pub fn next_packet(&self, timeout: Duration) -> Result<Packet, Error> {
        Ok(self.sub.next_packet(timeout)?)
    }

    /// [`PacketReader::next_packet`] into `buf` (its capacity reused).
    pub fn next_packet_into(
        &self,
        buf: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<PacketMeta, Error> {
        Ok(self.sub.next_packet_into(buf, timeout)?)
    }

    /// The next packet read in place by `visit` (no copy; `visit` may run
    /// more than once, see core's `Subscriber::next_packet_with`).
    pub fn next_packet_with<T>(
        &self,
        timeout: Duration,
        visit: impl FnMut(PacketView<'_>) -> T,
    ) -> Result<(PacketMeta, T), Error> {
        Ok(self.sub.next_packet_with(timeout, visit)?)
    }

    /// The codec id and Annex B parameter sets from the ring header.
    pub fn codec_params(&self) -> Result<CodecParams, Error> {
        Ok(self.sub.codec_params()?)
    }

    /// Counters (they carry over reconnects).
    pub fn stats(&self) -> PacketStats {
        self.sub.packet_stats()
    }

    /// Why the connection ended (`None` while it is up).
    pub fn end_reason(&self) -> Option<EndReason> {
        self.sub.end_reason()
    }
}
