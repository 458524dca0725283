//! `cuframessink`: publishes raw NV12 / P010_10LE frames under a key.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    /// The `cuframessink` element (a `GstBaseSink`).
    pub struct CuframesSink(ObjectSubclass<imp::CuframesSink>)
        @extends gst_base::BaseSink, gst::Element, gst::Object;
}

/// Registers `cuframessink` with `plugin`.
pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "cuframessink",
        gst::Rank::NONE,
        CuframesSink::static_type(),
    )
}
