//! The `extern "C"` functions, and the only unsafe code of the crate: reading
//! C strings, arrays and option structs, writing out-parameters.
//!
//! Rules every function here follows:
//! - the body runs inside [`call`] / [`value`], which catch any panic
//!   (`CUFRAMES_ERR_INTERNAL`, never an unwind into C) and store the error
//!   message for `cuframes_last_error()`;
//! - handles are registry ids ([`crate::registry`]), never dereferenced:
//!   NULL, stale and foreign handles are `CUFRAMES_ERR_INVALID_HANDLE`;
//! - every pointer argument is checked for NULL before use; the C contract
//!   (documented per function in the header) covers the rest: a non-NULL
//!   pointer points to what its type says, for the call's duration.
#![allow(unsafe_code)]

pub mod common;
pub mod publisher;
pub mod subscriber;

use crate::error::{set_last, Error, CUFRAMES_ERR_INTERNAL, CUFRAMES_OK};
use crate::registry::{self, Kind};
use std::ffi::{c_char, c_int, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Arc;

fn panic_error(p: Box<dyn std::any::Any + Send>) -> Error {
    let what = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    Error::new(
        CUFRAMES_ERR_INTERNAL,
        format!("internal error (a bug in libcuframes, please report it): panic: {what}"),
    )
}

/// Runs `f` for a function returning a status code: `CUFRAMES_OK` or the
/// error's code, with the message stored; a panic is `CUFRAMES_ERR_INTERNAL`.
pub(crate) fn call(f: impl FnOnce() -> Result<(), Error>) -> c_int {
    let r = catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| Err(panic_error(p)));
    match r {
        Ok(()) => CUFRAMES_OK as c_int,
        Err(e) => {
            set_last(&e);
            e.code as c_int
        }
    }
}

/// Runs `f` for a function returning a value: `fallback` on error (the
/// message stored for `cuframes_last_error()`) or panic.
pub(crate) fn value<T>(fallback: T, f: impl FnOnce() -> Result<T, Error>) -> T {
    let r = catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| Err(panic_error(p)));
    match r {
        Ok(v) => v,
        Err(e) => {
            set_last(&e);
            fallback
        }
    }
}

/// The registry id a handle pointer carries.
pub(crate) fn id<T>(p: *const T) -> u64 {
    p as usize as u64
}

/// The handle pointer for a registry id (never dereferenced by anyone).
pub(crate) fn handle<T>(id: u64) -> *mut T {
    id as usize as *mut T
}

/// The object behind handle `p`.
pub(crate) fn get<T: Kind, H>(p: *const H) -> Result<Arc<T>, Error> {
    registry::get::<T>(id(p))
}

/// Writes `v` to the out-parameter `out`.
///
/// # Safety
/// `out` is NULL (an error) or valid for a write of `T`.
pub(crate) unsafe fn write_out<T>(out: *mut T, v: T, what: &str) -> Result<(), Error> {
    if out.is_null() {
        return Err(Error::arg(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL, and the caller's contract makes it valid and
    // aligned for one `T` (the C side passed the address of a `T`).
    unsafe { out.write(v) };
    Ok(())
}

/// The UTF-8 string at `p`, or `None` for NULL.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string.
pub(crate) unsafe fn string(p: *const c_char, what: &str) -> Result<Option<String>, Error> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL and, by the caller's contract, NUL-terminated and
    // alive for this call; the bytes are copied before returning.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map(|s| Some(s.to_owned()))
        .map_err(|_| Error::arg(format!("{what} is not UTF-8")))
}

/// The path at `p` (any bytes), or `None` for NULL.
///
/// # Safety
/// As [`string`].
pub(crate) unsafe fn path(p: *const c_char) -> Option<PathBuf> {
    if p.is_null() {
        return None;
    }
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: as in `string`.
    let s = unsafe { CStr::from_ptr(p) };
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(s.to_bytes())))
}

/// `len` values at `p` (copied); NULL is only allowed with `len` 0.
///
/// # Safety
/// `p` is valid for reads of `len` `T`s (or `len` is 0).
pub(crate) unsafe fn slice<'a, T>(p: *const T, len: usize, what: &str) -> Result<&'a [T], Error> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Error::arg(format!("{what} is NULL with a length of {len}")));
    }
    // SAFETY: non-NULL, aligned and valid for `len` elements by the
    // caller's contract; the slice is used only during this call.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// A struct that starts with `size_t struct_size`.
///
/// # Safety
/// `#[repr(C)]`, plain data (any bit pattern of a prefix read from C is a
/// valid value of the fields it covers, given `T`'s field types), and its
/// first field is a `usize` `struct_size`.
pub(crate) unsafe trait SizePrefixed: Copy {}

/// Reads the caller's version of a size-prefixed struct: the first
/// `min(struct_size, sizeof(T))` bytes over `defaults` (so fields the
/// caller's version lacks keep their defaults). `struct_size` below
/// `min_size` (the first published version) is `CUFRAMES_ERR_INVALID_ARG`.
///
/// # Safety
/// `p` is NULL (an error) or points to a struct of the caller's version
/// whose first `struct_size` bytes are readable.
pub(crate) unsafe fn read_sized<T: SizePrefixed>(
    p: *const T,
    mut defaults: T,
    min_size: usize,
    what: &str,
) -> Result<T, Error> {
    if p.is_null() {
        return Err(Error::arg(format!("{what} is NULL")));
    }
    // SAFETY: `T`'s first field is a `usize` (`SizePrefixed`), at offset 0 of a
    // readable, aligned struct.
    let size = unsafe { (p as *const usize).read() };
    if size < min_size {
        return Err(Error::arg(format!(
            "{what}->struct_size is {size}, expected sizeof (at least {min_size}): initialise it with the *_init function"
        )));
    }
    let n = size.min(std::mem::size_of::<T>());
    // SAFETY: the caller's struct has `size >= n` readable bytes; `defaults`
    // is a `T` of `size_of::<T>() >= n` bytes; they do not overlap; every
    // prefix of `T`'s bytes from a C struct of the same declaration is valid
    // (`SizePrefixed`).
    unsafe { std::ptr::copy_nonoverlapping(p as *const u8, &mut defaults as *mut T as *mut u8, n) };
    Ok(defaults)
}

/// Writes `v` into the caller's version of a size-prefixed struct: the
/// first `min(struct_size, sizeof(T))` bytes, keeping the caller's
/// `struct_size`.
///
/// # Safety
/// `out` is NULL (an error) or points to a writable struct whose
/// `struct_size` field the caller set to its size.
pub(crate) unsafe fn write_sized<T: SizePrefixed>(
    out: *mut T,
    v: &T,
    min_size: usize,
    what: &str,
) -> Result<(), Error> {
    if out.is_null() {
        return Err(Error::arg(format!("{what} is NULL")));
    }
    // SAFETY: as in `read_sized`: `struct_size` is the first field.
    let size = unsafe { (out as *const usize).read() };
    if size < min_size {
        return Err(Error::arg(format!(
            "{what}->struct_size is {size}, expected sizeof({what}) (at least {min_size})"
        )));
    }
    let n = size.min(std::mem::size_of::<T>());
    // SAFETY: `out` has `size >= n` writable bytes, `v` has `n` readable
    // ones, they do not overlap (`v` is a Rust value); the first field is
    // then restored to the caller's `struct_size`.
    unsafe {
        std::ptr::copy_nonoverlapping(v as *const T as *const u8, out as *mut u8, n);
        (out as *mut usize).write(size);
    }
    Ok(())
}
