//! Criterion benches of cuframes live in `benches/`; this library is empty.
