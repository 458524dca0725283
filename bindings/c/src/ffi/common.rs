//! Library-wide functions: version, error texts, the last error.

use super::value;
use crate::error::{cuframes_error, last_ptr};
use std::ffi::{c_char, c_int};

/// The library version, `"MAJOR.MINOR.PATCH"` (static storage).
///
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn cuframes_version() -> *const c_char {
    value(std::ptr::null(), || {
        Ok(concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char)
    })
}

/// A static, NUL-terminated English text for a result code (any value;
/// unknown codes give `"unknown error code"`). Never NULL.
///
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn cuframes_strerror(code: c_int) -> *const c_char {
    value(c"unknown error code".as_ptr(), || {
        Ok(cuframes_error::from_code(code)
            .map_or(c"unknown error code", cuframes_error::text)
            .as_ptr())
    })
}

/// The message of the last call on this thread that failed (the error
/// with its causes, e.g. the socket path tried), or `""` if none failed
/// yet. Successful calls do not clear it. The text stays valid until the
/// next failing call on this thread; copy it to keep it. Never NULL.
///
/// Thread-safety: any thread; each thread has its own.
#[no_mangle]
pub extern "C" fn cuframes_last_error() -> *const c_char {
    value(c"".as_ptr(), || Ok(last_ptr()))
}
