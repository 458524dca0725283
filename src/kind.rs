//! [`BackendKind`]: a backend in use, what `Backend::Auto` resolves to.

/// A backend in use: what [`crate::Backend::Auto`] resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// Host memory: planes are byte slices of the shared mapping.
    Host,
    /// CUDA: planes are device pointers.
    Cuda,
    /// Vulkan: planes are ranges of a `VkBuffer`.
    Vulkan,
}

impl BackendKind {
    /// The lowercase name (`host`, `cuda`, `vulkan`).
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Host => "host",
            BackendKind::Cuda => "cuda",
            BackendKind::Vulkan => "vulkan",
        }
    }

    /// Whether this build contains the backend (its cargo feature).
    pub fn is_built(self) -> bool {
        match self {
            BackendKind::Host => true,
            BackendKind::Cuda => cfg!(feature = "cuda"),
            BackendKind::Vulkan => cfg!(feature = "vulkan"),
        }
    }
}

impl core::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}
