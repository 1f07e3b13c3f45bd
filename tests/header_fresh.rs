// SPDX-License-Identifier: MIT OR Apache-2.0
//! include/libuffd.h must be exactly what cbindgen generates from src/ffi.
//! `LIBUFFD_BLESS=1 cargo test --test header_fresh` (or `make header`)
//! rewrites it.

use std::path::Path;

#[test]
fn header_is_fresh() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config =
        cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("read cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src/ffi/mod.rs"))
        .generate()
        .expect("cbindgen failed");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let path = root.join("include/libuffd.h");
    if std::env::var_os("LIBUFFD_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write include/libuffd.h");
        return;
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/libuffd.h is stale: run `make header` and commit the result"
    );
}
