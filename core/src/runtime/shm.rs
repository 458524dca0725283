//! Shared memory: sealed memfds and their mappings. The one module of the
//! runtime that maps memory, hence `unsafe`.
//!
//! # References
//! - memfd_create(2), fcntl(2) `F_ADD_SEALS`, mmap(2)
#![allow(unsafe_code)]

use crate::layout::{header, ControlLayout, LayoutError};
use crate::ring::ControlWords;
use crate::sync::{AtomicU32, AtomicU64};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{MemfdFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};
use std::prelude::rust_2021::*;
use std::ptr::NonNull;

/// A shared-memory operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ShmError {
    /// memfd_create, ftruncate or F_ADD_SEALS failed.
    #[error("cannot create a {len}-byte memfd {name:?}: {source}")]
    Create {
        /// memfd name.
        name: String,
        /// Requested size, bytes.
        len: u64,
        /// OS error.
        source: rustix::io::Errno,
    },
    /// The fd's size is not what the peer announced.
    #[error("shared memory fd holds {actual} bytes, {expected} were announced")]
    Size {
        /// Bytes in the fd.
        actual: u64,
        /// Bytes announced.
        expected: u64,
    },
    /// The fd can shrink (a mapping of it could fault later) or be mapped
    /// writable by another receiver.
    #[error("shared memory fd is not sealed with F_SEAL_SHRINK and F_SEAL_FUTURE_WRITE")]
    NotSealed,
    /// fstat or mmap failed.
    #[error("cannot map {len} bytes of shared memory: {source}")]
    Map {
        /// Requested length, bytes.
        len: usize,
        /// OS error.
        source: rustix::io::Errno,
    },
}

/// Whether a mapping may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `PROT_READ`.
    ReadOnly,
    /// `PROT_READ | PROT_WRITE`.
    ReadWrite,
}

/// Creates a memfd of `len` bytes (zero-filled, close-on-exec), maps it
/// read-write for its creator, then seals it against shrinking, growing,
/// any *future* writable mapping or write(2) (`F_SEAL_FUTURE_WRITE`) and
/// further sealing. Whoever receives the fd can map it read-only only; the
/// creator keeps writing through the returned mapping.
pub fn create_shared(name: &str, len: u64) -> Result<(OwnedFd, Mapping), ShmError> {
    let err = |source| ShmError::Create {
        name: name.to_owned(),
        len,
        source,
    };
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .map_err(err)?;
    rustix::fs::ftruncate(&fd, len).map_err(err)?;
    let map = Mapping::map(fd.as_fd(), len as usize, Access::ReadWrite)?;
    rustix::fs::fcntl_add_seals(
        &fd,
        SealFlags::SHRINK | SealFlags::GROW | SealFlags::FUTURE_WRITE | SealFlags::SEAL,
    )
    .map_err(err)?;
    Ok((fd, map))
}

/// Checks an fd received from a peer: exactly `len` bytes, sealed against
/// shrinking (so accesses below `len` can never fault with SIGBUS) and
/// against future writes (so no other receiver can write it either).
pub fn check_received(fd: BorrowedFd<'_>, len: u64) -> Result<(), ShmError> {
    let st = rustix::fs::fstat(fd).map_err(|source| ShmError::Map {
        len: len as usize,
        source,
    })?;
    let actual = st.st_size as u64;
    if actual != len {
        return Err(ShmError::Size {
            actual,
            expected: len,
        });
    }
    let seals = rustix::fs::fcntl_get_seals(fd).map_err(|_| ShmError::NotSealed)?;
    if !seals.contains(SealFlags::SHRINK | SealFlags::FUTURE_WRITE) {
        return Err(ShmError::NotSealed);
    }
    Ok(())
}

/// A `MAP_SHARED` mapping of a whole fd, unmapped on drop.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    access: Access,
}

// SAFETY: the mapping is plain shared memory owned by this value; it is only
// read through atomics or through `&self`/`&mut self` borrows of this value,
// so moving it to another thread or sharing `&Mapping` is as sound as for a
// `Box<[u8]>` of atomics.
unsafe impl Send for Mapping {}
// SAFETY: see `Send`; `&Mapping` exposes no interior mutability other than
// atomics (`words`, `u32_at`) and shared reads (`bytes`).
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes of `fd` (`len` > 0, a multiple of 8).
    ///
    /// Safe: it checks itself that the fd holds at least `len` bytes now
    /// ([`ShmError::Size`] otherwise), the mapping aliases no Rust object,
    /// and every access through it is in bounds, through atomics, or a byte
    /// read whose values are all valid ([`Mapping::bytes`] states the model
    /// for memory another process writes). What it cannot check for an fd
    /// it did not seal itself is the future: a peer that shrinks an unsealed
    /// file later makes accesses beyond the new end raise SIGBUS, which
    /// kills the process (a crash, not a memory error). The protocol forbids
    /// mapping such fds: a peer's fd must pass [`check_received`] (exact
    /// size, `F_SEAL_SHRINK`, `F_SEAL_FUTURE_WRITE`) first, and every
    /// caller in this crate does so.
    ///
    /// Errors: [`ShmError::Size`] (fewer than `len` bytes), [`ShmError::Map`].
    pub fn map(fd: BorrowedFd<'_>, len: usize, access: Access) -> Result<Self, ShmError> {
        if len == 0 || len % 8 != 0 {
            return Err(ShmError::Map {
                len,
                source: rustix::io::Errno::INVAL,
            });
        }
        let st = rustix::fs::fstat(fd).map_err(|source| ShmError::Map { len, source })?;
        let actual = u64::try_from(st.st_size).unwrap_or(0);
        if actual < len as u64 {
            return Err(ShmError::Size {
                actual,
                expected: len as u64,
            });
        }
        let prot = match access {
            Access::ReadOnly => ProtFlags::READ,
            Access::ReadWrite => ProtFlags::READ | ProtFlags::WRITE,
        };
        // SAFETY: a fresh mapping at an address the kernel picks (null hint),
        // so no existing Rust object is aliased; `fd` is a valid open fd for
        // the duration of the call (it is borrowed); `len` is non-zero; the
        // file holds at least `len` bytes (checked above; shrinking it later
        // is what `check_received`'s seals exclude for peers' fds).
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                MapFlags::SHARED,
                fd.as_fd(),
                0,
            )
        }
        .map_err(|source| ShmError::Map { len, source })?;
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(ShmError::Map {
            len,
            source: rustix::io::Errno::FAULT,
        })?;
        Ok(Mapping { ptr, len, access })
    }

    /// Length, bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false (mappings are never empty).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The mapping as atomic u64 words (`len / 8` of them).
    ///
    /// Loads are fine on read-only mappings; stores on one would fault, so
    /// only the owner of a read-write mapping stores.
    pub fn words(&self) -> &[AtomicU64] {
        // SAFETY: `ptr` is page-aligned (mmap), hence 8-aligned; the region
        // is `len` bytes, `len % 8 == 0`, valid for the lifetime of `&self`
        // (unmapped only in `drop`); AtomicU64 has the size and alignment of
        // u64 and every bit pattern is valid; shared memory is only accessed
        // through atomics or byte copies, never through `&mut` of these words.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast::<AtomicU64>(), self.len / 8) }
    }

    /// The 32-bit atomic at `offset` bytes (4-aligned, in bounds), for futexes.
    pub fn u32_at(&self, offset: usize) -> Option<&AtomicU32> {
        if offset % 4 != 0 || offset.checked_add(4)? > self.len {
            return None;
        }
        // SAFETY: in bounds and 4-aligned (checked above, base page-aligned);
        // valid for `&self`'s lifetime; every bit pattern is a valid u32. No
        // location is accessed with two sizes from Rust: the frame ring's
        // futex words are accessed only as this AtomicU32 (the layout
        // reserves the upper half and no u64 access covers them); the packet
        // ring's `wake` word is loaded and stored as part of its u64 word,
        // and its AtomicU32 is only handed to futex(2) (`publisher/packets.rs`,
        // `packets.rs`), never loaded or stored through.
        Some(unsafe { &*self.ptr.as_ptr().add(offset).cast::<AtomicU32>() })
    }

    /// The bytes, for frame data a lease protects from concurrent writes.
    ///
    /// Memory model: another process may write these bytes at any time the
    /// protocol lets it (a publisher rewrites a slot after it revoked a
    /// lease on it, §5.2); this process cannot prevent it. Every byte value
    /// is valid, the mapping stays in place while `&self` lives and never
    /// faults (sealed size), so the worst a concurrent write does is that
    /// the bytes read are *torn*: a mix of two frames, or two reads of one
    /// byte that disagree. Callers treat data read through this slice as
    /// untrusted and, for frames, valid only if the lease was still valid
    /// afterwards (`Frame::release` / `Frame::is_valid`).
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: in bounds for `len` bytes, valid for `&self`'s lifetime
        // (unmapped only in `drop`); every bit pattern is a valid u8. The
        // bytes are shared memory: frame slots are written by the publisher
        // only while no lease on their frame is held (`docs/protocol.md`
        // §5.2); after a revocation they may change under the reader, which
        // the lease post-check reports (the model documented above).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes, writable; `None` on a read-only mapping.
    pub fn bytes_mut(&mut self) -> Option<&mut [u8]> {
        if self.access != Access::ReadWrite {
            return None;
        }
        // SAFETY: in bounds, valid while `&mut self` lives, writable (checked);
        // `&mut self` excludes every other borrow in this process.
        Some(unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned; no borrow of the
        // mapping outlives `self` (all accessors borrow `self`).
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// The control region `m` as words for `layout` (futex words included).
pub(crate) fn control_words(
    m: &Mapping,
    layout: ControlLayout,
) -> Result<ControlWords<'_>, LayoutError> {
    let too_small = LayoutError::TooSmall(m.len() as u64);
    let wake = m.u32_at(header::WAKE_OFFSET).ok_or(too_small)?;
    let rel = m.u32_at(header::RELEASE_WAKE_OFFSET).ok_or(too_small)?;
    ControlWords::new(m.words(), wake, rel, layout).map_err(|_| too_small)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::Ordering;

    #[test]
    fn memfd_is_sealed_and_shared_between_mappings() {
        let (fd, rw) = create_shared("test", 4096).unwrap();
        check_received(fd.as_fd(), 4096).unwrap();
        assert!(matches!(
            check_received(fd.as_fd(), 8192),
            Err(ShmError::Size {
                actual: 4096,
                expected: 8192
            })
        ));
        assert!(
            rustix::fs::ftruncate(&fd, 100).is_err(),
            "shrinking must be sealed"
        );
        assert!(
            Mapping::map(fd.as_fd(), 4096, Access::ReadWrite).is_err(),
            "receivers must not map it writable"
        );
        let ro = Mapping::map(fd.as_fd(), 4096, Access::ReadOnly).unwrap();
        rw.words()[3].store(77, Ordering::SeqCst);
        assert_eq!(ro.words()[3].load(Ordering::SeqCst), 77);
        assert_eq!(ro.bytes()[24], 77);
        assert!(ro.u32_at(4094).is_none());
        assert!(ro.u32_at(2).is_none());
        assert!(matches!(
            Mapping::map(fd.as_fd(), 8192, Access::ReadOnly),
            Err(ShmError::Size {
                actual: 4096,
                expected: 8192
            })
        ));
    }

    #[test]
    fn unsealed_fds_are_refused() {
        let fd = rustix::fs::memfd_create("loose", MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&fd, 4096).unwrap();
        assert!(matches!(
            check_received(fd.as_fd(), 4096),
            Err(ShmError::NotSealed)
        ));
        // `map` checks the size itself: no mapping past the end of the file.
        assert!(matches!(
            Mapping::map(fd.as_fd(), 8192, Access::ReadOnly),
            Err(ShmError::Size {
                actual: 4096,
                expected: 8192
            })
        ));
    }
}
