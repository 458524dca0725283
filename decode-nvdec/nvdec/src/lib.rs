//! cuframes-nvdec: hardware decode of H.264 and HEVC into device memory
//! through NVIDIA's parser and decoder (`libnvcuvid.so.1`, loaded at run
//! time; see `docs/gpu.md`).
//!
//! [`NvdecDecoder`] takes Annex B access units (`cuframes_media::AnnexB`
//! converts MP4 samples) and hands out decoded surfaces in display order as
//! [`MappedFrame`]s (`cuvidMapVideoFrame64`): NV12 for 8-bit streams, P010
//! for 10-bit ones, each plane a device pointer and pitch, to be copied
//! device to device into a ring slot before the frame is dropped (unmapped).
//!
//! `unsafe` code lives in the nvcuvid FFI (`ffi.rs`) and in the decoder's
//! callbacks (`decoder.rs`).
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod decoder;
mod ffi;

pub use decoder::{nvdec_available, MappedFrame, NvdecDecoder, NvdecError, SurfaceInfo};
