//! The one place the facade opts into trusting a publisher's raw handles
//! (legacy CUDA IPC, `docs/protocol.md` §3.6): every front-end's opt-in
//! (`--allow-legacy-ipc`, C `allow_legacy_ipc`, Python `allow_legacy_ipc=`)
//! ends here.
#![allow(unsafe_code)]

use crate::options::SubscriberOptions;

impl SubscriberOptions {
    /// Lets a CUDA subscriber import publishers that share legacy CUDA IPC
    /// handles (`CudaLegacyIpc` memory, `IpcEvent` sync).
    ///
    /// # Safety
    ///
    /// A legacy IPC handle cannot be validated before it is opened: the
    /// caller trusts every publisher this subscriber connects to (the
    /// publisher's uid is still checked, [`SubscribeOptions::publisher_uids`])
    /// to send only real IPC handles of whole slots of the announced size,
    /// as `cuframes_cuda::CudaBackend::allow_legacy_ipc` requires.
    ///
    /// [`SubscribeOptions::publisher_uids`]: cuframes_core::runtime::SubscribeOptions::publisher_uids
    pub unsafe fn allow_legacy_ipc(&mut self) {
        self.legacy_ipc = true;
    }
}

/// The CUDA subscriber backend for `opts`, with the legacy opt-in applied.
#[cfg(feature = "cuda")]
pub(crate) fn cuda_subscriber(
    opts: &SubscriberOptions,
) -> Result<cuframes_cuda::CudaBackend, cuframes_cuda::CudaError> {
    let b = cuframes_cuda::CudaBackend::subscriber_with(opts.cuda)?;
    Ok(if opts.legacy_ipc {
        // SAFETY: `legacy_ipc` is only set by the `unsafe`
        // `SubscriberOptions::allow_legacy_ipc`, whose caller took on this
        // function's obligation: every publisher connected to sends only
        // real IPC handles of whole slots.
        unsafe { b.allow_legacy_ipc() }
    } else {
        b
    })
}
