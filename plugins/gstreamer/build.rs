//! Plugin metadata (commit id, release date) for `gst::plugin_define!`, as
//! every gst-plugins-rs plugin does it.
fn main() {
    gst_plugin_version_helper::info()
}
