//! `docs/protocol.md` is normative; this test keeps its tables true to the
//! code. It parses the Markdown tables of §3.2–§3.6, §4.2–§4.4, §9.2 and checks
//! every row against the implementation: layout field names, offsets and
//! sizes (`offset_of!`, and the field list must cover the whole struct);
//! message payload offsets (found by changing one field and seeing which
//! bytes of the encoding change); type, error, memory-kind and sync-kind
//! codes.

use cuframes_core::layout::{ControlHeader, LeaseRow, SlotDesc, StreamDesc};
use cuframes_core::wire::{
    ErrorCode, ErrorMsg, GoodbyeReason, Hello, Message, MessageType, Name, Welcome,
};
use cuframes_core::{DeliveryMode, MemoryKind, SyncKind, Version};
use std::collections::BTreeMap;
use std::mem::{offset_of, size_of};

fn doc() -> String {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md");
    std::fs::read_to_string(p).expect("docs/protocol.md")
}

type Row = BTreeMap<String, String>;

/// The first table after the line starting with `marker`, as rows keyed by
/// header cell. Cells lose backticks; `\|` is a literal bar.
fn table_after(doc: &str, marker: &str) -> Vec<Row> {
    let mut lines = doc
        .lines()
        .skip_while(|l| !l.trim_start().starts_with(marker));
    assert!(lines.next().is_some(), "no `{marker}` in docs/protocol.md");
    let mut table = lines
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'));
    let split = |l: &str| -> Vec<String> {
        let l = l.replace("\\|", "\u{1}");
        l.trim()
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().replace('`', "").replace('\u{1}', "|"))
            .collect()
    };
    let header = split(table.next().expect("table header"));
    table.next(); // |---|
    table
        .map(|l| header.iter().cloned().zip(split(l)).collect())
        .collect()
}

fn field_size<T, F>(_: fn(&T) -> &F) -> usize {
    size_of::<F>()
}

macro_rules! fields {
    ($t:ty: $($f:ident),* $(,)?) => {{
        let v: Vec<(&str, usize, usize)> =
            vec![$((stringify!($f), offset_of!($t, $f), field_size::<$t, _>(|s| &s.$f))),*];
        assert_eq!(
            v.iter().map(|f| f.2).sum::<usize>(),
            size_of::<$t>(),
            "field list of {} does not cover the struct",
            stringify!($t)
        );
        v
    }};
}

/// `(name, offset, size)` rows of a layout table, `name[n]` as `name`.
fn doc_fields(rows: &[Row]) -> Vec<(String, usize, usize)> {
    rows.iter()
        .map(|r| {
            let name = r["Field"].split('[').next().unwrap().to_string();
            let num = |k: &str| {
                r[k].parse::<usize>()
                    .unwrap_or_else(|_| panic!("{k} of {name}"))
            };
            let (off, size) = (num("Offset"), num("Size"));
            (name, off, size)
        })
        .collect()
}

/// The table after `marker` lists exactly `code`'s `(field, offset, size)`.
fn assert_fields(
    marker: &str,
    documented: Vec<(String, usize, usize)>,
    code: Vec<(&str, usize, usize)>,
) {
    let code: Vec<(String, usize, usize)> = code
        .into_iter()
        .map(|(n, o, s)| (n.to_string(), o, s))
        .collect();
    assert_eq!(
        documented, code,
        "{marker}: table rows (field, offset, size) vs code"
    );
}

fn check_layout(marker: &str, code: Vec<(&str, usize, usize)>) -> Vec<Row> {
    let rows = table_after(&doc(), marker);
    assert_fields(marker, doc_fields(&rows), code);
    rows
}

#[test]
fn layout_tables_match_the_structs() {
    check_layout(
        "### §3.2",
        fields!(ControlHeader: magic, version, header_size, region_size, stream_offset,
            slot_table_offset, slot_count, slot_stride, slot_size, memory_kind, sync_kind,
            publisher_state, latest_seq, wake, release_wake, frames_published, frames_dropped,
            gpu_uuid, reserved),
    );
    let rows = check_layout(
        "### §3.3",
        fields!(StreamDesc: generation, width, height, pixel_format, codec, frame_size,
            plane_offset, plane_pitch, fps_num, fps_den, colour, reserved),
    );
    for r in &rows {
        let off: usize = r["Offset"].parse().unwrap();
        let region: usize = r["Region offset"].parse().unwrap();
        assert_eq!(
            region,
            size_of::<ControlHeader>() + off,
            "§3.3 region offset of {}",
            r["Field"]
        );
    }
    check_layout(
        "### §3.4",
        fields!(SlotDesc: seq, pts_ns, publish_ns, flags, generation, source_index, reserved),
    );
    check_layout(
        "### §3.5",
        fields!(LeaseRow: magic, leases, consumed_seq, reserved),
    );
}

/// `(name, offset, size)` of a §9.2 table with hexadecimal offsets: the
/// rows with a numeric offset and size (the struct's fields), and the names
/// of the other rows (areas placed or sized by the geometry).
fn hex_fields(rows: &[Row]) -> (Vec<(String, usize, usize)>, Vec<String>) {
    let (mut fixed, mut areas) = (Vec::new(), Vec::new());
    for r in rows {
        let name = r["Field"].clone();
        let off = r["Offset"]
            .strip_prefix("0x")
            .and_then(|h| usize::from_str_radix(h, 16).ok());
        match (off, r["Size"].parse::<usize>()) {
            (Some(off), Ok(size)) => fixed.push((name, off, size)),
            _ => areas.push(name),
        }
    }
    (fixed, areas)
}

fn check_hex_layout(marker: &str, code: Vec<(&str, usize, usize)>, areas: &[&str]) {
    let rows = table_after(&doc(), marker);
    let (documented, other) = hex_fields(&rows);
    assert_fields(marker, documented, code);
    assert_eq!(other, areas, "{marker}: rows after the fixed fields");
}

#[test]
fn packet_tables_match_the_structs() {
    use cuframes_core::packet::{PacketHeader, PacketSlot, PacketTail};
    check_hex_layout(
        "Header (0x1040 bytes at offset 0",
        fields!(PacketHeader: magic, proto_version, ring_slots, data_size, codec_id,
            codec_extradata_size, producer_pid, global_seq, last_keyframe_seq, write_offset,
            shutdown_flag, codec_extradata),
        &["slots[N]", "data", "tail"],
    );
    check_hex_layout(
        "Slot (64 bytes;",
        fields!(PacketSlot: seq, pts_ns, dts_ns, data_offset, data_size, flags, reserved),
        &[],
    );
    check_hex_layout(
        "Tail (64 bytes, layout 3 only",
        fields!(PacketTail: wake, reserved),
        &[],
    );
}

/// Payload byte range that changes between two encodings of one type.
fn changed(a: Message<'_>, b: Message<'_>, fixed: usize) -> (usize, usize) {
    let enc = |m: Message<'_>| {
        let mut v = vec![0u8; m.buffer_len()];
        let n = m.emit(&mut v).unwrap();
        v.truncate(n);
        v.split_off(8)
    };
    let (x, y) = (enc(a), enc(b));
    let diff: Vec<usize> = (0..fixed).filter(|&i| x[i] != y[i]).collect();
    assert!(!diff.is_empty(), "no byte changed");
    (diff[0], *diff.last().unwrap() + 1)
}

fn check_message(marker: &str, fixed: usize, probes: Vec<(&str, (usize, usize))>) {
    let rows = table_after(&doc(), marker);
    let mut documented = BTreeMap::new();
    for r in &rows {
        if let (Ok(off), Ok(size)) = (r["Offset"].parse::<usize>(), r["Size"].parse::<usize>()) {
            documented.insert(r["Field"].clone(), (off, size));
        }
    }
    // Fixed fields documented = probed fields + reserved, covering `fixed` bytes.
    assert_eq!(
        documented.values().map(|v| v.1).sum::<usize>(),
        fixed,
        "{marker}: fixed part"
    );
    for (field, (start, end)) in probes {
        let (off, size) = documented
            .get(field)
            .unwrap_or_else(|| panic!("{marker}: no row for `{field}`"));
        assert!(
            *off == start && end <= off + size,
            "{marker}: `{field}` documented at {off}+{size}, code writes {start}..{end}"
        );
    }
    assert_eq!(
        documented.len(),
        rows.iter()
            .filter(|r| r["Offset"].parse::<usize>().is_ok() && r["Size"].parse::<usize>().is_ok())
            .count()
    );
}

#[test]
fn message_tables_match_the_encoder() {
    let v = |w: u32| Version::from_wire(w);
    let h = Hello {
        version_min: v(0),
        version_max: v(0),
        flags: 0,
        mode: DeliveryMode::Unknown(0),
        gpu_uuid: [0; 16],
        name: Name::new("ab").unwrap(),
    };
    let m = Message::Hello;
    check_message(
        "**HELLO**",
        36,
        vec![
            (
                "version_min",
                changed(
                    m(h),
                    m(Hello {
                        version_min: v(!0),
                        ..h
                    }),
                    36,
                ),
            ),
            (
                "version_max",
                changed(
                    m(h),
                    m(Hello {
                        version_max: v(!0),
                        ..h
                    }),
                    36,
                ),
            ),
            ("flags", changed(m(h), m(Hello { flags: !0, ..h }), 36)),
            (
                "mode",
                changed(
                    m(h),
                    m(Hello {
                        mode: DeliveryMode::Unknown(!0),
                        ..h
                    }),
                    36,
                ),
            ),
            (
                "gpu_uuid",
                changed(
                    m(h),
                    m(Hello {
                        gpu_uuid: [0xFF; 16],
                        ..h
                    }),
                    36,
                ),
            ),
            (
                "name_len",
                changed(
                    m(h),
                    m(Hello {
                        name: Name::new("abc").unwrap(),
                        ..h
                    }),
                    36,
                ),
            ),
        ],
    );
    let w = Welcome {
        version: v(0),
        subscriber_id: 0,
        memory_kind: MemoryKind::Unknown(0),
        sync_kind: SyncKind::Unknown(0),
        slot_count: 2,
        flags: 0,
        control_size: 0,
        slot_size: 0,
        start_seq: 0,
        handle_len: 0,
        handles: &[],
        packet_region_size: 0,
    };
    let m = Message::Welcome;
    let handles = [0u8; 2];
    check_message(
        "**WELCOME**",
        56,
        vec![
            (
                "version",
                changed(
                    m(w),
                    m(Welcome {
                        version: v(!0),
                        ..w
                    }),
                    56,
                ),
            ),
            (
                "subscriber_id",
                changed(
                    m(w),
                    m(Welcome {
                        subscriber_id: !0,
                        ..w
                    }),
                    56,
                ),
            ),
            (
                "memory_kind",
                changed(
                    m(w),
                    m(Welcome {
                        memory_kind: MemoryKind::Unknown(!0),
                        ..w
                    }),
                    56,
                ),
            ),
            (
                "sync_kind",
                changed(
                    m(w),
                    m(Welcome {
                        sync_kind: SyncKind::Unknown(!0),
                        ..w
                    }),
                    56,
                ),
            ),
            (
                "slot_count",
                changed(
                    m(w),
                    m(Welcome {
                        slot_count: 64,
                        ..w
                    }),
                    56,
                ),
            ),
            ("flags", changed(m(w), m(Welcome { flags: !0, ..w }), 56)),
            (
                "control_size",
                changed(
                    m(w),
                    m(Welcome {
                        control_size: !0,
                        ..w
                    }),
                    56,
                ),
            ),
            (
                "slot_size",
                changed(m(w), m(Welcome { slot_size: !0, ..w }), 56),
            ),
            (
                "start_seq",
                changed(m(w), m(Welcome { start_seq: !0, ..w }), 56),
            ),
            (
                "handle_len",
                changed(
                    m(w),
                    m(Welcome {
                        handle_len: 1,
                        handles: &handles,
                        ..w
                    }),
                    56,
                ),
            ),
        ],
    );
    let e = ErrorMsg {
        code: ErrorCode::Unknown(0),
        text: "",
    };
    let m = Message::Error;
    check_message(
        "**ERROR**",
        8,
        vec![
            (
                "code",
                changed(
                    m(e),
                    m(ErrorMsg {
                        code: ErrorCode::Unknown(!0),
                        ..e
                    }),
                    8,
                ),
            ),
            ("text_len", changed(m(e), m(ErrorMsg { text: "x", ..e }), 8)),
        ],
    );
}

#[test]
fn code_tables_match_the_enums() {
    let doc = doc();
    let code_of = |r: &Row| r["Code"].parse::<u32>().ok();
    // §4.2: `Name` is the Debug name in upper snake case.
    let mut n = 0;
    for r in table_after(&doc, "### §4.2") {
        let Some(c) = code_of(&r) else { continue };
        let name = format!("{:?}", MessageType::from_code(c));
        let snake: String = name
            .chars()
            .enumerate()
            .flat_map(|(i, ch)| {
                let sep = (i > 0 && ch.is_uppercase()).then_some('_');
                sep.into_iter().chain(ch.to_uppercase())
            })
            .collect();
        assert_eq!(r["Name"], snake, "§4.2 code {c}");
        n += 1;
    }
    assert_eq!(n, 8, "§4.2 lists every message type");
    let mut n = 0;
    for r in table_after(&doc, "### §4.4") {
        let Some(c) = code_of(&r) else { continue };
        assert_eq!(
            r["Name"],
            format!("{:?}", ErrorCode::from_code(c)),
            "§4.4 code {c}"
        );
        n += 1;
    }
    assert_eq!(n, 7, "§4.4 lists every error code");
    for r in table_after(&doc, "`memory_kind` (header offset 72") {
        let c = code_of(&r).unwrap();
        let kind = format!("{:?}", MemoryKind::from_code(c));
        assert!(
            r["Kind"].starts_with(&format!("{kind}:")),
            "§3.6 memory kind {c}: {}",
            r["Kind"]
        );
    }
    for r in table_after(&doc, "`sync_kind` (header offset 80") {
        let c = code_of(&r).unwrap();
        let kind = format!("{:?}", SyncKind::from_code(c));
        assert!(
            r["Kind"].starts_with(&format!("{kind}:")),
            "§3.6 sync kind {c}: {}",
            r["Kind"]
        );
    }
    // Eight-byte payloads: `NAME (code)` per row.
    let mut n = 0;
    for r in table_after(&doc, "**Eight-byte payloads:**") {
        let (name, code) = r["Type"].split_once(" (").unwrap();
        let code: u32 = code.trim_end_matches(')').parse().unwrap();
        assert_eq!(MessageType::from_code(code).code(), code);
        assert!(
            !matches!(MessageType::from_code(code), MessageType::Unknown(_)),
            "{name}"
        );
        let mut b = [0u8; 16];
        let msg = match MessageType::from_code(code) {
            MessageType::Goodbye => Message::Goodbye(GoodbyeReason::Unknown(!0)),
            t => Message::parse(t, &[0xFF; 8]).unwrap(),
        };
        assert_eq!(msg.emit(&mut b).unwrap(), 16, "{name}: 8-byte payload");
        n += 1;
    }
    assert_eq!(n, 5);
}
