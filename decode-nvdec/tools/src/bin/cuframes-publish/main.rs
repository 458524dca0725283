//! cuframes-publish: decode video inputs once — files or RTSP cameras, one
//! from flags or many from a TOML file — and share every frame (and, with
//! `packets`, every encoded packet) with any number of subscriber processes.
//! A thin shell over `cuframes_tools::publish` (and under it,
//! `cuframes_service`).

use clap::Parser;
use cuframes_tools::publish::{self, Args};

fn main() {
    cuframes_tools::init_tracing("info");
    if let Err(e) = publish::run(Args::parse()) {
        eprintln!(
            "cuframes-publish: error: {}",
            cuframes_tools::error_chain(e.as_ref())
        );
        std::process::exit(1);
    }
}
