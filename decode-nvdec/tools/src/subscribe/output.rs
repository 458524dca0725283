//! Where received frames go: `--framemd5` (FFmpeg's framemd5 format, the
//! MD5 of each packed frame) and `--rawvideo` (packed raw video for stock
//! FFmpeg).

use super::args::RawFormatArg;
use anyhow::{Context, Result};
use cuframes::Subscriber;
use cuframes_media::rawvideo::Geometry;
use cuframes_media::{RawFormat, RawVideoError, RawVideoWriter};
use md5::{Digest, Md5};
use std::io::Write;
use std::path::{Path, PathBuf};

/// `--framemd5`: FFmpeg's framemd5 format (`ffmpeg -f framemd5 -pix_fmt
/// nv12`), one line per frame with the MD5 of its packed bytes.
pub(crate) struct Md5Writer {
    out: Box<dyn Write>,
}

impl Md5Writer {
    pub(crate) fn create(path: &PathBuf, sub: &Subscriber) -> Result<Self> {
        let mut out: Box<dyn Write> = if path.as_os_str() == "-" {
            Box::new(std::io::stdout().lock())
        } else {
            Box::new(std::io::BufWriter::new(
                std::fs::File::create(path)
                    .with_context(|| format!("cannot create {}", path.display()))?,
            ))
        };
        let s = sub.stream();
        let (num, den) = if s.fps_num > 0 && s.fps_den > 0 {
            (s.fps_num, s.fps_den)
        } else {
            (25, 1)
        };
        write!(
            out,
            "#format: frame checksums\n#version: 2\n#hash: MD5\n#tb 0: {den}/{num}\n#media_type 0: video\n\
             #codec_id 0: rawvideo\n#dimensions 0: {}x{}\n#sar 0: 1/1\n#stream#, dts,        pts, duration,     size, hash\n",
            s.width, s.height
        )?;
        Ok(Md5Writer { out })
    }

    /// One frame's line: its index in the source and the MD5 of `packed`.
    pub(crate) fn frame(&mut self, index: u64, packed: &[u8]) -> Result<()> {
        let mut h = Md5::new();
        h.update(packed);
        let (size, hash) = (packed.len(), hex(h));
        writeln!(
            self.out,
            "0, {index:>10}, {index:>10}, {:>8}, {size:>8}, {hash}",
            1
        )?;
        Ok(())
    }

    /// Flushes what is buffered.
    pub(crate) fn finish(mut self) -> Result<()> {
        self.out.flush()?;
        Ok(())
    }
}

fn hex(h: Md5) -> String {
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// --rawvideo: the writer, opened at the first frame (its geometry).
pub(crate) struct RawOutput {
    path: PathBuf,
    format: RawFormat,
    writer: Option<RawVideoWriter<Box<dyn Write>>>,
}

impl RawOutput {
    pub(crate) fn new(path: &Path, format: RawFormatArg) -> Self {
        RawOutput {
            path: path.to_path_buf(),
            format: match format {
                RawFormatArg::Published => RawFormat::Published,
                RawFormatArg::Yuv420p => RawFormat::Yuv420p,
            },
            writer: None,
        }
    }

    /// Writes one packed frame; `false` once the reader closed the pipe.
    pub(crate) fn write(
        &mut self,
        name: &str,
        g: Geometry,
        packed: &[u8],
        stream: cuframes::StreamDesc,
    ) -> Result<bool> {
        if self.writer.is_none() {
            let out: Box<dyn Write> = if self.path.as_os_str() == "-" {
                Box::new(std::io::BufWriter::new(std::io::stdout().lock()))
            } else {
                Box::new(std::io::BufWriter::new(
                    std::fs::File::create(&self.path)
                        .with_context(|| format!("creating {}", self.path.display()))?,
                ))
            };
            let w = RawVideoWriter::new(out, g, self.format)?;
            let fps = (stream.fps_num > 0 && stream.fps_den > 0)
                .then_some((stream.fps_num, stream.fps_den));
            eprintln!(
                "{name}: raw video to {}: read it with ffmpeg {} -i {}",
                self.path.display(),
                w.ffmpeg_input_args(fps),
                if self.path.as_os_str() == "-" {
                    "pipe:".to_string()
                } else {
                    self.path.display().to_string()
                }
            );
            self.writer = Some(w);
        }
        let Some(w) = self.writer.as_mut() else {
            return Ok(false);
        };
        match w.write_frame(g, packed) {
            Ok(()) => Ok(true),
            Err(RawVideoError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) fn finish(self, name: &str) -> Result<()> {
        if let Some(w) = self.writer {
            let n = w.frames();
            match w.finish() {
                Ok(_) => {}
                Err(RawVideoError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                Err(e) => return Err(e.into()),
            }
            eprintln!("{name}: wrote {n} raw video frames");
        }
        Ok(())
    }
}
