//! What creating a publisher, publishing and changing the stream report.

use crate::layout::StreamError;
use crate::runtime::backend::BackendFailure;
use crate::runtime::dir::DirError;
use crate::runtime::shm::ShmError;
use std::path::PathBuf;
use std::prelude::rust_2021::*;

/// Starting a publisher failed.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// Bad key or runtime directory.
    #[error(transparent)]
    Dir(#[from] DirError),
    /// `slots` is outside 2..=64.
    #[error("slot count {0} is outside 2..=64")]
    SlotCount(u32),
    /// The stream description is unusable.
    #[error("stream description: {0}")]
    Stream(#[from] StreamError),
    /// Another publisher answers on this key.
    #[error("a publisher is already live on {0}")]
    AlreadyRunning(PathBuf),
    /// The socket could not be bound.
    #[error("cannot bind {path}: {source}")]
    Bind {
        /// Socket path.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// The control region could not be made.
    #[error(transparent)]
    Shm(#[from] ShmError),
    /// The packet ring configuration is invalid.
    #[error("packet ring: {0}")]
    Packets(crate::packet::PacketLayoutError),
    /// `PacketRingConfig::extradata` is longer than 4096 bytes.
    #[error("packet ring: {0}")]
    Extradata(crate::packet::ExtradataError),
    /// The backend could not allocate or export a slot.
    #[error("backend: {0}")]
    Backend(BackendFailure),
}

/// Publishing one frame failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError<E: std::error::Error + 'static> {
    /// The caller's writer failed; the slot was given back unchanged.
    #[error("writing the frame into its slot failed: {0}")]
    Write(#[source] E),
}

/// Changing the stream failed; the publisher keeps its current ring.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The new stream description is unusable.
    #[error("stream description: {0}")]
    Stream(#[from] StreamError),
    /// The new control region could not be made.
    #[error(transparent)]
    Shm(#[from] ShmError),
    /// The backend could not allocate or export a slot of the new ring.
    #[error("backend: {0}")]
    Backend(BackendFailure),
    /// The publisher is finished or shutting down.
    #[error("the publisher is shutting down")]
    Stopped,
}
