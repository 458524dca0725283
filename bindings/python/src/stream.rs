//! CUDA streams named from Python: ints (`CUstream` values, where 1 and 2
//! are the driver's `CU_STREAM_LEGACY` and `CU_STREAM_PER_THREAD`) or
//! stream objects (torch's `cuda_stream`, CuPy's `ptr`, the
//! `__cuda_stream__` protocol).

use cudarc::driver::sys::CUstream;
use cuframes::cuda::RawStream;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

/// A `CUstream` value as the driver takes it (0: the default stream; 1:
/// `CU_STREAM_LEGACY`; 2: `CU_STREAM_PER_THREAD`; else a stream handle of
/// this process, which must outlive its use).
pub fn from_int(v: i64) -> PyResult<RawStream> {
    if v < 0 {
        return Err(PyValueError::new_err(format!("invalid CUDA stream {v}")));
    }
    Ok(RawStream::from_raw(v as usize as CUstream))
}

/// A stream given as an int or a stream object.
pub fn raw_stream(obj: &Bound<'_, PyAny>) -> PyResult<RawStream> {
    if let Ok(v) = obj.extract::<i64>() {
        return from_int(v);
    }
    if let Ok(p) = obj.call_method0("__cuda_stream__") {
        let (_, handle): (i64, i64) = p.extract()?;
        return from_int(handle);
    }
    for attr in ["cuda_stream", "ptr"] {
        if let Ok(v) = obj.getattr(attr) {
            return from_int(v.extract()?);
        }
    }
    Err(PyTypeError::new_err(
        "stream must be an int (CUstream) or a stream object (torch.cuda.Stream, cupy.cuda.Stream, __cuda_stream__)",
    ))
}
