//! The stream description (`docs/protocol.md` §3.3).

use super::frame_layout::{FrameLayout, MAX_PLANES};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// What every frame of the current stream generation looks like: 128 bytes at
/// `stream_offset` of the control region, little-endian u64 fields.
///
/// Plane `i` of a frame starts `plane_offset[i]` bytes into its slot and has
/// rows of `plane_pitch[i]` bytes (pitch ≥ row bytes of the format). Read
/// planes through the [`FrameLayout`] that [`StreamDesc::validate`] returns,
/// not from these fields.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct StreamDesc {
    /// Bumped on every change of the fields below (STREAM_CHANGED).
    pub generation: u64,
    /// Frame width, pixels.
    pub width: u64,
    /// Frame height, pixels.
    pub height: u64,
    /// [`crate::PixelFormat`] code.
    pub pixel_format: u64,
    /// [`crate::Codec`] code of the source.
    pub codec: u64,
    /// Bytes of a frame inside its slot (end of the last plane).
    pub frame_size: u64,
    /// Byte offset of each plane inside the slot.
    pub plane_offset: [u64; 2],
    /// Pitch (bytes per row) of each plane.
    pub plane_pitch: [u64; 2],
    /// Nominal frame rate numerator (0 if unknown).
    pub fps_num: u64,
    /// Nominal frame rate denominator (0 if unknown).
    pub fps_den: u64,
    /// Colour description, ITU-T H.273 codes: `matrix | primaries << 8 |
    /// transfer << 16 | range << 24` (range: 0 unknown, 1 limited, 2 full).
    pub colour: u64,
    /// Reserved: zero on write, ignored on read.
    pub reserved: [u64; 3],
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<StreamDesc>() == 128);
    assert!(offset_of!(StreamDesc, generation) == 0);
    assert!(offset_of!(StreamDesc, width) == 8);
    assert!(offset_of!(StreamDesc, height) == 16);
    assert!(offset_of!(StreamDesc, pixel_format) == 24);
    assert!(offset_of!(StreamDesc, codec) == 32);
    assert!(offset_of!(StreamDesc, frame_size) == 40);
    assert!(offset_of!(StreamDesc, plane_offset) == 48);
    assert!(offset_of!(StreamDesc, plane_pitch) == 64);
    assert!(offset_of!(StreamDesc, fps_num) == 80);
    assert!(offset_of!(StreamDesc, fps_den) == 88);
    assert!(offset_of!(StreamDesc, colour) == 96);
    assert!(offset_of!(StreamDesc, reserved) == 104);
};

/// Largest accepted width or height, pixels.
pub const MAX_DIMENSION: u64 = 16384;

/// Row alignment the publisher uses for plane pitches, bytes.
pub const PITCH_ALIGN: u64 = 256;

/// Why a stream description is not usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// Width or height is zero or above [`MAX_DIMENSION`].
    #[error("frame size {0}x{1} is outside 1..=16384")]
    BadDimensions(u64, u64),
    /// The pixel format code is unknown.
    #[error("unknown pixel format code {0}")]
    UnknownFormat(u64),
    /// A plane's pitch is smaller than its row bytes.
    #[error("plane {plane} pitch {pitch} B is below its row size {row} B")]
    PitchTooSmall {
        /// Plane index.
        plane: usize,
        /// Declared pitch, bytes.
        pitch: u64,
        /// Minimum row size, bytes.
        row: u64,
    },
    /// A plane ends beyond `frame_size` or the slot, or planes overlap.
    #[error("plane {0} lies outside the frame or overlaps another")]
    PlaneOutOfBounds(usize),
    /// `frame_size` is larger than the slot allocation.
    #[error("frame size {frame} B exceeds slot size {slot} B")]
    FrameTooLarge {
        /// Declared frame size, bytes.
        frame: u64,
        /// Slot allocation, bytes.
        slot: u64,
    },
}

impl StreamDesc {
    /// A packed description for `width`×`height` of `format`, pitches rounded up
    /// to [`PITCH_ALIGN`] bytes, planes back to back.
    pub fn packed(
        width: u32,
        height: u32,
        format: crate::PixelFormat,
        codec: crate::Codec,
    ) -> Result<Self, StreamError> {
        let mut d = StreamDesc {
            generation: 1,
            width: width as u64,
            height: height as u64,
            pixel_format: format.code() as u64,
            codec: codec.code() as u64,
            ..Default::default()
        };
        if d.width == 0 || d.height == 0 || d.width > MAX_DIMENSION || d.height > MAX_DIMENSION {
            return Err(StreamError::BadDimensions(d.width, d.height));
        }
        let mut offset = 0u64;
        for plane in 0..2 {
            let (row, rows) = format
                .plane_extent(plane as u32, width, height)
                .ok_or(StreamError::UnknownFormat(d.pixel_format))?;
            let pitch = row.div_ceil(PITCH_ALIGN) * PITCH_ALIGN;
            d.plane_offset[plane] = offset;
            d.plane_pitch[plane] = pitch;
            offset += pitch * rows;
        }
        d.frame_size = offset;
        Ok(d)
    }

    /// Checks every field a reader relies on against `slot_size` (bytes of
    /// the slot allocation the reader mapped), in the order of
    /// `docs/protocol.md` §3.3 *Validation*, and returns the frame's
    /// [`FrameLayout`]: plane `i` spans
    /// `plane_offset[i] .. plane_offset[i] + plane_pitch[i] · rows` within
    /// `0..frame_size`, inside the slot.
    ///
    /// Errors: [`StreamError`]; never panics, whatever the fields hold.
    /// A `frame_size` beyond `usize::MAX` (32-bit targets only) is
    /// [`StreamError::FrameTooLarge`] with `slot: usize::MAX`.
    pub fn validate(&self, slot_size: u64) -> Result<FrameLayout, StreamError> {
        if self.width == 0
            || self.height == 0
            || self.width > MAX_DIMENSION
            || self.height > MAX_DIMENSION
        {
            return Err(StreamError::BadDimensions(self.width, self.height));
        }
        let format = self.format();
        let Some(plane_count) = format.plane_count() else {
            return Err(StreamError::UnknownFormat(self.pixel_format));
        };
        // Every plane's rows are then addressable by usize.
        let addressable = slot_size.min(usize::MAX as u64);
        if self.frame_size > addressable {
            return Err(StreamError::FrameTooLarge {
                frame: self.frame_size,
                slot: addressable,
            });
        }
        // Both within 1..=16384 (checked above).
        let (width, height) = (self.width as u32, self.height as u32);
        let mut planes = [(0u64, 0u64, 0u64, 0u64); MAX_PLANES];
        for (plane, out) in planes.iter_mut().enumerate() {
            let (row, rows) = format
                .plane_extent(plane as u32, width, height)
                .ok_or(StreamError::UnknownFormat(self.pixel_format))?;
            let pitch = self.plane_pitch[plane];
            if pitch < row {
                return Err(StreamError::PitchTooSmall { plane, pitch, row });
            }
            let start = self.plane_offset[plane];
            // The last row only needs `row` bytes, but the layout promises whole pitches.
            let end = pitch
                .checked_mul(rows)
                .and_then(|len| start.checked_add(len))
                .ok_or(StreamError::PlaneOutOfBounds(plane))?;
            if end > self.frame_size {
                return Err(StreamError::PlaneOutOfBounds(plane));
            }
            *out = (start, pitch, row, rows);
        }
        let span = |(start, pitch, _, rows): (u64, u64, u64, u64)| (start, start + pitch * rows);
        let (a, b) = (span(planes[0]), span(planes[1]));
        if a.0 < b.1 && b.0 < a.1 {
            return Err(StreamError::PlaneOutOfBounds(1));
        }
        Ok(FrameLayout::new_validated(
            format,
            width,
            height,
            planes,
            plane_count as usize,
            self.frame_size,
        ))
    }

    /// The pixel format.
    pub fn format(&self) -> crate::PixelFormat {
        crate::PixelFormat::from_code(self.pixel_format.min(u32::MAX as u64) as u32)
    }

    /// The codec of the source.
    pub fn codec(&self) -> crate::Codec {
        crate::Codec::from_code(self.codec.min(u32::MAX as u64) as u32)
    }
}
