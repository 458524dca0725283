//! Property tests of `StreamDesc::validate` and the `FrameLayout` it returns
//! (`docs/protocol.md` §3.3): it accepts exactly the descriptions the
//! section's rules accept (an independent model in u128 arithmetic), never
//! panics, and for what it accepts every plane and row lies inside the
//! frame, inside the slot, planes do not overlap, and packing copies exactly
//! the visible bytes of each row.

use cuframes_core::layout::{CopyError, FrameLayout, StreamDesc, StreamError, MAX_PLANES};
use cuframes_core::{Codec, PixelFormat};
use proptest::prelude::*;

/// §3.3 *Validation*, written from the text.
fn model_accepts(d: &StreamDesc, slot: u64) -> bool {
    let dims = (1..=16384).contains(&d.width) && (1..=16384).contains(&d.height);
    let bps: u128 = match d.pixel_format {
        1 => 1,
        2 => 2,
        _ => return false,
    };
    if !dims || d.frame_size > slot {
        return false;
    }
    let (w, h) = (d.width as u128, d.height as u128);
    let extent = [(w * bps, h), (2 * w.div_ceil(2) * bps, h.div_ceil(2))];
    let mut spans = [(0u128, 0u128); 2];
    for p in 0..2 {
        let (row, rows) = extent[p];
        let (off, pitch) = (d.plane_offset[p] as u128, d.plane_pitch[p] as u128);
        if pitch < row || off + pitch * rows > d.frame_size as u128 {
            return false;
        }
        spans[p] = (off, off + pitch * rows);
    }
    spans[0].1 <= spans[1].0 || spans[1].1 <= spans[0].0
}

/// What `validate` promises on `Ok`, checked independently.
fn assert_usable(d: &StreamDesc, slot: u64, l: &FrameLayout) -> Result<(), TestCaseError> {
    prop_assert_eq!(l.frame_size(), d.frame_size);
    prop_assert!(l.frame_size() <= slot);
    prop_assert_eq!((l.width() as u64, l.height() as u64), (d.width, d.height));
    prop_assert_eq!(l.format(), d.format());
    prop_assert_eq!(l.planes().len(), MAX_PLANES);
    let mut spans = Vec::new();
    let mut packed = 0u64;
    for (i, p) in l.planes().iter().enumerate() {
        let (row, rows) = d
            .format()
            .plane_extent(i as u32, d.width as u32, d.height as u32)
            .unwrap();
        prop_assert_eq!(
            (p.offset(), p.pitch()),
            (d.plane_offset[i], d.plane_pitch[i])
        );
        prop_assert_eq!((p.row_bytes(), p.rows()), (row, rows));
        prop_assert!(p.pitch() >= p.row_bytes() && p.rows() >= 1);
        let span = p.span();
        prop_assert!(span.start <= span.end && span.end <= l.frame_size());
        prop_assert!(p.end() <= span.end && p.end() <= l.end());
        let ranges: Vec<_> = p.row_ranges().collect();
        prop_assert_eq!(ranges.len() as u64, rows);
        for (r, range) in ranges.iter().enumerate() {
            prop_assert_eq!(range.len() as u64, row);
            prop_assert!(range.start as u64 >= span.start && range.end as u64 <= span.end);
            prop_assert_eq!(Some(range.clone()), p.row(r as u64));
        }
        prop_assert_eq!(p.row(rows), None);
        spans.push(span);
        packed += row * rows;
    }
    prop_assert!(l.end() <= l.frame_size());
    prop_assert!(spans[0].end <= spans[1].start || spans[1].end <= spans[0].start);
    prop_assert_eq!(l.packed_size(), packed);
    prop_assert!(l.packed_size() <= l.frame_size());
    prop_assert_eq!(l.plane(MAX_PLANES), None);
    Ok(())
}

/// Packs a slot holding a byte pattern and checks every row landed where
/// packing puts it; short buffers are errors.
fn assert_packs(l: &FrameLayout) -> Result<(), TestCaseError> {
    let end = l.end() as usize;
    let slot: Vec<u8> = (0..end).map(|i| (i % 251) as u8).collect();
    let mut out = vec![0u8; l.packed_size() as usize];
    prop_assert_eq!(l.copy_packed(&slot, &mut out), Ok(out.len()));
    let mut at = 0;
    for (i, p) in l.planes().iter().enumerate() {
        prop_assert_eq!(l.packed_offset(i), Some(at as u64));
        for range in p.row_ranges() {
            let n = range.len();
            prop_assert_eq!(&out[at..at + n], &slot[range]);
            at += n;
        }
    }
    prop_assert_eq!(at, out.len());
    prop_assert_eq!(
        l.packed_rows().count() as u64,
        l.planes().iter().map(|p| p.rows()).sum::<u64>()
    );
    prop_assert_eq!(
        l.copy_packed(&slot[..end - 1], &mut out),
        Err(CopyError::SourceTooShort {
            len: end - 1,
            need: end
        })
    );
    let short = out.len() - 1;
    prop_assert_eq!(
        l.copy_packed(&slot, &mut out[..short]),
        Err(CopyError::DestinationTooShort {
            len: short,
            need: short + 1
        })
    );
    Ok(())
}

/// A packed description, then fields moved a little (or anywhere).
fn near_valid() -> impl Strategy<Value = (StreamDesc, u64)> {
    let delta = || prop_oneof![30 => Just(0i64), 3 => -600i64..600, 1 => any::<i64>()];
    (
        (1u32..=700, 1u32..=400, any::<bool>()),
        (delta(), delta(), delta(), delta()),
        (
            delta(),
            prop_oneof![3 => 0i64..10_000, 1 => -600i64..0, 1 => any::<i64>()],
            prop_oneof![9 => Just(0u64), 1 => any::<u64>()],
        ),
        prop::bool::weighted(0.1),
    )
        .prop_map(|((w, h, p010), (p0, p1, o0, o1), (fs, slot, fmt), swap)| {
            let f = if p010 {
                PixelFormat::P010
            } else {
                PixelFormat::Nv12
            };
            let mut d = StreamDesc::packed(w, h, f, Codec::H264).unwrap();
            let mv = |v: u64, by: i64| v.saturating_add_signed(by);
            d.plane_pitch = [mv(d.plane_pitch[0], p0), mv(d.plane_pitch[1], p1)];
            d.plane_offset = [mv(d.plane_offset[0], o0), mv(d.plane_offset[1], o1)];
            if swap {
                d.plane_offset.swap(0, 1);
            }
            d.frame_size = mv(d.frame_size, fs);
            if fmt > 2 {
                d.pixel_format = fmt;
            }
            let slot = mv(d.frame_size, slot);
            (d, slot)
        })
}

fn words() -> impl Strategy<Value = [u64; 16]> {
    prop::array::uniform(prop_oneof![3 => 0u64..0x2_0000, 1 => any::<u64>()])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3_000, ..ProptestConfig::default() })]

    #[test]
    fn validate_accepts_exactly_what_the_spec_accepts((d, slot) in near_valid()) {
        let r = d.validate(slot);
        prop_assert_eq!(r.is_ok(), model_accepts(&d, slot), "{:?} in a slot of {}: {:?}", d, slot, r);
        if let Ok(l) = r {
            assert_usable(&d, slot, &l)?;
            // Frames of the test's sizes stay below ~2 MB; skip hostile pitches.
            if l.end() <= 1 << 23 {
                assert_packs(&l)?;
            }
        }
    }

    #[test]
    fn hostile_words_are_errors_never_panics(s in words(), slot in prop_oneof![0u64..0x4_0000, any::<u64>()]) {
        let d: StreamDesc = zerocopy::transmute!(s);
        let r = d.validate(slot);
        prop_assert_eq!(r.is_ok(), model_accepts(&d, slot));
        if let Ok(l) = r {
            assert_usable(&d, slot, &l)?;
        }
    }
}

#[test]
fn each_rule_has_its_error() {
    let d = StreamDesc::packed(64, 32, PixelFormat::Nv12, Codec::H264).unwrap();
    let fs = d.frame_size;
    let mut bad = d;
    bad.width = 0;
    assert_eq!(bad.validate(fs), Err(StreamError::BadDimensions(0, 32)));
    let mut bad = d;
    bad.pixel_format = 9;
    assert_eq!(bad.validate(fs), Err(StreamError::UnknownFormat(9)));
    assert_eq!(
        d.validate(fs - 1),
        Err(StreamError::FrameTooLarge {
            frame: fs,
            slot: fs - 1
        })
    );
    let mut bad = d;
    bad.plane_pitch[1] = 63;
    assert_eq!(
        bad.validate(fs),
        Err(StreamError::PitchTooSmall {
            plane: 1,
            pitch: 63,
            row: 64
        })
    );
    let mut bad = d;
    bad.plane_offset[0] = 1;
    assert_eq!(bad.validate(fs), Err(StreamError::PlaneOutOfBounds(1)));
    let mut bad = d;
    bad.frame_size -= 1;
    assert_eq!(bad.validate(fs), Err(StreamError::PlaneOutOfBounds(1)));
}
