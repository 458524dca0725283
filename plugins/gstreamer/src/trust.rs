//! The plugin's one unsafe call: letting a subscriber import legacy CUDA
//! IPC handles, which the operator opts into with the sources'
//! `allow-legacy-ipc` property.
#![allow(unsafe_code)]

use cuframes::SubscriberOptions;

/// Lets `opts` import legacy CUDA IPC handles
/// ([`SubscriberOptions::allow_legacy_ipc`]).
pub fn allow_legacy_ipc(opts: &mut SubscriberOptions) {
    // SAFETY: `allow_legacy_ipc`'s contract is that the caller trusts the
    // publisher's 64-byte IPC handles (the driver cannot validate what they
    // name). This function is only called when the pipeline's author set
    // `allow-legacy-ipc=true`, whose documentation (gst-inspect blurb and
    // docs/gstreamer.md) states exactly that trust; the publisher's uid is
    // still checked by the subscriber (SO_PEERCRED) before any handle is read.
    unsafe { opts.allow_legacy_ipc() }
}
