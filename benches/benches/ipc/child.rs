//! The child side: one subscriber of the peer under test, acking what it
//! receives on stdout (see `proc.rs`).
//!
//! What a child does with each item (the same for every peer):
//! - latency: nothing but stamp CLOCK_MONOTONIC when the receive call
//!   returns, then ack;
//! - frames: [`touch`] the frame (one byte of every 4 KiB page of both NV12
//!   planes, 760 pages), release it, ack;
//! - packets: [`touch`] the packet, ack every `CB_ACK_EVERY` packets or
//!   whenever the ring is found empty. The cuframes reader copies each
//!   packet once into one reused buffer (`next_packet_into`); with
//!   `CB_WAKE=block` it then sleeps on the ring's futex word instead of
//!   polling again.

use crate::proc::{env, env_u64, orphaned, AckWriter};
use crate::{Kind, ACK_EVERY, DIR, KIND, TARGET, WAKE};
use cuframes_core::packet::PacketView;
use cuframes_core::runtime::clock::monotonic_ns;
use cuframes_core::runtime::{
    PacketRecvError, RecvError, SubscribeOptions, Subscriber, WaitStrategy,
};
use cuframes_core::DeliveryMode;
use iceoryx2::prelude::*;
use std::hint::black_box;
use std::io::{ErrorKind, Read};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// One byte of every 4 KiB page, plus the last byte.
pub fn touch(b: &[u8]) -> u64 {
    let mut s = 0u64;
    let mut i = 0;
    while i < b.len() {
        s = s.wrapping_add(u64::from(b[i]));
        i += 4096;
    }
    s.wrapping_add(u64::from(*b.last().unwrap_or(&0)))
}

/// Runs the role named by `CUFRAMES_BENCH_ROLE`; never returns.
pub fn run(role: &str) -> ! {
    let kind = Kind::parse(&env(KIND));
    let wake = env(WAKE);
    let in_place = wake == "poll-in-place";
    let poll = wake == "poll" || in_place;
    let futex_only = wake == "futex-only";
    match role {
        "cuframes" => cuframes(kind, poll, futex_only, in_place),
        "iceoryx2" => iceoryx2(kind, poll),
        "socket" => socket(kind),
        r => panic!("unknown child role {r}"),
    }
    std::process::exit(0)
}

/// Packet-ack bookkeeping shared by the busy-polling packet readers.
struct PacketAcks {
    ack: AckWriter,
    every: u64,
    count: u64,
    acked: u64,
    misses: u64,
    parent: u32,
}

impl PacketAcks {
    fn new(ack: AckWriter) -> Self {
        PacketAcks {
            ack,
            every: env_u64(ACK_EVERY),
            count: 0,
            acked: 0,
            misses: 0,
            parent: std::os::unix::process::parent_id(),
        }
    }

    fn got(&mut self, data: &[u8]) {
        black_box(touch(data));
        self.count += 1;
        if self.count - self.acked >= self.every {
            self.flush();
        }
    }

    fn empty(&mut self) {
        if self.count > self.acked {
            self.flush();
        }
        self.misses += 1;
        if self.misses % (1 << 16) == 0 && orphaned(self.parent) {
            std::process::exit(0);
        }
        std::hint::spin_loop();
    }

    fn flush(&mut self) {
        self.ack.send(self.count, monotonic_ns());
        self.acked = self.count;
    }
}

fn cuframes(kind: Kind, poll: bool, futex_only: bool, in_place: bool) {
    let mut opts = SubscribeOptions::new(DeliveryMode::InOrder);
    if futex_only {
        opts.wait = WaitStrategy::FUTEX_ONLY;
    }
    opts.runtime_dir = Some(PathBuf::from(env(DIR)));
    if kind == Kind::Packets {
        opts.frames = false;
        opts.packets = true;
    }
    let sub = Subscriber::connect_host(&env(TARGET), opts).expect("cuframes subscribe");
    let mut ack = AckWriter::new();
    ack.send(0, 0);
    let parent = std::os::unix::process::parent_id();
    if kind == Kind::Packets {
        let mut acks = PacketAcks::new(ack);
        let mut buf = Vec::new();
        let mut wait = Duration::ZERO;
        if in_place {
            // The same page reads as `touch`, in the ring: no copy.
            let visit = |v: PacketView<'_>| {
                let mut s = 0u64;
                let mut i = 0;
                while i < v.len() {
                    s = s.wrapping_add(u64::from(v.byte(i).unwrap_or(0)));
                    i += 4096;
                }
                s.wrapping_add(u64::from(v.byte(v.len().wrapping_sub(1)).unwrap_or(0)))
            };
            loop {
                match sub.next_packet_with(Duration::ZERO, visit) {
                    Ok((m, sum)) => {
                        if m.skipped > 0 {
                            eprintln!("cuframes packet child: {} packets lost", m.skipped);
                        }
                        black_box(sum);
                        acks.got(&[]);
                    }
                    Err(PacketRecvError::Timeout(_)) => acks.empty(),
                    Err(PacketRecvError::Disconnected) => return,
                    Err(e) => panic!("next_packet_with: {e}"),
                }
            }
        }
        loop {
            match sub.next_packet_into(&mut buf, wait) {
                Ok(m) => {
                    if m.skipped > 0 {
                        eprintln!("cuframes packet child: {} packets lost", m.skipped);
                    }
                    acks.got(&buf);
                    wait = Duration::ZERO;
                }
                Err(PacketRecvError::Timeout(_)) => {
                    // Found empty: ack, then poll again or (blocking) sleep
                    // on the futex word until the next packet.
                    acks.empty();
                    if !poll {
                        wait = Duration::from_secs(1);
                    }
                }
                Err(PacketRecvError::Disconnected) => return,
                Err(e) => panic!("next_packet_into: {e}"),
            }
        }
    }
    let timeout = if poll {
        Duration::ZERO
    } else {
        Duration::from_secs(1)
    };
    let mut count = 0u64;
    let mut misses = 0u64;
    loop {
        match sub.next_frame(timeout) {
            Ok(f) => {
                let t = monotonic_ns();
                let pub_ns = f.meta().publish_ns;
                if f.skipped() > 0 {
                    eprintln!("cuframes frame child: {} frames lost", f.skipped());
                }
                if kind == Kind::Frames {
                    black_box(touch(f.plane(0).expect("Y").0));
                    black_box(touch(f.plane(1).expect("CbCr").0));
                }
                drop(f);
                count += 1;
                ack.send3(count, t, pub_ns);
            }
            Err(RecvError::Timeout(_)) => {
                misses += 1;
                if (!poll || misses % (1 << 16) == 0) && orphaned(parent) {
                    return;
                }
                if poll {
                    std::hint::spin_loop();
                }
            }
            Err(RecvError::Disconnected) => return,
            Err(e) => panic!("next_frame: {e}"),
        }
    }
}

fn iceoryx2(kind: Kind, poll: bool) {
    set_log_level(LogLevel::Error);
    let target = env(TARGET);
    let node = NodeBuilder::new()
        .create::<ipc::Service>()
        .expect("iceoryx2 node");
    let name: ServiceName = target.as_str().try_into().expect("service name");
    let svc = node
        .service_builder(&name)
        .publish_subscribe::<[u8]>()
        .open()
        .expect("iceoryx2 open service");
    let sub = svc
        .subscriber_builder()
        .create()
        .expect("iceoryx2 subscriber");
    let listener = if poll {
        None
    } else {
        let ev: ServiceName = format!("{target}/event")
            .as_str()
            .try_into()
            .expect("event name");
        let ev = node
            .service_builder(&ev)
            .event()
            .open()
            .expect("iceoryx2 open event");
        Some(ev.listener_builder().create().expect("iceoryx2 listener"))
    };
    let mut ack = AckWriter::new();
    ack.send(0, 0);
    let parent = std::os::unix::process::parent_id();
    if kind == Kind::Packets {
        let mut acks = PacketAcks::new(ack);
        loop {
            match sub.receive().expect("iceoryx2 receive") {
                Some(s) if s.payload().len() == 1 => return,
                Some(s) => acks.got(s.payload()),
                None => acks.empty(),
            }
        }
    }
    let mut count = 0u64;
    let mut misses = 0u64;
    loop {
        if let Some(l) = &listener {
            l.timed_wait(|_| {}, Duration::from_secs(1))
                .expect("iceoryx2 wait");
        }
        let mut got = false;
        while let Some(s) = sub.receive().expect("iceoryx2 receive") {
            let t = monotonic_ns();
            got = true;
            if s.payload().len() == 1 {
                return;
            }
            if kind == Kind::Frames {
                let (y, uv) = s.payload().split_at(crate::FRAME_W * crate::FRAME_H);
                black_box(touch(y));
                black_box(touch(uv));
            }
            drop(s);
            count += 1;
            ack.send(count, t);
        }
        if !got {
            misses += 1;
            if (!poll || misses % (1 << 16) == 0) && orphaned(parent) {
                return;
            }
            if poll {
                std::hint::spin_loop();
            }
        }
    }
}

fn socket(kind: Kind) {
    let mut s = UnixStream::connect(env(TARGET)).expect("connect to the bench socket");
    let mut ack = AckWriter::new();
    ack.send(0, 0);
    if kind == Kind::Packets {
        // Busy polling, like the other packet readers: non-blocking reads into
        // a buffer, messages `len: u32 LE, bytes` parsed out of it.
        s.set_nonblocking(true).expect("nonblocking");
        let mut acks = PacketAcks::new(ack);
        let mut buf = vec![0u8; 4 << 20];
        let (mut pos, mut filled) = (0usize, 0usize);
        loop {
            while filled - pos >= 4 {
                let len = u32::from_le_bytes(buf[pos..pos + 4].try_into().unwrap()) as usize;
                if filled - pos < 4 + len {
                    break;
                }
                acks.got(&buf[pos + 4..pos + 4 + len]);
                pos += 4 + len;
            }
            if pos > 0 {
                buf.copy_within(pos..filled, 0);
                filled -= pos;
                pos = 0;
            }
            match s.read(&mut buf[filled..]) {
                Ok(0) => return,
                Ok(n) => filled += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => acks.empty(),
                Err(e) => panic!("socket read: {e}"),
            }
        }
    }
    let mut buf = vec![0u8; crate::FRAME_SIZE];
    let mut count = 0u64;
    loop {
        let mut len = [0u8; 4];
        if s.read_exact(&mut len).is_err() {
            return;
        }
        let len = u32::from_le_bytes(len) as usize;
        s.read_exact(&mut buf[..len]).expect("socket payload");
        let t = monotonic_ns();
        if kind == Kind::Frames {
            let (y, uv) = buf[..len].split_at(crate::FRAME_W * crate::FRAME_H);
            black_box(touch(y));
            black_box(touch(uv));
        }
        count += 1;
        ack.send(count, t);
    }
}
