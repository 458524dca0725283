//! cuframes-tools: the library under the `cuframes-publish`,
//! `cuframes-subscribe` and `cuframes-gpu-bench` binaries, so that each
//! binary is a thin shell (flags in, exit status out) and what it does can
//! be reused by a Rust application.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod publish;
pub mod subscribe;

/// Logs to stderr, filtered by `RUST_LOG` (default: `default_filter`, e.g.
/// `"info"`), as every tool does.
pub fn init_tracing(default_filter: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log file or pipe gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// `e` and its sources joined by `": "`, like anyhow's `{:#}`, but without
/// a source whose text an outer error already printed (thiserror errors
/// that show `{source}` in their own text would otherwise print an OS error
/// twice: `cannot open x: No such file (os error 2): No such file (os error 2)`).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("cannot open {path}: {source}")]
    struct Shows {
        path: &'static str,
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("while starting")]
    struct Outer(#[source] Shows);

    #[test]
    fn error_chain_prints_an_os_error_once() {
        let inner = || Shows {
            path: "x.mp4",
            source: std::io::Error::from_raw_os_error(2),
        };
        let once = super::error_chain(&inner());
        assert_eq!(once.matches("os error 2").count(), 1, "{once}");
        let outer = super::error_chain(&Outer(inner()));
        assert!(
            outer.starts_with("while starting: cannot open x.mp4"),
            "{outer}"
        );
        assert_eq!(outer.matches("os error 2").count(), 1, "{outer}");
        // anyhow's {:#} would have printed it twice.
        let any = format!("{:#}", anyhow::Error::new(inner()));
        assert_eq!(any.matches("os error 2").count(), 2, "{any}");
    }
}
