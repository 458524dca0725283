//! Slot memory: the publisher's writable slots and the subscriber's imports
//! (`docs/protocol.md` §3.6: CUDA memory kinds).

use crate::driver::{
    self, DeviceAlloc, Event, ExternalMem, IpcMem, Mem, RawStream, VmmHandle, VmmMapping,
};
use crate::{CudaDevice, CudaError};
use cuframes_core::layout::{FrameLayout, PlaneLayout, StreamDesc};

/// How a subscriber reaches its publisher's frames, resolved at connect
/// from [`crate::SubscriberConfig`] and the GPUs present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FrameAccess {
    /// Subscriber and publisher on one GPU: frames are read in place.
    #[default]
    Local,
    /// The slots live on GPU `source` (ordinal here) and are mapped for the
    /// subscriber's GPU over peer access: device pointers are valid on the
    /// subscriber's GPU; every read crosses the link.
    PeerMapped {
        /// Ordinal (in this process) of the publisher's GPU.
        source: u32,
    },
    /// The slots are mapped for the publisher's GPU `source` only (no peer
    /// access): device pointers are valid on that GPU, and frames reach the
    /// subscriber's GPU only through `copy_into`.
    SourceMapped {
        /// Ordinal (in this process) of the publisher's GPU.
        source: u32,
    },
}

/// Plane `i` of a frame laid out by `desc` in a slot of `size` bytes
/// (`StreamDesc::validate`).
pub(crate) fn plane_layout(
    desc: &StreamDesc,
    i: usize,
    size: u64,
) -> Result<PlaneLayout, CudaError> {
    desc.validate(size)?
        .plane(i)
        .ok_or(CudaError::Layout("no such plane in this pixel format"))
}

/// Copies plane `p` of the frame at device address `base` to `dst`, packed;
/// returns the bytes written.
fn plane_to_host(
    device: &CudaDevice,
    base: u64,
    p: &PlaneLayout,
    dst: &mut [u8],
) -> Result<usize, CudaError> {
    device.make_current()?;
    let (row, rows) = (p.row_bytes() as usize, p.rows() as usize);
    driver::copy_2d_to_host(base + p.offset(), p.pitch() as usize, dst, row, rows)?;
    Ok(p.packed_size() as usize)
}

/// Copies the frame `layout` describes at device address `base` to `out`
/// as FFmpeg's packed rawvideo layout (planes in order, rows without pitch
/// padding): `out` ends up [`FrameLayout::packed_size`] bytes long.
pub(crate) fn frame_to_host(
    device: &CudaDevice,
    base: u64,
    layout: &FrameLayout,
    out: &mut Vec<u8>,
) -> Result<(), CudaError> {
    out.clear();
    out.resize(layout.packed_size() as usize, 0);
    let mut rest = &mut out[..];
    for p in layout.planes() {
        let n = plane_to_host(device, base, p, rest)?;
        rest = rest.get_mut(n..).unwrap_or_default();
    }
    Ok(())
}

#[derive(Debug)]
pub(crate) enum Owned {
    Vmm { map: VmmMapping, handle: VmmHandle },
    Legacy(DeviceAlloc),
}

/// A publisher's slot in VRAM: write a frame into it, then [`CudaSlot::fence`].
#[derive(Debug)]
pub struct CudaSlot {
    pub(crate) mem: Owned,
    pub(crate) event: Option<Event>,
    pub(crate) size: u64,
    pub(crate) device: CudaDevice,
}

impl CudaSlot {
    /// Device address of the slot's first byte.
    pub fn device_ptr(&self) -> u64 {
        match &self.mem {
            Owned::Vmm { map, .. } => map.ptr(),
            Owned::Legacy(a) => a.ptr(),
        }
    }

    /// Bytes the slot holds (at least the stream's frame size).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Queues a device-to-device copy of plane `plane` from `src` (pitch
    /// `src_pitch` bytes) into this slot at the plane's offset and pitch of
    /// `desc`, on `stream` (`cuMemcpy2DAsync`).
    pub fn copy_plane_from_device(
        &mut self,
        desc: &StreamDesc,
        plane: usize,
        src: u64,
        src_pitch: usize,
        stream: RawStream,
    ) -> Result<(), CudaError> {
        let p = plane_layout(desc, plane, self.size)?;
        self.device.make_current()?;
        driver::copy_2d_to_device(
            Mem::Device(src),
            src_pitch,
            self.device_ptr() + p.offset(),
            p.pitch() as usize,
            p.row_bytes() as usize,
            p.rows() as usize,
            stream,
        )?;
        Ok(())
    }

    /// Copies plane `plane` from host bytes (first row at `src[0]`, pitch
    /// `src_pitch`) into this slot (`cuMemcpy2D`, synchronous).
    pub fn copy_plane_from_host(
        &mut self,
        desc: &StreamDesc,
        plane: usize,
        src: &[u8],
        src_pitch: usize,
    ) -> Result<(), CudaError> {
        let p = plane_layout(desc, plane, self.size)?;
        self.device.make_current()?;
        driver::copy_2d_to_device(
            Mem::Host(src),
            src_pitch,
            self.device_ptr() + p.offset(),
            p.pitch() as usize,
            p.row_bytes() as usize,
            p.rows() as usize,
            RawStream::DEFAULT,
        )?;
        Ok(())
    }

    /// Copies plane `plane` of the frame in this slot to `dst`, packed
    /// (pitch = row bytes), synchronously; returns the bytes written.
    pub fn copy_plane_to_host(
        &self,
        desc: &StreamDesc,
        plane: usize,
        dst: &mut [u8],
    ) -> Result<usize, CudaError> {
        let p = plane_layout(desc, plane, self.size)?;
        plane_to_host(&self.device, self.device_ptr(), &p, dst)
    }

    /// Makes the frame written on `stream` visible to subscribers before it is
    /// committed: `HostFence` waits for the stream (`cuStreamSynchronize`);
    /// `IpcEvent` records the slot's event on it (`cuEventRecord`) and returns
    /// at once: subscribers wait on the event in their own streams.
    pub fn fence(&self, stream: RawStream) -> Result<(), CudaError> {
        self.device.make_current()?;
        match &self.event {
            Some(e) => e.record(stream)?,
            None => driver::stream_synchronize(stream)?,
        }
        Ok(())
    }
}

impl Drop for CudaSlot {
    fn drop(&mut self) {
        // The memory and event handles below need the context current.
        let _ = self.device.make_current();
    }
}

#[derive(Debug)]
pub(crate) enum Imported {
    Vmm {
        map: VmmMapping,
        _handle: VmmHandle,
    },
    Legacy(IpcMem),
    /// A Vulkan publisher's opaque fd (`cuImportExternalMemory`).
    External(ExternalMem),
}

/// A subscriber's import of one slot: device memory of the publisher's GPU,
/// mapped into this process (read-only where the driver allows) for the GPU
/// [`CudaImported::device`] names ([`FrameAccess`]).
#[derive(Debug)]
pub struct CudaImported {
    pub(crate) mem: Imported,
    pub(crate) event: Option<Event>,
    pub(crate) size: u64,
    pub(crate) read_only: bool,
    /// The GPU whose kernels may use `device_ptr` (the mapping's access
    /// location).
    pub(crate) device: CudaDevice,
    /// The subscriber's GPU: its context opened the events and waits
    /// before a synchronous release.
    pub(crate) consumer: CudaDevice,
    pub(crate) access: FrameAccess,
}

impl CudaImported {
    /// Device address of the slot's first byte in this process.
    pub fn device_ptr(&self) -> u64 {
        match &self.mem {
            Imported::Vmm { map, .. } => map.ptr(),
            Imported::Legacy(m) => m.ptr(),
            Imported::External(m) => m.ptr(),
        }
    }

    /// Bytes mapped.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether the mapping is read-only (`CU_MEM_ACCESS_FLAGS_PROT_READ`).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Whether frames in this slot come with an interprocess event.
    pub fn has_event(&self) -> bool {
        self.event.is_some()
    }

    /// Orders `stream` after the publisher's writes of the current frame
    /// (`IpcEvent`: `cuStreamWaitEvent`; `HostFence`: already complete).
    pub fn wait_in(&self, stream: RawStream) -> Result<(), CudaError> {
        if let Some(e) = &self.event {
            self.consumer.make_current()?;
            e.wait_in(stream)?;
        }
        Ok(())
    }

    /// Blocks until the publisher's writes of the current frame completed.
    pub fn wait_host(&self) -> Result<(), CudaError> {
        if let Some(e) = &self.event {
            self.consumer.make_current()?;
            e.synchronize()?;
        }
        Ok(())
    }

    /// The device whose kernels may use [`CudaImported::device_ptr`]: the
    /// subscriber's GPU, or under [`FrameAccess::SourceMapped`] the
    /// publisher's. (The memory itself lives on the publisher's GPU.)
    pub fn device(&self) -> &CudaDevice {
        &self.device
    }

    /// The subscriber's GPU (the backend's device).
    pub fn consumer(&self) -> &CudaDevice {
        &self.consumer
    }

    /// How this slot is reached from the subscriber's GPU.
    pub fn access(&self) -> FrameAccess {
        self.access
    }

    /// Queues a copy of the first `len` bytes of the slot to device memory
    /// `dst` of `dst_device` on `stream` (a stream of `dst_device`),
    /// ordered after the publisher's writes ([`CudaImported::wait_in`]):
    /// `cuMemcpyDtoDAsync` when `dst_device` can use this mapping,
    /// `cuMemcpyPeerAsync` between the two contexts otherwise.
    ///
    /// The caller guarantees that `dst..dst+len` is device memory of
    /// `dst_device` it may overwrite until the copy completes.
    pub(crate) fn copy_prefix_to(
        &self,
        len: u64,
        dst: u64,
        dst_device: &CudaDevice,
        stream: RawStream,
    ) -> Result<(), CudaError> {
        if len > self.size {
            return Err(CudaError::Layout("the frame is larger than its slot"));
        }
        self.wait_in(stream)?;
        dst_device.make_current()?;
        if dst_device.ordinal() == self.device.ordinal() {
            driver::copy_dtod_async(dst, self.device_ptr(), len, stream)?;
        } else {
            driver::copy_peer_async(
                dst,
                dst_device.context(),
                self.device_ptr(),
                self.device.context(),
                len,
                stream,
            )?;
        }
        Ok(())
    }

    /// Queues a device-to-device copy of plane `plane` of a frame laid out
    /// by `desc` to `dst` (pitch `dst_pitch` bytes) on `stream`
    /// (`cuMemcpy2DAsync`), ordered after the publisher's writes
    /// ([`CudaImported::wait_in`]). Returns the plane's `(row bytes, rows)`.
    /// The lease must last until the copy is done: release the frame with
    /// `release_after(stream)` or after synchronising `stream`.
    ///
    /// # Safety
    /// `dst` is a device address, valid in the primary context of
    /// [`CudaImported::device`],
    /// of at least `dst_pitch × (rows − 1) + row bytes` bytes that the
    /// caller may overwrite, and `dst_pitch` ≥ the plane's row bytes.
    #[allow(unsafe_code)]
    pub unsafe fn copy_plane_to_device(
        &self,
        desc: &StreamDesc,
        plane: usize,
        dst: u64,
        dst_pitch: usize,
        stream: RawStream,
    ) -> Result<(usize, usize), CudaError> {
        let p = plane_layout(desc, plane, self.size)?;
        let (row, rows) = (p.row_bytes() as usize, p.rows() as usize);
        if dst_pitch < row {
            return Err(CudaError::Layout(
                "destination pitch below the plane's bytes per row",
            ));
        }
        self.wait_in(stream)?;
        self.device.make_current()?;
        driver::copy_2d_to_device(
            Mem::Device(self.device_ptr() + p.offset()),
            p.pitch() as usize,
            dst,
            dst_pitch,
            row,
            rows,
            stream,
        )?;
        Ok((row, rows))
    }

    /// Copies plane `plane` of a frame laid out by `desc` to `dst`, packed
    /// (pitch = row bytes), after [`CudaImported::wait_host`]. Returns the
    /// bytes written.
    pub fn copy_plane_to_host(
        &self,
        desc: &StreamDesc,
        plane: usize,
        dst: &mut [u8],
    ) -> Result<usize, CudaError> {
        let p = plane_layout(desc, plane, self.size)?;
        plane_to_host(&self.device, self.device_ptr(), &p, dst)
    }

    /// Copies the frame laid out by `desc` to `out` as FFmpeg's packed
    /// rawvideo layout (planes in order, rows without pitch padding), after
    /// [`CudaImported::wait_host`].
    pub(crate) fn frame_to_host(
        &self,
        desc: &StreamDesc,
        out: &mut Vec<u8>,
    ) -> Result<(), CudaError> {
        self.wait_host()?;
        let layout = desc.validate(self.size)?;
        frame_to_host(&self.device, self.device_ptr(), &layout, out)
    }
}

impl Drop for CudaImported {
    fn drop(&mut self) {
        // The mapping's context first (unmapping), the subscriber's for the
        // event: both are retained while `self` lives.
        let _ = self.device.make_current();
    }
}
