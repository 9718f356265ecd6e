//! Generates the etcd client the raft-writes benchmark compares against (protox; no protoc).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    println!(
        "cargo:rerun-if-changed={}",
        root.join("etcd_kv.proto").display()
    );
    let fds = protox::compile(["etcd_kv.proto"], [&root])?;
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(fds)?;
    Ok(())
}
