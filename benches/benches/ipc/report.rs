//! Everything the cases measured (warm-up included), and the summary with
//! the ratios against the peers printed at the end of the run.

use crate::PEERS;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Default)]
struct Entry {
    /// One-way latencies, ns.
    samples: Vec<u64>,
    /// Throughput: items published, bytes each, subscribers, total time.
    items: u64,
    item_bytes: u64,
    subscribers: u64,
    time: Duration,
}

static STATS: Mutex<BTreeMap<String, Entry>> = Mutex::new(BTreeMap::new());

pub fn latency(id: &str, samples: &[u64]) {
    let mut m = STATS.lock().unwrap();
    m.entry(id.to_owned())
        .or_default()
        .samples
        .extend_from_slice(samples);
}

pub fn throughput(id: &str, items: u64, item_bytes: u64, subscribers: u64, t: Duration) {
    let mut m = STATS.lock().unwrap();
    let e = m.entry(id.to_owned()).or_default();
    e.items += items;
    e.item_bytes = item_bytes;
    e.subscribers = subscribers;
    e.time += t;
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1000.0)
}

fn ratio(a: f64, b: f64) -> String {
    if a > 0.0 && b > 0.0 {
        let r = a / b;
        if r < 0.01 {
            format!("{r:.1e}x")
        } else {
            format!("{r:.2}x")
        }
    } else {
        "-".to_owned()
    }
}

/// Prints the summary tables (only for the cases that ran).
pub fn print() {
    let m = STATS.lock().unwrap();
    if m.is_empty() {
        return;
    }
    println!();
    println!("=== cuframes host benches: summary (all iterations, warm-up included) ===");

    let mut lat = BTreeMap::new();
    for (id, e) in m.iter().filter(|(_, e)| !e.samples.is_empty()) {
        let mut s = e.samples.clone();
        s.sort_unstable();
        lat.insert(
            id.clone(),
            (pct(&s, 0.5), pct(&s, 0.99), pct(&s, 0.999), s.len()),
        );
    }
    if !lat.is_empty() {
        println!();
        println!("One-way publish-to-receive latency, 64-byte item, 1 subscriber (us):");
        println!(
            "{:<32} {:>8} {:>8} {:>8} {:>9}  {:>14} {:>14}",
            "case", "p50", "p99", "p99.9", "samples", "p50 / cuframes", "p99 / cuframes"
        );
        for (id, (p50, p99, p999, n)) in &lat {
            let base = if id.contains("/poll") {
                lat.get("cuframes/poll")
            } else {
                lat.get("cuframes/futex")
            };
            let (r50, r99) = base.map_or(("-".into(), "-".into()), |b| {
                (
                    ratio(*p50 as f64, b.0 as f64),
                    ratio(*p99 as f64, b.1 as f64),
                )
            });
            println!(
                "{id:<32} {:>8} {:>8} {:>8} {n:>9}  {r50:>14} {r99:>14}",
                us(*p50),
                us(*p99),
                us(*p999)
            );
        }
        let met = |ok: bool| if ok { "met" } else { "NOT met" };
        if let (Some(b), Some(p)) = (lat.get("cuframes/futex"), lat.get("cuframes/poll")) {
            let r = b.0 as f64 / p.0.max(1) as f64;
            println!(
                "Target: blocking (futex, default wait) p50 <= 1.5x poll p50: {} ({r:.2}x)",
                met(r <= 1.5)
            );
        }
        if let (Some(c), Some(i)) = (lat.get("cuframes/poll"), lat.get("iceoryx2/poll")) {
            let r = c.0 as f64 / i.0.max(1) as f64;
            println!(
                "Target: poll p50 <= 1.2x iceoryx2 poll p50: {} ({r:.2}x)",
                met(r <= 1.2)
            );
        }
        println!(
            "(blocking cases are compared with cuframes/futex, polling ones with cuframes/poll)"
        );
    }

    // Throughput: rows by case (what follows the peer name), columns by peer.
    let mut rows: BTreeMap<(String, u64), [Option<&Entry>; 3]> = BTreeMap::new();
    for (id, e) in m.iter().filter(|(_, e)| e.items > 0) {
        let Some((peer, case)) = id.split_once('/') else {
            continue;
        };
        let Some(col) = PEERS.iter().position(|p| p.name() == peer) else {
            continue;
        };
        rows.entry((case.to_owned(), e.item_bytes * 1000 + e.subscribers))
            .or_default()[col] = Some(e);
    }
    let per_sub =
        |e: Option<&&Entry>| e.map_or(0.0, |e| e.items as f64 / e.time.as_secs_f64().max(1e-9));
    let frames: Vec<_> = rows
        .iter()
        .filter(|((_, _), v)| {
            v.iter()
                .flatten()
                .any(|e| e.item_bytes == crate::FRAME_SIZE as u64)
        })
        .collect();
    if !frames.is_empty() {
        println!();
        println!("1080p NV12 frames (3,110,400 B), lossless; frames/s per subscriber (aggregate = x subscribers):");
        println!(
            "{:<6} {:>10} {:>10} {:>12} {:>12} {:>16} {:>16}",
            "subs",
            "cuframes",
            "iceoryx2",
            "unix-socket",
            "cf aggregate",
            "cf / iceoryx2",
            "cf / socket"
        );
        let mut fr: Vec<_> = frames.into_iter().collect();
        fr.sort_by_key(|((c, _), _)| c.parse::<u64>().unwrap_or(0));
        for ((case, _), v) in fr {
            let [c, i, s] = [
                per_sub(v[0].as_ref()),
                per_sub(v[1].as_ref()),
                per_sub(v[2].as_ref()),
            ];
            let n: f64 = case.parse().unwrap_or(1.0);
            let f = |r: f64| {
                if r > 0.0 {
                    format!("{r:.0}")
                } else {
                    "-".to_owned()
                }
            };
            println!(
                "{case:<6} {:>10} {:>10} {:>12} {:>12} {:>16} {:>16}",
                f(c),
                f(i),
                f(s),
                f(c * n),
                ratio(c, i),
                ratio(c, s)
            );
        }
    }
    let pk: Vec<_> = rows
        .iter()
        .filter(|((_, _), v)| {
            v.iter()
                .flatten()
                .all(|e| e.item_bytes != crate::FRAME_SIZE as u64)
        })
        .collect();
    if !pk.is_empty() {
        println!();
        println!("Packets, 1 subscriber, lossless (credit window); MB/s (packets/s):");
        println!("(busy-polling readers; cuframes copies each packet out once; cuframes-block: the same reader sleeping on the futex word; cuframes-view: reads in place, no copy, as iceoryx2's reader)");
        println!(
            "{:<6} {:>22} {:>22} {:>22} {:>22} {:>22} {:>14} {:>12} {:>16} {:>15}",
            "size",
            "cuframes",
            "iceoryx2",
            "unix-socket",
            crate::PACKETS_BLOCKING,
            crate::PACKETS_VIEW,
            "cf / iceoryx2",
            "cf / socket",
            "block / iceoryx2",
            "view / iceoryx2"
        );
        let mut pk = pk;
        pk.sort_by_key(|((_, k), _)| *k);
        for ((case, _), v) in pk {
            let rate = |e: Option<&&Entry>| per_sub(e);
            let bytes = v.iter().flatten().next().map_or(0, |e| e.item_bytes) as f64;
            let cell = |r: f64| {
                if r > 0.0 {
                    format!("{:.0} ({:.0})", r * bytes / 1e6, r)
                } else {
                    "-".to_owned()
                }
            };
            let [c, i, s] = [
                rate(v[0].as_ref()),
                rate(v[1].as_ref()),
                rate(v[2].as_ref()),
            ];
            let blocking = m.get(&format!("{}/{case}", crate::PACKETS_BLOCKING));
            let k = rate(blocking.as_ref());
            let view = m.get(&format!("{}/{case}", crate::PACKETS_VIEW));
            let w = rate(view.as_ref());
            println!(
                "{case:<6} {:>22} {:>22} {:>22} {:>22} {:>22} {:>14} {:>12} {:>16} {:>15}",
                cell(c),
                cell(i),
                cell(s),
                cell(k),
                cell(w),
                ratio(c, i),
                ratio(c, s),
                ratio(k, i),
                ratio(w, i)
            );
        }
    }
    println!();
}
