//! The encoded packet ring (`docs/protocol.md` §9).
//!
//! A publisher places every demuxed packet (Annex B) in a shared-memory ring
//! before decoding it, so recorders can mux the stream without decoding and
//! without a connection of their own to the camera. The layout is the
//! reference C implementation's §10 byte for byte ([`layout`]): a 0x1040-byte
//! header with up to 4096 bytes of codec extradata, N 64-byte slots, and a
//! wrap-around data area addressed by an absolute byte cursor — followed, in
//! this publisher's layout 3, by a 64-byte tail with the `wake` futex word.
//!
//! [`PacketWriter`] is the publisher's half, [`PacketReader`] a subscriber's.
//! Both work on a slice of atomic words from [`crate::sync`]: header and
//! slot fields are 64-bit atomic accesses; payload bytes are copied in bulk
//! inside a seqlock (release fence after the writer's claim, acquire fence
//! before the reader's re-check) by the one `unsafe` module `bulk`, so a
//! reader racing the writer may copy bytes of a newer packet, which its
//! post-check then rejects. Under loom the copies are atomic words, so loom
//! checks the protocol and its fences (`core/tests/loom_packet.rs`).
//!
//! This publisher writes layout 3: the reference layout plus a 64-byte tail
//! with a `wake` futex word, bumped after every packet, so readers can sleep
//! until one is published. Readers read layout 2 (the reference's) too, and
//! poll it.
//!
//! Readers never write the region: a packet ring has no leases, and the
//! publisher overwrites the oldest packets unconditionally. A reader that
//! falls `N` packets (or `data_size` bytes) behind loses packets, and resyncs
//! on the next keyframe with a discontinuity.

mod bulk;
pub mod layout;
mod reader;
mod region;
mod writer;

pub use layout::{
    PacketGeometry, PacketHeader, PacketLayoutError, PacketSlot, PacketTail, AV_CODEC_ID_H264,
    AV_CODEC_ID_HEVC, MAX_EXTRADATA, MAX_PACKET_SLOTS, MIN_PACKET_SLOTS, PACKET_CORRUPT,
    PACKET_DISCONTINUITY, PACKET_HEADER_SIZE, PACKET_KEY, PACKET_LAST_IN_AU, PACKET_LAYOUT_V2,
    PACKET_LAYOUT_VERSION, PACKET_MAGIC, PACKET_SLOT_SIZE, PACKET_TAIL_SIZE, SEQ_NONE, TS_NONE,
};
pub use reader::{
    CodecInfo, CodecInfoError, PacketCursor, PacketMeta, PacketRead, PacketReadError, PacketReader,
    PacketSink, PacketView,
};
pub use writer::{ExtradataError, PacketPublishError, PacketRingInit, PacketWriter};

/// FFmpeg `AVCodecID` of `codec` (0 for an unknown codec): the same as
/// [`crate::Codec::av_codec_id`], kept for existing callers.
pub const fn av_codec_id(codec: crate::Codec) -> u32 {
    codec.av_codec_id()
}

#[cfg(test)]
mod tests;
