//! GStreamer elements for cuframes (`libgstcuframes.so`):
//!
//! - `cuframessrc`: a live source of the decoded frames a publisher shares,
//!   as `video/x-raw, format=NV12|P010_10LE` buffers that wrap the leased
//!   host slot without a copy (CUDA and Vulkan slots: one copy to host memory
//!   per frame, through the `cuframes` facade);
//! - `cuframespacketsrc`: the encoded packet ring as `video/x-h264,
//!   stream-format=avc` (parameter sets in `codec_data`) or `video/x-h265,
//!   stream-format=byte-stream`, `alignment=au`, starting on a keyframe;
//! - `cuframessink`: publishes NV12 / P010_10LE system-memory frames from any
//!   pipeline under a key, so GStreamer pipelines become publishers.
//!
//! Load it with `GST_PLUGIN_PATH=<dir of libgstcuframes.so>`; Rust programs
//! may call [`plugin_register_static`] instead. `docs/gstreamer.md` has the
//! pipelines, the lease rules and the caveats.
#![deny(unsafe_code)]

use gst::glib;

mod common;
pub mod conv;
mod memory;
mod packetsrc;
mod sink;
mod src;
mod trust;

pub use packetsrc::CuframesPacketSrc;
pub use sink::CuframesSink;
pub use src::CuframesSrc;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    src::register(plugin)?;
    packetsrc::register(plugin)?;
    sink::register(plugin)?;
    Ok(())
}

/// The plugin descriptor (`gst_plugin_cuframes_get_desc`, what GStreamer
/// looks up in `libgstcuframes.so`) and `plugin_register_static`.
#[allow(missing_docs, unsafe_code)]
mod registration {
    use super::plugin_init;
    gst::plugin_define!(
        cuframes,
        env!("CARGO_PKG_DESCRIPTION"),
        plugin_init,
        concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
        // GStreamer's name for the MIT licence (the crate is MIT OR Apache-2.0).
        "MIT/X11",
        env!("CARGO_PKG_NAME"),
        env!("CARGO_PKG_NAME"),
        env!("CARGO_PKG_REPOSITORY"),
        env!("BUILD_REL_DATE")
    );
}

/// Registers the elements with GStreamer without loading the `.so` (for Rust
/// programs that link this crate). Call after `gst::init`.
pub fn plugin_register_static() -> Result<(), glib::BoolError> {
    registration::plugin_register_static()
}
