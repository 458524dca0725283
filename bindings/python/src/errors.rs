//! Rust errors as the Python exceptions of `cuframes/_errors.py`, each
//! carrying the Rust error's message.

use cuframes::core::runtime::dir::DirError;
use cuframes::core::runtime::{ConnectError, CreateError, PacketRecvError, RecvError};
use cuframes::cuda::CudaError;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

/// The exception classes, looked up once in `cuframes._errors`.
static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// An exception of class `name` (defined in `cuframes/_errors.py`) with `msg`.
pub fn error(py: Python<'_>, name: &str, msg: impl std::fmt::Display) -> PyErr {
    let msg = msg.to_string();
    let class = ERRORS
        .get_or_try_init(py, || py.import("cuframes._errors").map(|m| m.unbind()))
        .and_then(|m| m.bind(py).getattr(name))
        .and_then(|c| c.cast_into::<PyType>().map_err(PyErr::from));
    match class {
        Ok(c) => PyErr::from_type(c, (msg,)),
        // The package is incomplete (the module imported without it).
        Err(_) => PyRuntimeError::new_err(msg),
    }
}

fn dir_error(py: Python<'_>, e: DirError) -> PyErr {
    match e {
        DirError::Key { .. } => error(py, "BadKey", e),
        other => error(py, "Error", other),
    }
}

/// Connecting a subscriber failed.
pub fn connect_error(py: Python<'_>, e: ConnectError) -> PyErr {
    match e {
        ConnectError::Dir(d) => dir_error(py, d),
        ConnectError::NoPublisher { .. } => error(py, "NoPublisher", e),
        ConnectError::PublisherUid { .. }
        | ConnectError::PeerCred { .. }
        | ConnectError::Rejected { .. } => error(py, "Refused", e),
        ConnectError::Timeout(_) => error(py, "Timeout", e),
        ConnectError::MemoryKind { .. } => error(py, "WrongBackend", e),
        ConnectError::NoPacketRing => error(py, "NoPacketRing", e),
        ConnectError::NothingWanted => PyValueError::new_err(e.to_string()),
        // The backend that failed says which exception it is.
        ConnectError::Import(ref f) if f.api == "vulkan" => error(py, "VulkanError", e),
        ConnectError::Import(_) => error(py, "CudaError", e),
        ConnectError::Protocol(_)
        | ConnectError::Channel(_)
        | ConnectError::PeerChanged(_)
        | ConnectError::Layout(_)
        | ConnectError::PacketLayout(_) => error(py, "ProtocolError", e),
        other => error(py, "Error", other),
    }
}

/// Receiving a frame failed.
pub fn recv_error(py: Python<'_>, e: RecvError) -> PyErr {
    match e {
        RecvError::Timeout(_) => error(py, "Timeout", e),
        RecvError::Disconnected => error(py, "Disconnected", e),
        RecvError::TooManyLeases => error(py, "TooManyLeases", e),
        RecvError::Protocol(_) => error(py, "ProtocolError", e),
        other => error(py, "Error", other),
    }
}

/// Receiving a packet failed.
pub fn packet_error(py: Python<'_>, e: PacketRecvError) -> PyErr {
    match e {
        PacketRecvError::Timeout(_) => error(py, "Timeout", e),
        PacketRecvError::Disconnected => error(py, "Disconnected", e),
        PacketRecvError::Corrupt(_) | PacketRecvError::Codec(_) => error(py, "ProtocolError", e),
        PacketRecvError::Control(r) => recv_error(py, r),
        other => error(py, "Error", other),
    }
}

/// Starting a publisher failed.
pub fn create_error(py: Python<'_>, e: CreateError) -> PyErr {
    match e {
        CreateError::Dir(d) => dir_error(py, d),
        CreateError::AlreadyRunning(_) => error(py, "PublisherExists", e),
        CreateError::SlotCount(_) | CreateError::Stream(_) => PyValueError::new_err(e.to_string()),
        other => error(py, "Error", other),
    }
}

/// A CUDA driver failure.
pub fn cuda_error(py: Python<'_>, e: CudaError) -> PyErr {
    error(py, "CudaError", e)
}

/// A failure of the facade (`cuframes::Error`): the engine's errors as
/// above, the backend's as CudaError / VulkanError, a backend that cannot
/// import what the publisher shares as WrongBackend.
pub fn facade_error(py: Python<'_>, e: cuframes::Error) -> PyErr {
    use cuframes::Error as E;
    match e {
        E::Connect(e) => connect_error(py, e),
        E::Recv(e) => recv_error(py, e),
        E::Packet(e) => packet_error(py, e),
        E::Create(e) => create_error(py, e),
        E::Cuda(e) => cuda_error(py, e),
        E::Vulkan(e) => error(py, "VulkanError", e),
        E::NoImporter { .. } => error(py, "WrongBackend", e),
        E::BadBackendName(_) | E::FrameSize { .. } => PyValueError::new_err(e.to_string()),
        other => error(py, "Error", other),
    }
}
