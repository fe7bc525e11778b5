//! Compiles the public proto into Rust with a vendored protoc, so no system package is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY of intent: build scripts run single-threaded before any other code reads the env.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        // Undecodable requests are the caller's fault: INVALID_ARGUMENT, not tonic-prost's INTERNAL.
        .codec_path("crate::api::codec::ProtoCodec")
        .file_descriptor_set_path(out_dir.join("sessiond_descriptor.bin"))
        .compile_protos(&["proto/sessiond/v1/session.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
