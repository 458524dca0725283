//! Which memory backend a subscriber imports with, or a publisher exports
//! with: the one place the "auto" choice is made (`docs/protocol.md` §3.6).

use crate::error::Error;
use crate::kind::BackendKind;
use cuframes_core::runtime::Offer;
use cuframes_core::{MemoryKind, SyncKind};

/// A backend as asked for (command-line `--backend`, C `cuframes_backend`,
/// Python `backend=`, GStreamer `backend` property).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// Subscribers: decided from the publisher's offer on the same
    /// connection ([`Backend::resolve`]). Publishers: CUDA when this build
    /// has it and a driver and GPU are present, else host memory.
    #[default]
    Auto,
    /// Host memory (memfd), always built.
    Host,
    /// CUDA device memory (cargo feature `cuda`).
    Cuda,
    /// Vulkan external memory (cargo feature `vulkan`).
    Vulkan,
}

impl core::str::FromStr for Backend {
    type Err = Error;

    /// `auto`, `host`, `cuda` or `vulkan`.
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "auto" => Ok(Backend::Auto),
            "host" => Ok(Backend::Host),
            "cuda" => Ok(Backend::Cuda),
            "vulkan" => Ok(Backend::Vulkan),
            other => Err(Error::BadBackendName(other.to_owned())),
        }
    }
}

/// [`Error::NotBuilt`] unless `kind` is in this build.
fn require(kind: BackendKind) -> Result<BackendKind, Error> {
    if kind.is_built() {
        Ok(kind)
    } else {
        Err(Error::NotBuilt(kind))
    }
}

/// Whether a CUDA driver with a device can be used here.
fn cuda_usable() -> bool {
    #[cfg(feature = "cuda")]
    {
        cuframes_cuda::driver_present()
    }
    #[cfg(not(feature = "cuda"))]
    {
        false
    }
}

impl Backend {
    /// The backend a subscriber imports `offer` with.
    ///
    /// An explicit choice is returned as it is (the import then fails with
    /// `ConnectError::MemoryKind` if that backend cannot read the memory).
    /// [`Backend::Auto`] picks, from what the publisher offers:
    ///
    /// | memory kind | sync kind | backend |
    /// |---|---|---|
    /// | `HostMemfd` | any | host |
    /// | `CudaVmmFd` | any | CUDA if built and a driver is present, else Vulkan if built |
    /// | `CudaLegacyIpc` | any | CUDA |
    /// | `VulkanOpaqueFd` | `HostFence` | CUDA (`cuImportExternalMemory`) if built and a driver is present, else Vulkan |
    /// | `VulkanOpaqueFd` | `VulkanTimeline` | Vulkan |
    ///
    /// Errors: [`Error::NotBuilt`] when the backend is not in this build;
    /// [`Error::NoImporter`] when no backend of this build imports the
    /// offered memory (an unknown kind, or GPU memory in a host-only build).
    pub fn resolve(self, offer: &Offer) -> Result<BackendKind, Error> {
        let kind = match self {
            Backend::Host => BackendKind::Host,
            Backend::Cuda => BackendKind::Cuda,
            Backend::Vulkan => BackendKind::Vulkan,
            Backend::Auto => {
                return auto_import(offer.memory_kind(), offer.sync_kind(), cuda_usable())
            }
        };
        require(kind)
    }

    /// The backend a publisher exports with: an explicit choice as it is,
    /// [`Backend::Auto`] CUDA when built and a driver is present, else host
    /// memory (the CUDA publisher is then still tried once by
    /// [`crate::Publisher::create`], which falls back to host memory only
    /// for `Auto`).
    ///
    /// Errors: [`Error::NotBuilt`].
    pub fn resolve_publisher(self) -> Result<BackendKind, Error> {
        match self {
            Backend::Auto if cuda_usable() => Ok(BackendKind::Cuda),
            Backend::Auto | Backend::Host => Ok(BackendKind::Host),
            Backend::Cuda => require(BackendKind::Cuda),
            Backend::Vulkan => require(BackendKind::Vulkan),
        }
    }
}

/// [`Backend::resolve`] for `Auto`: a pure function of the offer, the build
/// and whether CUDA is usable (`cuda`), so it is tested without a GPU.
pub(crate) fn auto_import(
    memory: MemoryKind,
    sync: SyncKind,
    cuda: bool,
) -> Result<BackendKind, Error> {
    let cuda = cuda && BackendKind::Cuda.is_built();
    let vulkan = BackendKind::Vulkan.is_built();
    let pick = match memory {
        MemoryKind::HostMemfd => Some(BackendKind::Host),
        MemoryKind::CudaVmmFd if cuda => Some(BackendKind::Cuda),
        MemoryKind::CudaVmmFd if vulkan => Some(BackendKind::Vulkan),
        MemoryKind::CudaLegacyIpc if BackendKind::Cuda.is_built() => Some(BackendKind::Cuda),
        MemoryKind::VulkanOpaqueFd if sync == SyncKind::HostFence && cuda => {
            Some(BackendKind::Cuda)
        }
        MemoryKind::VulkanOpaqueFd if vulkan => Some(BackendKind::Vulkan),
        _ => None,
    };
    pick.ok_or(Error::NoImporter { memory, sync })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_memory_is_always_read_with_the_host_backend() {
        for cuda in [false, true] {
            for sync in [SyncKind::HostFence, SyncKind::IpcEvent] {
                assert_eq!(
                    auto_import(MemoryKind::HostMemfd, sync, cuda).unwrap(),
                    BackendKind::Host
                );
            }
        }
    }

    #[test]
    fn vulkan_memory_goes_to_vulkan_without_a_cuda_driver() {
        let got = auto_import(MemoryKind::VulkanOpaqueFd, SyncKind::HostFence, false);
        if cfg!(feature = "vulkan") {
            assert_eq!(got.unwrap(), BackendKind::Vulkan);
        } else {
            assert!(matches!(got, Err(Error::NoImporter { .. })));
        }
    }

    #[test]
    fn vulkan_memory_goes_to_cuda_with_a_driver_unless_its_sync_is_a_timeline() {
        let fence = auto_import(MemoryKind::VulkanOpaqueFd, SyncKind::HostFence, true);
        let timeline = auto_import(MemoryKind::VulkanOpaqueFd, SyncKind::VulkanTimeline, true);
        match (cfg!(feature = "cuda"), cfg!(feature = "vulkan")) {
            (true, _) => assert_eq!(fence.unwrap(), BackendKind::Cuda),
            (false, true) => assert_eq!(fence.unwrap(), BackendKind::Vulkan),
            (false, false) => assert!(fence.is_err()),
        }
        if cfg!(feature = "vulkan") {
            assert_eq!(timeline.unwrap(), BackendKind::Vulkan);
        } else {
            assert!(timeline.is_err());
        }
    }

    #[test]
    fn cuda_memory_needs_a_gpu_backend() {
        let vmm = auto_import(MemoryKind::CudaVmmFd, SyncKind::HostFence, true);
        let legacy = auto_import(MemoryKind::CudaLegacyIpc, SyncKind::IpcEvent, false);
        if cfg!(feature = "cuda") {
            assert_eq!(vmm.unwrap(), BackendKind::Cuda);
            assert_eq!(legacy.unwrap(), BackendKind::Cuda);
        } else {
            assert!(legacy.is_err());
            assert_eq!(vmm.is_ok(), cfg!(feature = "vulkan"));
        }
    }

    #[test]
    fn an_unknown_memory_kind_has_no_importer() {
        assert!(matches!(
            auto_import(MemoryKind::Unknown(99), SyncKind::HostFence, true),
            Err(Error::NoImporter { .. })
        ));
    }

    #[test]
    fn names_parse() {
        for (s, b) in [
            ("auto", Backend::Auto),
            ("host", Backend::Host),
            ("cuda", Backend::Cuda),
            ("vulkan", Backend::Vulkan),
        ] {
            assert_eq!(s.parse::<Backend>().unwrap(), b);
        }
        assert!("gpu".parse::<Backend>().is_err());
    }
}
