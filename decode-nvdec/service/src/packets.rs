//! The packet side of a stream: Annex B conversion, packets demuxed before
//! the publisher exists, and the flags of the next packet
//! (`docs/protocol.md` §9).

use cuframes_core::packet::{PACKET_DISCONTINUITY, PACKET_KEY, PACKET_LAST_IN_AU};
use cuframes_core::runtime::{Backend, Publisher};
use cuframes_media::{AnnexB, Packet};

/// A converted packet waiting for the publisher: data, pts, dts (ns), flags.
type PendingPacket = (Vec<u8>, Option<i64>, Option<i64>, u32);

/// Most packets queued before the first frame creates the publisher (a
/// stream whose decoder never produces a frame must not grow without bound).
const MAX_PENDING: usize = 512;

/// Feeds demuxed packets into a publisher's packet ring as Annex B.
pub struct PacketFeed {
    annexb: AnnexB,
    pending: Vec<PendingPacket>,
    discontinuity: bool,
    buf: Vec<u8>,
    /// Packets skipped: not valid length-prefixed NAL units, refused by the
    /// ring (too large), or queued past the pending limit.
    pub skipped: u64,
}

impl PacketFeed {
    /// A feed converting with `annexb` (whose extradata is the ring's).
    pub fn new(annexb: AnnexB) -> Self {
        PacketFeed {
            annexb,
            pending: Vec::new(),
            discontinuity: false,
            buf: Vec::new(),
            skipped: 0,
        }
    }

    /// The Annex B parameter sets the ring announces.
    pub fn extradata(&self) -> &[u8] {
        self.annexb.extradata()
    }

    /// The next packet carries DISCONTINUITY (a gap: reconnect, loop, skip).
    pub fn mark_discontinuity(&mut self) {
        self.discontinuity = true;
    }

    /// Converts `p` and publishes it, or queues it while there is no
    /// publisher yet. A packet that cannot be converted or is refused is
    /// skipped with a warning; the next one carries DISCONTINUITY.
    pub fn feed<B: Backend + Send + Sync + 'static>(
        &mut self,
        p: &Packet,
        publisher: Option<&mut Publisher<B>>,
    ) {
        if let Err(e) = self.annexb.convert(&p.data, &mut self.buf) {
            tracing::warn!("skipping a packet that is not valid length-prefixed NAL units: {e}");
            self.skip();
            return;
        }
        let mut flags = PACKET_LAST_IN_AU;
        if p.keyframe {
            flags |= PACKET_KEY;
        }
        if std::mem::take(&mut self.discontinuity) {
            flags |= PACKET_DISCONTINUITY;
        }
        match publisher {
            Some(publ) => self.publish(publ, None, p.pts_ns, p.dts_ns, flags),
            None if self.pending.len() < MAX_PENDING => {
                self.pending
                    .push((self.buf.clone(), p.pts_ns, p.dts_ns, flags))
            }
            None => self.skip(),
        }
    }

    fn publish<B: Backend + Send + Sync + 'static>(
        &mut self,
        publ: &mut Publisher<B>,
        data: Option<&[u8]>,
        pts: Option<i64>,
        dts: Option<i64>,
        flags: u32,
    ) {
        let data = data.unwrap_or(&self.buf);
        if let Err(e) = publ.publish_packet(data, pts, dts, flags) {
            tracing::warn!("packet refused: {e}; skipping it");
            self.skip();
        }
    }

    fn skip(&mut self) {
        self.skipped += 1;
        self.discontinuity = true;
    }

    /// Publishes what was demuxed before the publisher existed.
    pub fn flush<B: Backend + Send + Sync + 'static>(&mut self, publ: &mut Publisher<B>) {
        for (data, pts, dts, flags) in std::mem::take(&mut self.pending) {
            self.publish(publ, Some(&data), pts, dts, flags);
        }
    }
}
