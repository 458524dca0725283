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
pub mod packets;
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

/// Runs `f` for a function returning a count or a code (≥ 0) or a
/// negative error: the error's code, with the message stored.
pub(crate) fn count(f: impl FnOnce() -> Result<c_int, Error>) -> c_int {
    let r = catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| Err(panic_error(p)));
    match r {
        Ok(v) => v,
        Err(e) => {
            set_last(&e);
            e.code as c_int
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

/// An option struct callers fill with its `*_init` / `*_init_sized`
/// function, then pass back to the library.
pub(crate) trait OptionStruct: SizePrefixed {
    /// Bytes of its first published version: the least `struct_size`
    /// accepted, and all that the plain `*_init` function writes.
    const FIRST_VERSION: usize;
    /// Its C name, for error messages.
    const NAME: &'static str;
    /// What `*_init` fills in.
    fn defaults() -> Self;
}

/// Initialises the caller's option struct of `size` bytes (`None`: its
/// first version's) with the defaults: its first `min(size, sizeof(T))`
/// bytes, `struct_size` set to that count (so a later read takes exactly
/// what was initialised). `size` below the first version is
/// `CUFRAMES_ERR_INVALID_ARG`. Nothing past `size` bytes is written: a
/// program built against an older header passes its own, smaller size.
///
/// # Safety
/// `out` is NULL (an error) or aligned and writable for `size` bytes.
pub(crate) unsafe fn init_sized<T: OptionStruct>(
    out: *mut T,
    size: Option<usize>,
) -> Result<(), Error> {
    let (size, what) = (size.unwrap_or(T::FIRST_VERSION), T::NAME);
    if out.is_null() {
        return Err(Error::arg(format!("{what} is NULL")));
    }
    if size < T::FIRST_VERSION {
        return Err(Error::arg(format!(
            "size {size} is below the first version of {what}'s struct ({} bytes)",
            T::FIRST_VERSION
        )));
    }
    let n = size.min(std::mem::size_of::<T>());
    let mut v = T::defaults();
    // SAFETY: `v` is a `T` whose first field is a `usize` (`SizePrefixed`).
    unsafe { (&mut v as *mut T as *mut usize).write(n) };
    // SAFETY: `out` is writable for `size >= n` bytes (contract), `v` has
    // `size_of::<T>() >= n` readable bytes, and they do not overlap (`v` is
    // a local).
    unsafe { std::ptr::copy_nonoverlapping(&v as *const T as *const u8, out as *mut u8, n) };
    Ok(())
}

/// Reads the caller's option struct, the argument `what` (`read_sized`
/// with its defaults and first version).
///
/// # Safety
/// As [`read_sized`].
pub(crate) unsafe fn read_options<T: OptionStruct>(p: *const T, what: &str) -> Result<T, Error> {
    // SAFETY: the caller's contract is `read_sized`'s.
    unsafe { read_sized(p, T::defaults(), T::FIRST_VERSION, what) }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{cuframes_error, CUFRAMES_ERR_INVALID_ARG};
    use std::ffi::CStr;

    /// A program built against the first header: its options struct ends
    /// at `allow_legacy_ipc`; bytes after it belong to something else.
    #[repr(C, align(8))]
    struct OldCaller {
        opts: [u8; crate::types::SUBSCRIBER_OPTIONS_V1],
        after: [u8; 16],
    }

    #[test]
    fn init_never_writes_past_the_callers_struct() {
        use crate::ffi::subscriber::{
            cuframes_subscriber_options_init, cuframes_subscriber_options_init_sized,
        };
        use crate::types::{cuframes_subscriber_options_t, SUBSCRIBER_OPTIONS_V1};
        let v1 = SUBSCRIBER_OPTIONS_V1;
        assert!(v1 < std::mem::size_of::<cuframes_subscriber_options_t>());
        let mut old = OldCaller {
            opts: [0xAB; SUBSCRIBER_OPTIONS_V1],
            after: [0xCD; 16],
        };
        let p = &mut old as *mut OldCaller as *mut cuframes_subscriber_options_t;
        // SAFETY: `p` is aligned and writable for the first version's bytes.
        assert_eq!(unsafe { cuframes_subscriber_options_init(p) }, 0);
        assert_eq!(old.after, [0xCD; 16], "the plain init wrote past version 1");
        assert_eq!(usize::from_ne_bytes(old.opts[..8].try_into().unwrap()), v1);
        // SAFETY: as above, with the caller's own size.
        assert_eq!(unsafe { cuframes_subscriber_options_init_sized(p, v1) }, 0);
        assert_eq!(old.after, [0xCD; 16], "the sized init wrote past `size`");
        // SAFETY: as above.
        let small = unsafe { cuframes_subscriber_options_init_sized(p, 8) };
        assert_eq!(small, CUFRAMES_ERR_INVALID_ARG as i32);
        assert!(last().contains("first version"), "{}", last());
        // A caller of this header's size gets every field, defaults set.
        let mut new = crate::subscriber::default_subscriber_options();
        new.wait_spin_us = 7;
        new.struct_size = 0;
        // SAFETY: a whole struct of this version.
        let rc = unsafe {
            cuframes_subscriber_options_init_sized(
                &mut new,
                std::mem::size_of::<cuframes_subscriber_options_t>(),
            )
        };
        assert_eq!(rc, 0);
        assert_eq!(
            new.struct_size,
            std::mem::size_of::<cuframes_subscriber_options_t>()
        );
        assert_eq!((new.wait_spin_us, new.wait_anticipate), (50, 1));
    }

    fn last() -> String {
        // SAFETY: `cuframes_last_error` returns a NUL-terminated string that
        // stays valid until the next failing call on this thread.
        unsafe { CStr::from_ptr(crate::ffi::common::cuframes_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_panic_becomes_internal_error_with_its_message() {
        let rc = call(|| panic!("planted"));
        assert_eq!(rc, cuframes_error::CUFRAMES_ERR_INTERNAL as c_int);
        assert!(last().contains("panic: planted"), "{}", last());
        assert_eq!(value(7u32, || panic!("again")), 7);
        assert!(last().contains("panic: again"));
    }

    #[test]
    fn errors_set_the_last_error_and_success_keeps_it() {
        let rc = call(|| Err(Error::arg("the thing is NULL")));
        assert_eq!(rc, CUFRAMES_ERR_INVALID_ARG as c_int);
        assert_eq!(last(), "the thing is NULL");
        assert_eq!(call(|| Ok(())), 0);
        assert_eq!(last(), "the thing is NULL");
        // Each thread has its own.
        let other = std::thread::spawn(last).join().unwrap();
        assert_eq!(other, "");
    }

    #[test]
    fn size_prefixed_structs_keep_defaults_past_the_callers_size() {
        use crate::types::cuframes_frame_meta_t;
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Old {
            struct_size: usize,
            pts_ns: i64,
        }
        let old = Old {
            struct_size: std::mem::size_of::<Old>(),
            pts_ns: 42,
        };
        let defaults = crate::publisher::default_frame_meta();
        // SAFETY: `Old` is a prefix of `cuframes_frame_meta_t` with its
        // first `struct_size` bytes readable, as the contract requires.
        let got = unsafe {
            read_sized(
                &old as *const Old as *const cuframes_frame_meta_t,
                defaults,
                std::mem::size_of::<Old>(),
                "meta",
            )
        }
        .unwrap();
        assert_eq!((got.pts_ns, got.flags, got.source_index), (42, 0, -1));
        assert_eq!(got.struct_size, std::mem::size_of::<Old>());
        let small = Old {
            struct_size: 4,
            pts_ns: 0,
        };
        // SAFETY: as above.
        let e = unsafe {
            read_sized(
                &small as *const Old as *const cuframes_frame_meta_t,
                defaults,
                std::mem::size_of::<Old>(),
                "meta",
            )
        };
        assert_eq!(e.unwrap_err().code, CUFRAMES_ERR_INVALID_ARG);
    }
}
