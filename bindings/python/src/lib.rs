//! Python bindings of cuframes (PyO3): the `cuframes._cuframes` extension
//! module of the `cuframes` package (bindings/python; docs/python.md).
//!
//! Unsafe code lives in `ffi` only (NumPy views over shared memory and
//! DLPack capsules), plus the opt-in to legacy CUDA IPC handles.
#![deny(unsafe_code)]

mod errors;
mod ffi;
mod frame;
mod publisher;
mod seconds;
mod stream;
mod subscriber;

use pyo3::prelude::*;

#[pymodule]
fn _cuframes(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("DLPACK_VERSION", ffi::DLPACK_VERSION)?;
    m.add_class::<subscriber::Subscriber>()?;
    m.add_class::<subscriber::Packet>()?;
    m.add_class::<subscriber::PacketIter>()?;
    m.add_class::<subscriber::CodecParams>()?;
    m.add_class::<frame::Frame>()?;
    m.add_class::<frame::Plane>()?;
    m.add_class::<frame::Lease>()?;
    m.add_class::<publisher::Publisher>()?;
    Ok(())
}
