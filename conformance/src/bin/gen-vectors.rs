//! Writes the golden vectors into `conformance/vectors/` (or the directory
//! given as the only argument). `cargo test -p cuframes-conformance` fails
//! until the files match what the code emits.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors"));
    std::fs::create_dir_all(&dir)?;
    for v in cuframes_conformance::vectors::all() {
        let path = dir.join(format!("{}.hex", v.name));
        std::fs::write(&path, v.render())?;
        println!("{}", path.display());
    }
    Ok(())
}
