//! `cuframes-subscribe`: connect to a stream key, receive frames, report fps,
//! drops and publish-to-receive latency, optionally write each frame's MD5 in
//! FFmpeg's framemd5 format; with `--record`, write the encoded packets of a
//! publisher started with `--packets` to an MP4 or Matroska file without
//! re-encoding; with `--rawvideo`, write the frames as packed raw video for
//! stock FFmpeg (`-f rawvideo`, the options printed on stderr).
//!
//! Exit status: 0 on a clean end (the publisher's GOODBYE EndOfStream, or
//! its GOODBYE shutdown under --no-reconnect; --max-frames / --max-packets
//! reached; SIGINT / SIGTERM; the --rawvideo reader closing its pipe); 3 when the publisher died (its connection
//! closed without GOODBYE) and no reconnection followed (--no-reconnect), or
//! reconnecting gave up (--reconnect-give-up-secs); 1 on any other error; 2
//! on bad arguments.

mod args;
mod connect;
mod frames;
mod output;
mod packets;
mod read;
mod stats;

pub use args::Args;

use anyhow::Result;
use cuframes::{EndReason, Subscriber};
use frames::receive;

/// Runs `cuframes-subscribe` with these flags until the stream ends (see
/// the module docs for what ends it). An error's [`exit_status`] is the
/// tool's.
pub fn run(args: Args) -> Result<()> {
    let sub = connect::connect(&args)?;
    let read = read::reader(&args);
    receive(&args, sub, read)
}

/// The exit status for an error of [`run`]: 3 when the publisher went away
/// and is not waited for, else 1 (clap exits with 2 on bad arguments).
pub fn exit_status(e: &anyhow::Error) -> i32 {
    if e.downcast_ref::<PublisherGone>().is_some() {
        3
    } else {
        1
    }
}

/// The publisher went away before the end of its stream and is not waited
/// for: exit status 3.
#[derive(Debug)]
pub(crate) struct PublisherGone(String);

impl std::fmt::Display for PublisherGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PublisherGone {}

/// What ended the stream, for the summary line and the exit status.
pub(crate) fn ending(sub: &Subscriber, args: &Args) -> Result<&'static str> {
    let gave_up = if args.no_reconnect {
        ""
    } else {
        "; gave up reconnecting"
    };
    let why = match sub.end_reason() {
        Some(EndReason::EndOfStream) => return Ok("publisher ended the stream"),
        // A publisher stopped by a signal said GOODBYE: a clean end for a
        // subscriber that was told not to wait for the next one.
        Some(EndReason::Shutdown) if args.no_reconnect => {
            return Ok("the publisher shut down (GOODBYE shutdown)")
        }
        Some(EndReason::Shutdown) => "the publisher shut down before the end of its stream",
        Some(EndReason::Vanished) | None => {
            "the publisher vanished (its connection closed without GOODBYE: crashed or killed)"
        }
        Some(EndReason::Refused) => "the publisher sent ERROR and closed the connection",
        Some(EndReason::ProtocolError) => "the publisher broke the protocol",
    };
    Err(PublisherGone(format!("{why}{gave_up}")).into())
}
