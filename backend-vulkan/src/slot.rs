//! Slot memory: the publisher's exportable buffers and the subscriber's
//! imports, each a linear `VkBuffer` holding the frame's planes at the
//! stream's offsets and pitches (`docs/protocol.md` §3.3).

use crate::vk::{Semaphore, SharedBuffer};
use crate::{VulkanDevice, VulkanError};
use ash::vk;
use cuframes_core::layout::{CopyError, PlaneLayout, StreamDesc};

/// One plane of a frame in a shared buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferPlane {
    /// Byte offset of the plane's first row in the slot's `VkBuffer`.
    pub offset: u64,
    /// Bytes between rows.
    pub pitch: u64,
    /// Bytes of pixels per row.
    pub row_bytes: u64,
    /// Rows.
    pub rows: u64,
}

impl From<PlaneLayout> for BufferPlane {
    fn from(p: PlaneLayout) -> Self {
        BufferPlane {
            offset: p.offset(),
            pitch: p.pitch(),
            row_bytes: p.row_bytes(),
            rows: p.rows(),
        }
    }
}

/// Plane `i` of a frame laid out by `desc` in a buffer of `size` bytes
/// (`StreamDesc::validate`).
pub(crate) fn buffer_plane(
    desc: &StreamDesc,
    i: usize,
    size: u64,
) -> Result<BufferPlane, VulkanError> {
    let p = desc
        .validate(size)?
        .plane(i)
        .ok_or(VulkanError::Layout("no such plane in this pixel format"))?;
    Ok(p.into())
}

/// A host buffer too short for a copy is [`VulkanError::HostBuffer`]; a
/// slot (staging) buffer too short for its frame cannot be after
/// validation, and is a [`VulkanError::Layout`].
fn copy_error(e: CopyError, host_is_source: bool) -> VulkanError {
    match e {
        CopyError::SourceTooShort { len, need } if host_is_source => {
            VulkanError::HostBuffer { len, need }
        }
        CopyError::DestinationTooShort { len, need } if !host_is_source => {
            VulkanError::HostBuffer { len, need }
        }
        CopyError::SourcePitch { .. } => {
            VulkanError::Layout("host plane pitch below the plane's row bytes")
        }
        CopyError::NoPlane(_) => VulkanError::Layout("no such plane in this pixel format"),
        _ => VulkanError::Layout("plane does not fit the frame size"),
    }
}

/// A publisher's slot: a `VkBuffer` over a dedicated, exportable
/// device-local allocation.
#[derive(Debug)]
pub struct VulkanSlot {
    pub(crate) buf: SharedBuffer,
    /// `VulkanTimeline`: the slot's exported timeline semaphore.
    pub(crate) sem: Option<Semaphore>,
    /// The `seq` the claimed frame will be committed as (`Exporter::claimed`).
    pub(crate) next_value: u64,
    /// The highest value an upload into this slot signals.
    pub(crate) signaled: u64,
}

impl VulkanSlot {
    /// The slot's buffer (usage: transfer source and destination, storage).
    pub fn buffer(&self) -> vk::Buffer {
        self.buf.raw()
    }

    /// The slot's memory.
    pub fn memory(&self) -> vk::DeviceMemory {
        self.buf.raw_memory()
    }

    /// Bytes of the buffer and its allocation.
    pub fn size(&self) -> u64 {
        self.buf.size()
    }

    /// Uploads a frame from host memory: `planes[i]` is plane `i`'s first
    /// row and its pitch in bytes; each is copied to the plane's offset and
    /// pitch of `desc` through a staging buffer. Under `HostFence` the copy
    /// is waited for before this returns (the frame is complete in device
    /// memory when it is committed); under `VulkanTimeline` it returns once
    /// the copy is submitted, which signals the slot's semaphore to the
    /// frame's `seq` when done (a value already signalled, after an
    /// abandoned frame, makes it wait instead).
    ///
    /// Errors: a plane that does not fit the slot or is shorter than its
    /// rows ([`VulkanError::Layout`], [`VulkanError::HostBuffer`]), Vulkan
    /// call failures.
    pub fn write_from_host(
        &mut self,
        desc: &StreamDesc,
        planes: &[(&[u8], usize)],
    ) -> Result<(), VulkanError> {
        let layout = desc.validate(self.buf.size())?;
        let len = layout.frame_size();
        let gpu = self.buf.gpu().clone();
        let signal = match &self.sem {
            Some(sem) if self.next_value > self.signaled => Some((sem, self.next_value)),
            _ => None,
        };
        let value = signal.map(|(_, v)| v);
        let fill = |dst: &mut [u8]| {
            for (i, &(src, src_pitch)) in planes.iter().enumerate() {
                layout
                    .copy_plane_from(i, src, src_pitch, dst)
                    .map_err(|e| copy_error(e, true))?;
            }
            Ok(())
        };
        gpu.upload(&self.buf, len, fill, signal)?;
        if let Some(v) = value {
            self.signaled = v;
        }
        Ok(())
    }

    /// Copies the frame in this slot to `out` as FFmpeg's packed rawvideo
    /// layout (planes in order, rows without pitch padding).
    pub fn copy_to_host(&self, desc: &StreamDesc, out: &mut Vec<u8>) -> Result<(), VulkanError> {
        self.buf.gpu().wait_idle()?;
        copy_to_host(&self.buf, desc, out)
    }
}

/// How long [`VulkanImported::copy_to_host`] waits for a publisher's
/// timeline semaphore.
const SYNC_WAIT_NS: u64 = 10_000_000_000;

/// A subscriber's import of one slot: a `VkBuffer` over the publisher's
/// memory, on the device whose UUID the publisher announced.
#[derive(Debug)]
pub struct VulkanImported {
    pub(crate) buf: SharedBuffer,
    /// `VulkanTimeline`: the slot's timeline semaphore, imported.
    pub(crate) sem: Option<Semaphore>,
}

impl VulkanImported {
    /// The slot's buffer (usage: transfer source and destination, storage).
    /// Read it only; the publisher owns the contents.
    pub fn buffer(&self) -> vk::Buffer {
        self.buf.raw()
    }

    /// Bytes of the buffer (the protocol's allocation size for the slot).
    pub fn size(&self) -> u64 {
        self.buf.size()
    }

    /// Whether the memory was imported as a dedicated allocation (Vulkan
    /// publishers) or a plain one (CUDA VMM publishers).
    pub fn is_dedicated(&self) -> bool {
        self.buf.is_dedicated()
    }

    /// The device the buffer lives on.
    pub fn device(&self) -> VulkanDevice {
        VulkanDevice(self.buf.gpu().clone())
    }

    /// `VulkanTimeline`: the slot's timeline semaphore, which reaches a
    /// frame's `seq` when the publisher's writes of that frame are done.
    /// Waiting on it in a queue submission trusts the publisher to signal
    /// it (a publisher that never does stalls that queue);
    /// [`VulkanImported::wait_host`] is the bounded alternative.
    pub fn semaphore(&self) -> Option<vk::Semaphore> {
        self.sem.as_ref().map(Semaphore::raw)
    }

    /// Blocks until the publisher's writes of frame `seq` are done
    /// (`vkWaitSemaphores`; at once under `HostFence`), at most `timeout_ns`.
    ///
    /// Errors: [`VulkanError::SyncTimeout`].
    pub fn wait_host(&self, seq: u64, timeout_ns: u64) -> Result<(), VulkanError> {
        match &self.sem {
            Some(s) if !s.wait(seq, timeout_ns)? => Err(VulkanError::SyncTimeout {
                value: seq,
                reached: s.value().unwrap_or(0),
            }),
            _ => Ok(()),
        }
    }

    /// Copies frame `seq` laid out by `desc` to `out` as FFmpeg's packed
    /// rawvideo layout (planes in order, rows without pitch padding), through
    /// a staging buffer (`vkCmdCopyBuffer`, waited for), after
    /// [`VulkanImported::wait_host`] (10 s at most).
    pub fn copy_to_host(
        &self,
        desc: &StreamDesc,
        seq: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), VulkanError> {
        self.wait_host(seq, SYNC_WAIT_NS)?;
        copy_to_host(&self.buf, desc, out)
    }
}

fn copy_to_host(
    buf: &SharedBuffer,
    desc: &StreamDesc,
    out: &mut Vec<u8>,
) -> Result<(), VulkanError> {
    let layout = desc.validate(buf.size())?;
    buf.gpu()
        .download(buf, layout.frame_size(), |bytes| {
            layout.pack_into(bytes, out)
        })?
        .map_err(|e| copy_error(e, false))?;
    Ok(())
}
