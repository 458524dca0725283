use pyo3::prelude::*;
/// x
#[pyclass(module = "cuframes._cuframes", name = "Publisher")]
pub struct Publisher {}
