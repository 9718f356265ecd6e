//! Builds the guest components in `plugins/` for wasm32-wasip2 and generates a constant per guest.
//!
//! The nested cargo gets a target dir of its own under OUT_DIR (sharing the outer one deadlocks
//! on cargo's artifact lock) and none of the flags cargo passes to build scripts for the host.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// (package, constant name, file name produced by cargo, what it is).
const GUESTS: &[(&str, &str, &str, &str)] = &[
    (
        "scheduler",
        "SCHEDULER",
        "scheduler.wasm",
        "The default scheduler (SwarmKit's filters and spread).",
    ),
    (
        "executor-default",
        "EXECUTOR_DEFAULT",
        "executor_default.wasm",
        "The default executor: runtimes `process` and `wasi`.",
    ),
    (
        "discovery-nodes",
        "DISCOVERY_NODES",
        "discovery_nodes.wasm",
        "The `nodes://` discovery backend: a static list of `host:port` entries.",
    ),
    (
        "example-executor",
        "EXAMPLE_EXECUTOR",
        "example_executor.wasm",
        "The plugin guide's example executor (runtime `process`), written with the SDK.",
    ),
    (
        "example-scheduler",
        "EXAMPLE_SCHEDULER",
        "example_scheduler.wasm",
        "The plugin guide's example scheduler (fewest tasks first), written with the SDK.",
    ),
    (
        "example-discovery",
        "EXAMPLE_DISCOVERY",
        "example_discovery.wasm",
        "The plugin guide's example discovery backend (`example://`), written with the SDK.",
    ),
    (
        "executor-docker",
        "EXECUTOR_DOCKER",
        "executor_docker.wasm",
        "The docker executor: runtime `container`, through the host's `docker` capability.",
    ),
    (
        "sample-task",
        "SAMPLE_TASK",
        "sample-task.wasm",
        "A WASI command used as a `wasi` task in demos and tests.",
    ),
    (
        "test-trap",
        "TEST_TRAP",
        "test_trap.wasm",
        "Test guest (scheduler and executor) whose every call traps.",
    ),
    (
        "test-spin",
        "TEST_SPIN",
        "test_spin.wasm",
        "Test guest (scheduler and executor) whose every call loops forever.",
    ),
    (
        "test-membomb",
        "TEST_MEMBOMB",
        "test_membomb.wasm",
        "Test guest (scheduler and executor) whose every call allocates without bound.",
    ),
    (
        "test-wrong-world",
        "TEST_WRONG_WORLD",
        "test_wrong_world.wasm",
        "Test guest exporting an interface that is neither executor nor scheduler.",
    ),
    (
        "test-old-version",
        "TEST_OLD_VERSION",
        "test_old_version.wasm",
        "Test guest built against swarm:plugin@0.1.0, which this host refuses.",
    ),
    (
        "test-flaky-scheduler",
        "TEST_FLAKY_SCHEDULER",
        "test_flaky_scheduler.wasm",
        "Test scheduler that takes the node set but traps in every `schedule`.",
    ),
];

fn main() {
    if let Err(message) = run() {
        println!("cargo::error={message}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let root = manifest_dir
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot find the repository root")?;
    let plugins = root.join("plugins");
    let out_dir = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);
    let target_dir = out_dir.join("plugins-target");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());

    println!("cargo::rerun-if-changed={}", root.join("wit").display());
    println!(
        "cargo::rerun-if-changed={}",
        plugins.join("Cargo.toml").display()
    );
    println!(
        "cargo::rerun-if-changed={}",
        plugins.join("Cargo.lock").display()
    );
    // Packages sit in plugins/ and in plugins/examples/.
    for dir in [plugins.clone(), plugins.join("examples")] {
        for entry in
            std::fs::read_dir(&dir).map_err(|e| format!("reading {}: {e}", dir.display()))?
        {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.join("Cargo.toml").is_file() {
                println!(
                    "cargo::rerun-if-changed={}",
                    path.join("Cargo.toml").display()
                );
                println!("cargo::rerun-if-changed={}", path.join("src").display());
            }
        }
    }

    let mut command = Command::new(&cargo);
    command
        .current_dir(&plugins)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .env("CARGO_TARGET_DIR", &target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_PROFILE_RELEASE_DEBUG");
    for (package, ..) in GUESTS {
        command.args(["-p", package]);
    }
    let status = command
        .status()
        .map_err(|e| format!("running {cargo} for plugins/: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building plugins/ for wasm32-wasip2 failed: {status}"
        ));
    }

    let built = target_dir.join("wasm32-wasip2").join("release");
    let mut generated = String::new();
    for (_, constant, file, doc) in GUESTS {
        let path = built.join(file);
        if !path.is_file() {
            return Err(format!(
                "the plugins build did not produce {}",
                path.display()
            ));
        }
        let path = path.display().to_string();
        writeln!(generated, "/// {doc}").map_err(|e| e.to_string())?;
        writeln!(
            generated,
            "pub const {constant}: &[u8] = include_bytes!({path:?});"
        )
        .map_err(|e| e.to_string())?;
        writeln!(generated, "/// Path of the file behind [`{constant}`].")
            .map_err(|e| e.to_string())?;
        writeln!(generated, "pub const {constant}_PATH: &str = {path:?};")
            .map_err(|e| e.to_string())?;
    }
    writeln!(
        generated,
        "/// Every guest, by constant name, for tests that check each is used."
    )
    .map_err(|e| e.to_string())?;
    writeln!(generated, "pub const ALL: &[(&str, &[u8])] = &[").map_err(|e| e.to_string())?;
    for (_, constant, ..) in GUESTS {
        writeln!(generated, "    ({constant:?}, {constant}),").map_err(|e| e.to_string())?;
    }
    writeln!(generated, "];").map_err(|e| e.to_string())?;
    std::fs::write(out_dir.join("components.rs"), generated)
        .map_err(|e| format!("writing components.rs: {e}"))?;
    Ok(())
}
