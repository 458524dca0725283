//! FFI boundary to the Vulkan loader (ash, loaded at run time).
#![allow(unsafe_code)]

/// What the Vulkan loader offers this backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Instance API version, `VK_MAKE_API_VERSION` encoded.
    pub api_version: u32,
    /// Whether `VK_KHR_external_memory_capabilities` is an instance extension.
    pub external_memory_capabilities: bool,
}

/// The loader could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// No `libvulkan.so.1`.
    #[error("no Vulkan loader (libvulkan.so.1): {0}")]
    NoLoader(String),
    /// A loader call failed.
    #[error("Vulkan loader call failed: {0}")]
    Call(ash::vk::Result),
}

/// Loads the Vulkan loader and lists what this backend needs.
pub fn probe() -> Result<Probe, ProbeError> {
    // SAFETY: `Entry::load` dlopens the system loader; the returned entry
    // keeps the library loaded while it lives, and it lives to the end of
    // this function, past every call made through it.
    let entry = unsafe { ash::Entry::load() }.map_err(|e| ProbeError::NoLoader(e.to_string()))?;
    // SAFETY: `entry` is a loaded loader (above); both calls take no pointers
    // from us besides the optional layer name, which is `None`.
    let api_version = unsafe { entry.try_enumerate_instance_version() }
        .map_err(ProbeError::Call)?
        .unwrap_or(ash::vk::API_VERSION_1_0);
    // SAFETY: as above.
    let exts =
        unsafe { entry.enumerate_instance_extension_properties(None) }.map_err(ProbeError::Call)?;
    let external_memory_capabilities = exts.iter().any(|e| {
        e.extension_name_as_c_str()
            .is_ok_and(|n| n == ash::khr::external_memory_capabilities::NAME)
    });
    Ok(Probe {
        api_version,
        external_memory_capabilities,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn probe_never_panics() {
        match super::probe() {
            Ok(p) => assert!(p.api_version >= ash::vk::API_VERSION_1_0),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
}
