//! The encoded packet ring (`docs/protocol.md` §9).
//!
//! A publisher places every demuxed packet (Annex B) in a shared-memory ring
//! before decoding it, so recorders can mux the stream without decoding and
//! without a connection of their own to the camera. The layout is the
//! reference C implementation's §10 byte for byte ([`layout`]): a 0x1040-byte
//! header with up to 4096 bytes of codec extradata, N 64-byte slots, and a
//! wrap-around data area addressed by an absolute byte cursor.
//!
//! [`PacketWriter`] is the publisher's half, [`PacketReader`] a subscriber's.
//! Both work on a slice of atomic words from [`crate::sync`], never on raw
//! memory: payload bytes too are read and written as 64-bit atomic words,
//! so a reader racing the writer performs no data race (it may copy bytes of
//! a newer packet, which its seqlock post-check then rejects) and loom can
//! check the protocol (`core/tests/loom_packet.rs`).
//!
//! Readers never write the region: a packet ring has no leases, and the
//! publisher overwrites the oldest packets unconditionally. A reader that
//! falls `N` packets (or `data_size` bytes) behind loses packets, and resyncs
//! on the next keyframe with a discontinuity.

pub mod layout;
mod reader;
mod region;
mod writer;

pub use layout::{
    PacketGeometry, PacketHeader, PacketLayoutError, PacketSlot, AV_CODEC_ID_H264,
    AV_CODEC_ID_HEVC, MAX_EXTRADATA, MAX_PACKET_SLOTS, MIN_PACKET_SLOTS, PACKET_CORRUPT,
    PACKET_DISCONTINUITY, PACKET_HEADER_SIZE, PACKET_KEY, PACKET_LAST_IN_AU, PACKET_LAYOUT_VERSION,
    PACKET_MAGIC, PACKET_SLOT_SIZE, SEQ_NONE, TS_NONE,
};
pub use reader::{
    CodecInfo, CodecInfoError, PacketCursor, PacketMeta, PacketRead, PacketReadError, PacketReader,
};
pub use writer::{ExtradataError, PacketPublishError, PacketRingInit, PacketWriter};

/// FFmpeg `AVCodecID` of `codec` (0 for an unknown codec).
pub const fn av_codec_id(codec: crate::Codec) -> u32 {
    match codec {
        crate::Codec::H264 => AV_CODEC_ID_H264,
        crate::Codec::Hevc => AV_CODEC_ID_HEVC,
        _ => 0,
    }
}

#[cfg(test)]
mod tests;
