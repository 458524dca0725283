//! The two kernels of the hand-off bench, as PTX the driver JIT-compiles
//! (no NVRTC or CUDA toolkit needed), launched through cudarc's safe API:
//! `fill` writes a frame, `check` reads every word of it and counts the
//! words that differ from the expected value.
#![allow(unsafe_code)]

use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::Ptx;
use std::sync::Arc;

const PTX: &str = r#"
.version 7.0
.target sm_50
.address_size 64

.visible .entry fill(.param .u64 p_ptr, .param .u64 p_n, .param .u32 p_val)
{
    .reg .pred %p;
    .reg .b32 %r<6>;
    .reg .b64 %rd<8>;
    ld.param.u64 %rd1, [p_ptr];
    ld.param.u64 %rd2, [p_n];
    ld.param.u32 %r1, [p_val];
    mov.u32 %r2, %ctaid.x;
    mov.u32 %r3, %ntid.x;
    mov.u32 %r4, %tid.x;
    mad.lo.u32 %r5, %r2, %r3, %r4;
    cvt.u64.u32 %rd3, %r5;
    setp.ge.u64 %p, %rd3, %rd2;
    @%p bra DONE;
    cvta.to.global.u64 %rd4, %rd1;
    shl.b64 %rd5, %rd3, 2;
    add.u64 %rd6, %rd4, %rd5;
    st.global.u32 [%rd6], %r1;
DONE:
    ret;
}

.visible .entry check(.param .u64 p_ptr, .param .u64 p_n, .param .u32 p_val, .param .u64 p_err)
{
    .reg .pred %p, %q;
    .reg .b32 %r<8>;
    .reg .b64 %rd<10>;
    ld.param.u64 %rd1, [p_ptr];
    ld.param.u64 %rd2, [p_n];
    ld.param.u32 %r1, [p_val];
    ld.param.u64 %rd7, [p_err];
    mov.u32 %r2, %ctaid.x;
    mov.u32 %r3, %ntid.x;
    mov.u32 %r4, %tid.x;
    mad.lo.u32 %r5, %r2, %r3, %r4;
    cvt.u64.u32 %rd3, %r5;
    setp.ge.u64 %p, %rd3, %rd2;
    @%p bra DONE;
    cvta.to.global.u64 %rd4, %rd1;
    shl.b64 %rd5, %rd3, 2;
    add.u64 %rd6, %rd4, %rd5;
    ld.global.u32 %r6, [%rd6];
    setp.ne.u32 %q, %r6, %r1;
    @!%q bra DONE;
    cvta.to.global.u64 %rd8, %rd7;
    atom.global.add.u32 %r7, [%rd8], 1;
DONE:
    ret;
}
"#;

/// The loaded kernels.
pub struct Kernels {
    fill: CudaFunction,
    check: CudaFunction,
}

fn cfg(words: u64) -> LaunchConfig {
    let block = 256u32;
    LaunchConfig {
        grid_dim: (words.div_ceil(block as u64) as u32, 1, 1),
        block_dim: (block, 1, 1),
        shared_mem_bytes: 0,
    }
}

impl Kernels {
    pub fn load(ctx: &Arc<CudaContext>) -> anyhow::Result<Self> {
        let m = ctx.load_module(Ptx::from_src(PTX))?;
        Ok(Kernels {
            fill: m.load_function("fill")?,
            check: m.load_function("check")?,
        })
    }

    /// Queues `fill`: `words` u32 words at device address `ptr` set to `val`.
    pub fn fill(&self, s: &CudaStream, ptr: u64, words: u64, val: u32) -> anyhow::Result<()> {
        let mut b = s.launch_builder(&self.fill);
        b.arg(&ptr).arg(&words).arg(&val);
        // SAFETY: the kernel's parameters are (u64 pointer, u64 count, u32),
        // matching the PTX; `ptr` addresses `words` u32 words of device
        // memory this process may write (a slot of the caller's ring).
        unsafe { b.launch(cfg(words)) }?;
        Ok(())
    }

    /// Queues `check`: counts words at `ptr` that differ from `val` into `err`.
    pub fn check(
        &self,
        s: &CudaStream,
        ptr: u64,
        words: u64,
        val: u32,
        err: &CudaSlice<u32>,
    ) -> anyhow::Result<()> {
        let mut b = s.launch_builder(&self.check);
        b.arg(&ptr).arg(&words).arg(&val).arg(err);
        // SAFETY: parameters (u64, u64, u32, u64) match the PTX; `ptr`
        // addresses `words` readable words (a leased, imported slot) and
        // `err` a live one-element device buffer of this context.
        unsafe { b.launch(cfg(words)) }?;
        Ok(())
    }
}
