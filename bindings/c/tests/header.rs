//! The committed C header is what cbindgen makes of the code: this test
//! regenerates it and fails on any difference. After changing the API,
//! bless the new header with
//!   CUFRAMES_BLESS_HEADER=1 cargo test -p cuframes-capi --test header
//! and commit it.

use std::path::Path;

#[test]
fn committed_header_matches_the_code() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("reading cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen could not parse the crate")
        .write(&mut generated);
    let generated = String::from_utf8(generated).expect("cbindgen writes UTF-8");
    let path = crate_dir.join("include/cuframes/cuframes.h");
    if std::env::var_os("CUFRAMES_BLESS_HEADER").is_some() {
        std::fs::write(&path, &generated).expect("writing the header");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or(
                committed.lines().count().min(generated.lines().count()),
                |i| i,
            )
            + 1;
        panic!(
            "{} differs from the code (first at line {line}); regenerate it with \
             CUFRAMES_BLESS_HEADER=1 cargo test -p cuframes-capi --test header",
            path.display()
        );
    }
}
