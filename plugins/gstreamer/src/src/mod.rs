//! `cuframessrc`: decoded frames of a cuframes publisher as raw video.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    /// The `cuframessrc` element (a live `GstPushSrc`).
    pub struct CuframesSrc(ObjectSubclass<imp::CuframesSrc>)
        @extends gst_base::PushSrc, gst_base::BaseSrc, gst::Element, gst::Object;
}

/// Registers `cuframessrc` with `plugin`.
pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "cuframessrc",
        gst::Rank::NONE,
        CuframesSrc::static_type(),
    )
}
