//! cuframes-subscribe: connect to a stream key, receive frames, report fps,
//! drops and publish-to-receive latency; write each frame's MD5
//! (`--framemd5`), the encoded packets (`--record`) or packed raw video
//! (`--rawvideo`). A thin shell over `cuframes_tools::subscribe`, whose
//! docs give the exit statuses.

use clap::Parser;
use cuframes_tools::subscribe::{self, Args};

fn main() {
    cuframes_tools::init_tracing("warn");
    if let Err(e) = subscribe::run(Args::parse()) {
        eprintln!(
            "cuframes-subscribe: error: {}",
            cuframes_tools::error_chain(e.as_ref())
        );
        std::process::exit(subscribe::exit_status(&e));
    }
}
