//! Reading a leased frame into FFmpeg's packed layout in host memory (rows
//! without pitch padding), per backend: what is hashed and written.

use super::args::{Args, CrossGpuArg};
use anyhow::{bail, Context, Result};
use cuframes_core::runtime::Frame;
use cuframes_cuda::{CudaBackend, CudaFrameCopy, CudaFrameExt, CudaStream, FrameAccess};
use cuframes_vulkan::{VulkanBackend, VulkanFrameExt};

/// A host frame's rows without pitch padding (FFmpeg's packed layout).
pub(crate) fn host_packed(f: &Frame<'_>, out: &mut Vec<u8>) -> Result<()> {
    out.clear();
    f.for_each_row(|row| out.extend_from_slice(row));
    Ok(())
}

/// A Vulkan frame's packed bytes: copied to host through a staging buffer
/// (after the publisher's timeline semaphore, if any).
pub(crate) fn vulkan_packed(f: &Frame<'_, VulkanBackend>, out: &mut Vec<u8>) -> Result<()> {
    f.copy_to_host(out)
        .context("copying a frame to host memory")
}

/// How CUDA frames are read: copied to host memory in FFmpeg's packed
/// layout (after the publisher's event, if any), straight from the slot,
/// or with --cross-gpu copy (and under auto without peer access) through a
/// copy on --gpu first, which is what is then hashed.
pub(crate) fn cuda_reader(
    args: &Args,
) -> impl FnMut(&Frame<'_, CudaBackend>, &mut Vec<u8>) -> Result<()> {
    let copy_mode = args.gpu.is_some() && args.cross_gpu == CrossGpuArg::Copy;
    let mut copy: Option<(CudaStream, CudaFrameCopy)> = None;
    move |f, out| {
        let via_copy = copy_mode || matches!(f.memory().access(), FrameAccess::SourceMapped { .. });
        if !via_copy {
            return f
                .copy_to_host(out)
                .context("copying a frame to host memory");
        }
        let dev = f.memory().consumer().clone();
        let fits = copy
            .as_ref()
            .is_some_and(|(_, c)| c.capacity() >= f.stream().frame_size);
        if !fits {
            let stream = CudaStream::new(&dev)?;
            let c = CudaFrameCopy::new(&dev, f.stream())
                .context("allocating the frame copy on --gpu")?;
            copy = Some((stream, c));
        }
        let Some((stream, c)) = copy.as_mut() else {
            bail!("no frame copy buffer");
        };
        f.copy_into(c, stream.raw())
            .context("copying a frame to --gpu")?;
        c.copy_to_host(stream.raw(), out)
            .context("copying the frame copy to host memory")
    }
}
