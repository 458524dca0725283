//! One ring generation as a subscriber imported it.

use super::leases::LeaseState;
use crate::layout::{FrameLayout, StreamDesc};
use crate::runtime::backend::Importer;
use std::prelude::rust_2021::*;
use std::sync::Arc;

/// One ring generation as imported: the control region, the connection's
/// lease row, the slots and their stream description. Frames hold an `Arc`
/// of it, so it stays mapped while any of them lives.
pub(crate) struct Ring<B: Importer> {
    pub(super) leases: Arc<LeaseState>,
    pub(super) stream: StreamDesc,
    /// `stream` validated against the slot size: where each plane lies.
    pub(super) layout: FrameLayout,
    pub(super) slots: Vec<B::Imported>,
    /// WELCOME's `start_seq`: frames of this ring are above it.
    pub(super) start_seq: u64,
}

/// Whether two descriptions describe the same frames (all but `generation`).
pub(super) fn same_geometry(a: &StreamDesc, b: &StreamDesc) -> bool {
    StreamDesc {
        generation: 0,
        ..*a
    } == StreamDesc {
        generation: 0,
        ..*b
    }
}

/// The header's GPU UUID words as the 16 bytes they were made from.
pub(super) fn uuid_bytes(words: [u64; 2]) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&words[0].to_le_bytes());
    b[8..].copy_from_slice(&words[1].to_le_bytes());
    b
}
