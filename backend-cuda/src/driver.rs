//! FFI boundary to the CUDA driver, loaded at run time by cudarc.
#![allow(unsafe_code)]

/// Whether `libcuda` can be loaded. Call before anything else in cudarc:
/// its loader panics when the library is absent.
pub fn driver_present() -> bool {
    // SAFETY: `is_culib_present` only tries to dlopen the driver library and
    // reports whether that worked; it touches no CUDA state.
    unsafe { cudarc::driver::sys::is_culib_present() }
}
