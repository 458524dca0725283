//! Seconds from Python (float) as a `Duration`, checked.

use pyo3::exceptions::PyValueError;
use pyo3::PyResult;
use std::time::Duration;

/// The longest duration accepted, seconds (~31.7 years): longer ones are a
/// mistake (pass `None` where waiting forever is meant), and deadlines
/// `now + d` stay representable.
pub const MAX_SECONDS: f64 = 1e9;

/// `s` seconds; `ValueError` naming `what` for a negative, NaN, infinite or
/// larger than [`MAX_SECONDS`] value.
pub fn seconds(s: f64, what: &str) -> PyResult<Duration> {
    if (0.0..=MAX_SECONDS).contains(&s) {
        Ok(Duration::from_secs_f64(s))
    } else {
        Err(PyValueError::new_err(format!(
            "{what} must be from 0 to {MAX_SECONDS:e} seconds, not {s}"
        )))
    }
}

/// [`seconds`] of an optional value.
pub fn opt_seconds(s: Option<f64>, what: &str) -> PyResult<Option<Duration>> {
    s.map(|s| seconds(s, what)).transpose()
}
