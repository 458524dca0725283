//! `cuframespacketsrc`: the encoded packet ring as H.264 / HEVC access units.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    /// The `cuframespacketsrc` element (a live `GstPushSrc`).
    pub struct CuframesPacketSrc(ObjectSubclass<imp::CuframesPacketSrc>)
        @extends gst_base::PushSrc, gst_base::BaseSrc, gst::Element, gst::Object;
}

/// Registers `cuframespacketsrc` with `plugin`.
pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "cuframespacketsrc",
        gst::Rank::NONE,
        CuframesPacketSrc::static_type(),
    )
}
