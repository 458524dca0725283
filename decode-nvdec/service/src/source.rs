//! A stream's input: a file or an `rtsp://` URL demuxed by libavformat and
//! decoded by NVDEC or libavcodec, pushed frame by frame into a
//! [`FrameSink`], with keyframe flags and timestamps.

use super::sink::{FrameSink, Geometry, SinkError};
use cuframes_core::layout::StreamDesc;
use cuframes_core::runtime::{Backend, Exporter, HostBackend, HostSlot};
use cuframes_cuda::{CudaBackend, CudaDevice, CudaError, CudaSlot, CudaStream, RawStream};
use cuframes_media::demux::{
    redact_url, DemuxError, OpenError, RtspTransport, StopFlag, UrlOptions,
};
use cuframes_media::{
    AnnexB, AnnexBError, DecodeError, Decoded, Decoder, Demuxer, FrameClock, HostFrame,
    SoftwareDecoder,
};
use cuframes_nvdec::{NvdecDecoder, NvdecError};
use cuframes_vulkan::{VulkanBackend, VulkanError, VulkanSlot};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Where a stream's video comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSpec {
    /// A file: MP4, Matroska, MPEG-TS or raw Annex B `.h264` / `.h265`.
    File(PathBuf),
    /// A URL libavformat opens, e.g. `rtsp://user:pass@10.0.0.5/stream1`.
    Url(String),
}

impl InputSpec {
    /// The input as it may be logged: a URL's `user:password@` is replaced
    /// by `***@`.
    pub fn redacted(&self) -> String {
        match self {
            InputSpec::File(p) => p.display().to_string(),
            InputSpec::Url(u) => redact_url(u),
        }
    }

    /// Whether the input is live (a URL): failures are retried with backoff.
    pub fn is_live(&self) -> bool {
        matches!(self, InputSpec::Url(_))
    }
}

/// Which decoder turns packets into frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecoderKind {
    /// libavcodec in host memory: NV12, or P010 for 10-bit streams.
    Software,
    /// NVIDIA NVDEC into device memory (CUDA backend only).
    Nvdec,
}

/// How to open and decode an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSpec {
    /// File or URL.
    pub input: InputSpec,
    /// RTSP transport (URLs only).
    pub transport: RtspTransport,
    /// A URL whose open, or next packet, takes longer than this fails
    /// (stall detection).
    pub io_timeout: Duration,
    /// The decoder.
    pub decoder: DecoderKind,
}

/// Why a source stopped delivering frames.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The input could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// Reading the input failed or stalled.
    #[error(transparent)]
    Demux(#[from] DemuxError),
    /// The input's codec extradata is not valid `avcC` / `hvcC` or Annex B.
    #[error("codec extradata: {0}")]
    Extradata(#[from] AnnexBError),
    /// libavcodec failed.
    #[error("decoding: {0}")]
    Decode(#[from] DecodeError),
    /// NVDEC failed.
    #[error("NVDEC: {0}")]
    Nvdec(#[from] NvdecError),
    /// A CUDA call failed (stream creation, copy wait).
    #[error("CUDA: {0}")]
    Cuda(#[from] CudaError),
    /// NVDEC was asked for without a CUDA device.
    #[error("NVDEC needs the CUDA backend")]
    NvdecWithoutCuda,
    /// The input ended before it gave a single frame.
    #[error("{0} holds no decodable frame")]
    NoFrames(String),
    /// A live input ended its stream (the camera or server closed it).
    #[error("{input} ended the stream after {frames} frames")]
    LiveEnded {
        /// The input, credentials redacted.
        input: String,
        /// Frames it gave since it was opened.
        frames: u64,
    },
    /// Publishing failed (not the input's fault: not retried).
    #[error(transparent)]
    Sink(#[from] SinkError),
}

impl SourceError {
    /// Whether the error is only the stop flag interrupting a blocking call.
    pub fn is_stop(&self) -> bool {
        matches!(
            self,
            SourceError::Open(OpenError::Interrupted(_))
                | SourceError::Demux(DemuxError::Interrupted(_))
        )
    }

    /// Whether reopening the input may help: everything but a failure of
    /// the publishing side.
    pub fn is_input_error(&self) -> bool {
        !matches!(self, SourceError::Sink(_) | SourceError::NvdecWithoutCuda)
    }
}

/// Writing a decoded frame into a slot failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The frame's planes do not fit the slot's layout.
    #[error("the frame does not fit the slot layout")]
    Layout,
    /// A CUDA copy failed.
    #[error(transparent)]
    Cuda(#[from] CudaError),
    /// A Vulkan upload failed.
    #[error(transparent)]
    Vulkan(#[from] VulkanError),
    /// A device frame (NVDEC) cannot go into a host or Vulkan slot.
    #[error("device frames need the CUDA backend")]
    NotDevice,
}

/// A backend whose slots can take decoded frames: host frames from
/// libavcodec and, for CUDA, device surfaces from NVDEC.
pub trait SlotWrite: Backend + Send + Sync + 'static {
    /// Copies `frame` (packed planes in host memory) into `slot`, laid out by `desc`.
    fn write_host(
        slot: &mut Self::Slot,
        frame: &HostFrame,
        desc: &StreamDesc,
    ) -> Result<(), WriteError>;

    /// Copies device planes `(pointer, pitch in bytes)` into `slot` on
    /// `stream`, then makes the frame visible (the backend's fence).
    /// Default: [`WriteError::NotDevice`], for backends NVDEC cannot feed.
    fn write_device(
        slot: &mut Self::Slot,
        planes: [Option<(u64, usize)>; 2],
        desc: &StreamDesc,
        stream: RawStream,
    ) -> Result<(), WriteError> {
        let _ = (slot, planes, desc, stream);
        Err(WriteError::NotDevice)
    }

    /// The CUDA device the slots are on, if any (NVDEC decodes on it).
    fn cuda_device(&self) -> Option<&CudaDevice> {
        None
    }

    /// For logs: the memory, sync and device, e.g. `cuda VmmFd/HostFence on
    /// NVIDIA H200 (GPU-…)` or `host`.
    fn describe(&self) -> String;
}

impl SlotWrite for HostBackend {
    fn write_host(
        slot: &mut HostSlot,
        frame: &HostFrame,
        desc: &StreamDesc,
    ) -> Result<(), WriteError> {
        let dst = slot.bytes_mut();
        let layout = desc
            .validate(dst.len() as u64)
            .map_err(|_| WriteError::Layout)?;
        for (i, src) in frame.planes.iter().enumerate() {
            let from = frame.data.get(src.offset..).ok_or(WriteError::Layout)?;
            layout
                .copy_plane_from(i, from, src.pitch, dst)
                .map_err(|_| WriteError::Layout)?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        "host".into()
    }
}

impl SlotWrite for CudaBackend {
    fn write_host(
        slot: &mut CudaSlot,
        frame: &HostFrame,
        desc: &StreamDesc,
    ) -> Result<(), WriteError> {
        for (i, p) in frame.planes.iter().enumerate() {
            let src = frame.data.get(p.offset..).ok_or(WriteError::Layout)?;
            slot.copy_plane_from_host(desc, i, src, p.pitch)?;
        }
        // Pageable uploads may still be in DMA when cuMemcpy2D returns.
        Ok(slot.fence(RawStream::DEFAULT)?)
    }

    fn write_device(
        slot: &mut CudaSlot,
        planes: [Option<(u64, usize)>; 2],
        desc: &StreamDesc,
        stream: RawStream,
    ) -> Result<(), WriteError> {
        for (i, p) in planes.iter().enumerate() {
            let (ptr, pitch) = p.ok_or(WriteError::Layout)?;
            slot.copy_plane_from_device(desc, i, ptr, pitch, stream)?;
        }
        Ok(slot.fence(stream)?)
    }

    fn cuda_device(&self) -> Option<&CudaDevice> {
        self.device()
    }

    fn describe(&self) -> String {
        let c = self.config();
        match self.device() {
            Some(d) => format!(
                "cuda {:?}/{:?} on {} ({})",
                c.memory,
                c.sync,
                d.name(),
                cuframes_cuda::uuid_string(&d.uuid())
            ),
            None => format!("cuda {:?}/{:?}", c.memory, c.sync),
        }
    }
}

impl SlotWrite for VulkanBackend {
    fn write_host(
        slot: &mut VulkanSlot,
        frame: &HostFrame,
        desc: &StreamDesc,
    ) -> Result<(), WriteError> {
        let mut planes = [(&[][..], 0usize); 2];
        for (i, p) in frame.planes.iter().enumerate() {
            planes[i] = (
                frame.data.get(p.offset..).ok_or(WriteError::Layout)?,
                p.pitch,
            );
        }
        // Uploaded through staging memory and waited for (HostFence).
        Ok(slot.write_from_host(desc, &planes)?)
    }

    fn describe(&self) -> String {
        match self.device() {
            Some(d) => {
                let i = d.info();
                format!(
                    "vulkan VulkanOpaqueFd/{:?} on {} ({}, {})",
                    self.sync_kind(),
                    i.name,
                    i.device_type,
                    cuframes_vulkan::uuid_string(&i.device_uuid)
                )
            }
            None => "vulkan".into(),
        }
    }
}

/// Whether libavcodec's error says the data was invalid (a corrupt packet),
/// rather than a failure of the decoder itself.
fn is_invalid_data(e: &cuframes_media::ffmpeg::Error) -> bool {
    matches!(e, cuframes_media::ffmpeg::Error::InvalidData)
}

/// Why [`MediaSource::pump`] returned without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PumpEnd {
    /// The input ended and every frame was delivered.
    EndOfInput,
    /// The stop flag was set.
    Stopped,
    /// The frame limit was reached.
    Limit,
}

/// NVDEC state of a source: the decoder, its copy stream, and what NVDEC
/// does not track (keyframe flags, times of streams without timestamps).
struct NvdecPath {
    dec: NvdecDecoder,
    stream: CudaStream,
    annexb: AnnexB,
    clock: FrameClock,
    time_base: (i32, i32),
    /// Keyframe flags by pts: NVDEC does not report them.
    keys: HashMap<i64, bool>,
    buf: Vec<u8>,
    next_pts: i64,
}

enum Decode {
    Software(SoftwareDecoder),
    Nvdec(Box<NvdecPath>),
}

/// An opened input and its decoder.
pub struct MediaSource {
    demux: Demuxer,
    decode: Decode,
    eof_sent: bool,
    frames: u64,
    name: String,
}

impl std::fmt::Debug for MediaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaSource")
            .field("input", &self.name)
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

impl MediaSource {
    /// Opens `spec`'s input and starts its decoder; NVDEC decodes on `device`.
    ///
    /// `stop` interrupts blocking opens and reads at once (a FIFO or device
    /// without data, a camera that stopped sending): they then fail with
    /// [`OpenError::Interrupted`] / [`DemuxError::Interrupted`] and
    /// [`SourceError::is_stop`] says so.
    ///
    /// Errors: the input cannot be opened or its codec is unsupported
    /// ([`SourceError::Open`]), the decoder cannot start.
    pub fn open(
        spec: &SourceSpec,
        device: Option<&CudaDevice>,
        stop: Option<&Arc<AtomicBool>>,
    ) -> Result<Self, SourceError> {
        let stop = stop.map(|s| StopFlag(Arc::clone(s)));
        let demux = match &spec.input {
            InputSpec::File(p) => Demuxer::open_interruptible(p, stop)?,
            InputSpec::Url(u) => Demuxer::open_url(
                u,
                &UrlOptions {
                    stop,
                    transport: spec.transport,
                    io_timeout: spec.io_timeout,
                },
            )?,
        };
        let decode = match spec.decoder {
            DecoderKind::Software => Decode::Software(SoftwareDecoder::new(&demux)?),
            DecoderKind::Nvdec => {
                let device = device.ok_or(SourceError::NvdecWithoutCuda)?;
                let info = demux.info();
                let annexb = AnnexB::new(info.codec, &info.extradata)?;
                let dec = NvdecDecoder::new(device, info.codec, annexb.extradata())?;
                Decode::Nvdec(Box::new(NvdecPath {
                    dec,
                    stream: CudaStream::new(device)?,
                    annexb,
                    clock: FrameClock::new(info.frame_rate),
                    time_base: info.time_base,
                    keys: HashMap::new(),
                    buf: Vec::new(),
                    next_pts: 0,
                }))
            }
        };
        Ok(MediaSource {
            demux,
            decode,
            eof_sent: false,
            frames: 0,
            name: spec.input.redacted(),
        })
    }

    /// The demuxed stream's description (codec, size, rates, extradata).
    pub fn info(&self) -> &cuframes_media::StreamInfo {
        self.demux.info()
    }

    /// Which decoder runs.
    pub fn decoder_name(&self) -> &'static str {
        match self.decode {
            Decode::Software(_) => "software",
            Decode::Nvdec(_) => "nvdec",
        }
    }

    /// Frames delivered since the input was opened or rewound.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Starts a file over (`loop`): seeks to the start and flushes the decoder.
    pub fn rewind(&mut self) -> Result<(), SourceError> {
        if self.frames == 0 {
            return Err(SourceError::NoFrames(self.name.clone()));
        }
        self.demux.rewind()?;
        match &mut self.decode {
            Decode::Software(d) => d.flush(),
            Decode::Nvdec(n) => {
                n.dec.restart()?;
                n.clock.reset();
                n.keys.clear();
            }
        }
        self.eof_sent = false;
        self.frames = 0;
        Ok(())
    }

    /// Demuxes, decodes and publishes into `sink` until the input ends,
    /// `stop` is set or `limit` frames were published in all (packets go to
    /// the sink's packet ring before they are decoded).
    pub fn pump<B: SlotWrite>(
        &mut self,
        sink: &mut FrameSink<B>,
        stop: &AtomicBool,
        limit: Option<u64>,
    ) -> Result<PumpEnd, SourceError> {
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(PumpEnd::Stopped);
            }
            if limit.is_some_and(|m| sink.total() >= m) {
                return Ok(PumpEnd::Limit);
            }
            let more = match &mut self.decode {
                Decode::Software(_) => self.step_software(sink)?,
                Decode::Nvdec(_) => self.step_nvdec(sink)?,
            };
            if !more {
                return Ok(PumpEnd::EndOfInput);
            }
        }
    }

    /// One step of the software path; `Ok(false)` at the end of the input.
    fn step_software<B: SlotWrite>(
        &mut self,
        sink: &mut FrameSink<B>,
    ) -> Result<bool, SourceError> {
        let Decode::Software(decoder) = &mut self.decode else {
            return Ok(false);
        };
        let frame = match decoder.receive_frame() {
            // With frame threading a corrupt packet's error surfaces here.
            Err(DecodeError::Receive(e)) if is_invalid_data(&e) => {
                sink.corrupt_packet(&e.to_string());
                return Ok(true);
            }
            r => r?,
        };
        let frame = match frame {
            Decoded::Frame(f) => f,
            Decoded::NeedInput => {
                match self.demux.read_packet()? {
                    Some(p) => {
                        sink.packet(&p);
                        match decoder.send_packet(&p) {
                            Ok(()) => {}
                            // One bad packet of a file must not end the
                            // stream: skip it, count it, flag the next frame.
                            Err(DecodeError::Send(e)) => sink.corrupt_packet(&e.to_string()),
                            Err(e) => return Err(e.into()),
                        }
                    }
                    None if !self.eof_sent => {
                        decoder.send_eof()?;
                        self.eof_sent = true;
                    }
                    None => {}
                }
                return Ok(true);
            }
            Decoded::Eof => return Ok(false),
        };
        let g = Geometry {
            width: frame.width,
            height: frame.height,
            format: frame.format,
        };
        sink.publish(&g, frame.pts_ns, frame.keyframe, |slot, desc| {
            B::write_host(slot, &frame, desc)
        })?;
        self.frames += 1;
        Ok(true)
    }

    /// One step of the NVDEC path; `Ok(false)` at the end of the input.
    fn step_nvdec<B: SlotWrite>(&mut self, sink: &mut FrameSink<B>) -> Result<bool, SourceError> {
        let Decode::Nvdec(n) = &mut self.decode else {
            return Ok(false);
        };
        let raw = n.stream.raw();
        if let Some(frame) = n.dec.next_frame(raw)? {
            let si = frame.info();
            let g = Geometry {
                width: si.width,
                height: si.height,
                format: si.format,
            };
            let (key, pts_ns) = match frame.pts() {
                Some(t) => (
                    n.keys.remove(&t).unwrap_or(false),
                    n.clock.stamp(cuframes_media::rescale_to_ns(t, n.time_base)),
                ),
                None => (false, n.clock.stamp(None)),
            };
            let planes = [frame.plane(0), frame.plane(1)];
            sink.publish(&g, pts_ns, key, |slot, desc| {
                B::write_device(slot, planes, desc, raw)
            })?;
            // The surface is unmapped when `frame` drops: the copy must be done.
            n.stream.synchronize()?;
            drop(frame);
            self.frames += 1;
            return Ok(true);
        }
        if n.dec.is_drained() {
            return Ok(false);
        }
        match self.demux.read_packet()? {
            Some(p) => {
                sink.packet(&p);
                if let Err(e) = n.annexb.convert(&p.data, &mut n.buf) {
                    // A malformed length prefix: skip the packet like a
                    // corrupt one rather than ending the stream.
                    sink.corrupt_packet(&e.to_string());
                    return Ok(true);
                }
                // Raw streams may carry no pts: number them so keyframe
                // flags still find their frame.
                let pts = p.pts.unwrap_or_else(|| {
                    n.next_pts += 1;
                    n.next_pts
                });
                if n.keys.len() > 4096 {
                    n.keys.clear();
                }
                n.keys.insert(pts, p.keyframe);
                n.dec.send_packet(&n.buf, Some(pts))?;
            }
            None if !self.eof_sent => {
                n.dec.send_eof()?;
                self.eof_sent = true;
            }
            None => {}
        }
        Ok(true)
    }
}
