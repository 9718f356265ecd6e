//! Generates the gRPC code from `proto/` with protox (pure Rust; no protoc needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "swarm/v1/objects.proto",
        "swarm/v1/control.proto",
        "swarm/v1/dispatcher.proto",
        "swarm/v1/ca.proto",
        "swarm/v1/raft.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    let fds = protox::compile(files, [&root])?;
    // Messages that carry a secret or the unlock key get a hand-written `Debug` (src/redact.rs)
    // that shows lengths only, so no `{:?}` can log them.
    tonic_prost_build::configure()
        .skip_debug([
            "swarm.v1.SecretSpec",
            "swarm.v1.GetUnlockKeyResponse",
            "swarm.v1.UnlockNodeRequest",
        ])
        .compile_fds(fds)?;
    Ok(())
}
