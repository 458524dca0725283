//! Buffers over leased slots, and the packed copies used when a slot cannot
//! be handed downstream as it is.

use cuframes::OwnedFrame;
use cuframes_core::layout::StreamDesc;
use std::sync::{Arc, Mutex};

/// Counters of a source, shared with the buffers it made (a buffer freed
/// after its lease was revoked counts itself).
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    /// Buffers pushed.
    pub buffers: u64,
    /// Buffers whose memory is the leased slot itself (no copy).
    pub zero_copy: u64,
    /// Buffers copied out of the slot (lease limit, no `GstVideoMeta`
    /// downstream for a padded layout, or CUDA / Vulkan slots).
    pub copied: u64,
    /// Zero-copy buffers freed after the publisher had revoked their lease
    /// (held past its lease timeout): their bytes may have been rewritten.
    pub revoked: u64,
    /// The subscriber's counters as of the last frame: frames skipped
    /// (NewestOnly) or lost (InOrder gaps).
    pub skipped: u64,
    /// Reconnections to a restarted publisher.
    pub reconnects: u64,
    /// STREAM_CHANGED messages followed.
    pub stream_changes: u64,
}

/// Shared counters.
pub type SharedCounters = Arc<Mutex<Counters>>;

/// Updates `c` (a poisoned lock still counts).
pub fn count(c: &SharedCounters, f: impl FnOnce(&mut Counters)) {
    f(&mut c.lock().unwrap_or_else(|p| p.into_inner()));
}

/// A leased host slot as the memory of a `GstBuffer`: read-only, the first
/// `frame_size` bytes of the slot's mapping. The lease is returned when
/// GStreamer frees the memory (the last buffer referencing it is gone).
pub struct SlotMemory {
    /// A host-memory frame (`OwnedFrame::as_host` is `Some`).
    frame: Option<OwnedFrame>,
    len: usize,
    counters: SharedCounters,
    /// One clone per live buffer: the source counts them to stay below the
    /// subscriber's lease entries.
    _token: Arc<()>,
}

impl SlotMemory {
    /// Wraps `frame`; `token` is the source's outstanding-buffer counter.
    pub fn new(frame: OwnedFrame, token: Arc<()>, counters: SharedCounters) -> Self {
        let len = frame.stream().frame_size as usize;
        SlotMemory {
            frame: Some(frame),
            len,
            counters,
            _token: token,
        }
    }
}

impl AsRef<[u8]> for SlotMemory {
    fn as_ref(&self) -> &[u8] {
        // `frame_size` was validated against the slot size on import.
        self.frame
            .as_ref()
            .and_then(|f| f.as_host()?.memory().bytes().get(..self.len))
            .unwrap_or(&[])
    }
}

impl Drop for SlotMemory {
    fn drop(&mut self) {
        if let Some(f) = self.frame.take() {
            if !f.release() {
                count(&self.counters, |c| c.revoked += 1);
            }
        }
    }
}

/// The bytes of plane `i` of a frame (from its first row) and its pitch.
pub type PlaneSource<'a> = dyn Fn(usize) -> Option<(&'a [u8], usize)> + 'a;

/// Copies the planes of a frame of `s` (given by `plane`) into a new buffer
/// in GStreamer's default layout for `info`. `None` when a plane is
/// missing or shorter than `s` says (nothing is read out of bounds).
pub fn packed_copy(
    s: &StreamDesc,
    info: &gst_video::VideoInfo,
    plane: &PlaneSource<'_>,
) -> Option<gst::Buffer> {
    let mut buf = gst::Buffer::with_size(info.size()).ok()?;
    {
        let bufm = buf.get_mut()?;
        let mut map = bufm.map_writable().ok()?;
        let layout = s.validate(s.frame_size).ok()?;
        for (i, p) in layout.planes().iter().enumerate() {
            let (row, rows) = (p.row_bytes() as usize, p.rows() as usize);
            let (src, pitch) = plane(i)?;
            let off = *info.offset().get(i)?;
            let stride = usize::try_from(*info.stride().get(i)?).ok()?;
            for r in 0..rows {
                let from = src.get(r * pitch..r * pitch + row)?;
                map.get_mut(off + r * stride..off + r * stride + row)?
                    .copy_from_slice(from);
            }
        }
    }
    Some(buf)
}

/// Plane `i` of a packed frame (pitch = row bytes, planes back to back), as
/// the facade's `copy_to_host` writes it.
pub fn packed_plane<'a>(s: &StreamDesc, data: &'a [u8], i: usize) -> Option<(&'a [u8], usize)> {
    let layout = s.validate(s.frame_size).ok()?;
    let start = usize::try_from(layout.packed_offset(i)?).ok()?;
    let row = usize::try_from(layout.plane(i)?.row_bytes()).ok()?;
    Some((data.get(start..)?, row))
}
