//! The host-memory backend: one sealed memfd per slot (`MemoryKind::HostMemfd`).

use super::backend::{Api, BackendError, BackendErrorKind, Exporter, Importer, SlotExport};
use super::shm::{self, Access, Mapping, ShmError};
use crate::layout::{CopyError, FrameLayout};
use crate::MemoryKind;
use rustix::fd::{AsFd, OwnedFd};
use std::prelude::rust_2021::*;

/// Host memory shared as memfds; works on any Linux machine.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostBackend;

/// A host slot error.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// Creating, checking or mapping the memfd failed.
    #[error(transparent)]
    Shm(#[from] ShmError),
    /// The publisher sent no fd for a slot.
    #[error("slot arrived without its memfd")]
    MissingFd,
    /// dup(2) of the slot fd failed.
    #[error("cannot duplicate slot fd: {0}")]
    Dup(rustix::io::Errno),
}

impl BackendError for HostError {
    fn kind(&self) -> BackendErrorKind {
        match self {
            // A memfd of the wrong size or without its seals came from the peer.
            HostError::MissingFd | HostError::Shm(ShmError::Size { .. } | ShmError::NotSealed) => {
                BackendErrorKind::BadPeer
            }
            HostError::Shm(_) | HostError::Dup(_) => BackendErrorKind::Failed,
        }
    }
}

/// A publisher's writable host slot.
#[derive(Debug)]
pub struct HostSlot {
    fd: OwnedFd,
    map: Mapping,
}

impl HostSlot {
    /// The slot's bytes, to write a frame into (layout: the stream description).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // A slot is always mapped read-write by its creator.
        self.map.bytes_mut().unwrap_or(&mut [])
    }
}

/// A subscriber's read-only host slot.
#[derive(Debug)]
pub struct HostImported {
    map: Mapping,
}

impl HostImported {
    /// The slot's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.map.bytes()
    }
}

impl FrameLayout {
    /// Replaces `out` with the frame in `src_slot` (the slot's bytes from
    /// its first, e.g. [`HostImported::bytes`]) packed: planes in order,
    /// rows without pitch padding, [`FrameLayout::packed_size`] bytes
    /// (FFmpeg's rawvideo layout). The allocating form of
    /// [`FrameLayout::copy_packed`] (std runtime).
    ///
    /// Errors: [`CopyError::SourceTooShort`] (fewer than
    /// [`FrameLayout::end`] bytes); `out` is empty then.
    pub fn pack_into(&self, src_slot: &[u8], out: &mut Vec<u8>) -> Result<(), CopyError> {
        out.clear();
        out.resize(self.packed_size() as usize, 0);
        if let Err(e) = self.copy_packed(src_slot, out) {
            out.clear();
            return Err(e);
        }
        Ok(())
    }
}

fn page_round(size: u64) -> u64 {
    size.max(1).div_ceil(crate::layout::PAGE) * crate::layout::PAGE
}

impl Api for HostBackend {
    type Slot = HostSlot;
    type Imported = HostImported;
    type Error = HostError;
    const NAME: &'static str = "host";

    fn memory_kind(&self) -> MemoryKind {
        MemoryKind::HostMemfd
    }
}

impl Exporter for HostBackend {
    fn allocate(&self, index: u32, size: u64) -> Result<HostSlot, HostError> {
        let len = page_round(size);
        let (fd, map) = shm::create_shared(&format!("cuframes-slot-{index}"), len)?;
        Ok(HostSlot { fd, map })
    }

    fn export(&self, slot: &HostSlot) -> Result<SlotExport, HostError> {
        let fd = rustix::io::fcntl_dupfd_cloexec(&slot.fd, 0).map_err(HostError::Dup)?;
        Ok(SlotExport {
            fd: Some(fd),
            handle: Vec::new(),
            sync_fd: None,
        })
    }
}

impl Importer for HostBackend {
    /// Checks the memfd (exact page-rounded size, `F_SEAL_SHRINK` and
    /// `F_SEAL_FUTURE_WRITE`, `docs/protocol.md` §2.2) before mapping it
    /// read-only.
    fn import(
        &self,
        fd: Option<OwnedFd>,
        _handle: &[u8],
        size: u64,
    ) -> Result<HostImported, HostError> {
        let fd = fd.ok_or(HostError::MissingFd)?;
        let len = page_round(size);
        shm::check_received(fd.as_fd(), len)?;
        Ok(HostImported {
            map: Mapping::map(fd.as_fd(), len as usize, Access::ReadOnly)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::layout::{CopyError, StreamDesc};
    use crate::{Codec, PixelFormat};
    use std::prelude::rust_2021::*;

    #[test]
    fn what_a_peer_sent_wrong_is_a_bad_peer_failure() {
        use crate::runtime::backend::{BackendError, BackendErrorKind, Importer};
        use crate::runtime::shm;
        let missing = super::HostBackend.import(None, &[], 4096).err().unwrap();
        assert_eq!(missing.kind(), BackendErrorKind::BadPeer);
        // A memfd of another size than announced.
        let (fd, _map) = shm::create_shared("cuframes-test-size", 8192).unwrap();
        let wrong = super::HostBackend
            .import(Some(fd), &[], 4096)
            .err()
            .unwrap();
        assert_eq!(wrong.kind(), BackendErrorKind::BadPeer, "{wrong}");
    }

    #[test]
    fn pack_into_replaces_the_vec_and_empties_it_on_error() {
        let d = StreamDesc::packed(3, 3, PixelFormat::Nv12, Codec::H264).unwrap();
        let l = d.validate(d.frame_size).unwrap();
        let slot: Vec<u8> = (0..d.frame_size).map(|i| i as u8).collect();
        let mut out = vec![9; 1000];
        l.pack_into(&slot, &mut out).unwrap();
        // Y: 3 rows of 3 bytes at pitch 256; CbCr: 2 rows of 4 bytes.
        let uv = 256 * 3;
        let mut want = Vec::new();
        for r in 0..3 {
            want.extend_from_slice(&slot[r * 256..r * 256 + 3]);
        }
        for r in 0..2 {
            want.extend_from_slice(&slot[uv + r * 256..uv + r * 256 + 4]);
        }
        assert_eq!(out, want);
        assert_eq!(
            l.pack_into(&slot[..10], &mut out),
            Err(CopyError::SourceTooShort {
                len: 10,
                need: l.end() as usize
            })
        );
        assert!(out.is_empty());
    }
}
