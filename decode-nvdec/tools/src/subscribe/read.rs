//! Reading a leased frame into FFmpeg's packed layout in host memory (rows
//! without pitch padding): what is hashed and written. The facade's
//! `Frame::copy_to_host` for every backend; CUDA specifics only for
//! `--cross-gpu copy` (and `auto` without peer access), where the frame is
//! first copied onto `--gpu` and that copy is read.

use super::args::{Args, CrossGpuArg};
use anyhow::{bail, Context, Result};
use cuframes::cuda::{CudaFrameCopy, CudaFrameExt, CudaStream, FrameAccess};
use cuframes::Frame;

/// How frames are read: [`Frame::copy_to_host`] (a host copy, or a
/// device-to-host copy after the publisher's event / semaphore), or for a
/// CUDA frame taken through a copy on --gpu, that copy.
pub(crate) fn reader(args: &Args) -> impl FnMut(&Frame<'_>, &mut Vec<u8>) -> Result<()> {
    let copy_mode = args.gpu.is_some() && args.cross_gpu == CrossGpuArg::Copy;
    let mut copy: Option<(CudaStream, CudaFrameCopy)> = None;
    move |frame, out| {
        let Some(f) = frame.as_cuda().filter(|f| {
            copy_mode || matches!(f.memory().access(), FrameAccess::SourceMapped { .. })
        }) else {
            return frame
                .copy_to_host(out)
                .context("copying a frame to host memory");
        };
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
