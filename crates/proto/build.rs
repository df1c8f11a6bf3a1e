//! Compiles `proto/` with protox (no `protoc` needed) and generates prost + tonic code.

use std::path::PathBuf;

use prost::Message;

const FILES: &[&str] = &[
    "dvk/common/v1/common.proto",
    "dvk/events/v1/events.proto",
    "dvk/registration/v1/registration.proto",
    "dvk/reporting/v1/reporting.proto",
    "dvk/aggregation/v1/aggregation.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    let fds = protox::compile(FILES, [&root])?;
    std::fs::write(out_dir.join("dvk_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(fds)?;
    Ok(())
}
