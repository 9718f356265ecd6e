//! House rules, checked like tests: every Rust file starts with a `//!` line saying what it is
//! for, and the host crates depend on each other only along the edges ARCHITECTURE.md allows.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            if name == "target" || name.starts_with('.') {
                continue;
            }
            rust_files(&path, out);
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_starts_with_a_doc_line() {
    let root = repo_root();
    let mut files = Vec::new();
    for dir in ["host", "plugins", "tests"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(
        files.len() > 50,
        "found only {} files: is the walk broken?",
        files.len()
    );
    let missing: Vec<String> = files
        .iter()
        .filter(|f| {
            !std::fs::read_to_string(f)
                .unwrap_or_default()
                .starts_with("//!")
        })
        .map(|f| f.strip_prefix(&root).unwrap_or(f).display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a leading `//!` line:\n{}",
        missing.join("\n")
    );
}

/// Internal (`swarm-*`, binaries) dependencies of each host crate, from its Cargo.toml's
/// `[dependencies]` section (dev-dependencies may reach further, for tests).
fn internal_deps() -> BTreeMap<String, BTreeSet<String>> {
    let root = repo_root();
    let mut map = BTreeMap::new();
    let mut manifests: Vec<PathBuf> = std::fs::read_dir(root.join("host"))
        .expect("host dir")
        .flatten()
        .map(|e| e.path().join("Cargo.toml"))
        .filter(|p| p.exists())
        .collect();
    manifests.sort();
    for manifest in manifests {
        let text = std::fs::read_to_string(&manifest).expect("manifest");
        let name = text
            .lines()
            .find_map(|l| l.strip_prefix("name = \""))
            .and_then(|l| l.strip_suffix('"'))
            .expect("package name")
            .to_string();
        let mut deps = BTreeSet::new();
        let mut section = String::new();
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('[') {
                section = line.to_string();
                continue;
            }
            if section != "[dependencies]" {
                continue;
            }
            let dep = line.split(['=', '.', ' ']).next().unwrap_or_default();
            if dep.starts_with("swarm-") || dep == "swarmd" || dep == "swarmctl" {
                deps.insert(dep.to_string());
            }
        }
        map.insert(name, deps);
    }
    map
}

#[test]
fn crate_dependencies_follow_the_architecture() {
    let allowed: BTreeMap<&str, &[&str]> = BTreeMap::from([
        ("swarm-types", &[][..]),
        ("swarm-proto", &["swarm-types"][..]),
        ("swarm-store", &["swarm-types"][..]),
        ("swarm-ca", &["swarm-types"][..]),
        ("swarm-raft", &["swarm-proto"][..]),
        ("swarm-plugin-artifacts", &[][..]),
        ("swarm-plugin-host", &["swarm-types"][..]),
        (
            "swarm-manager",
            &[
                "swarm-types",
                "swarm-proto",
                "swarm-store",
                "swarm-raft",
                "swarm-plugin-host",
                "swarm-ca",
            ][..],
        ),
        (
            "swarm-agent",
            &["swarm-types", "swarm-proto", "swarm-plugin-host"][..],
        ),
        (
            "swarm-node",
            &[
                "swarm-types",
                "swarm-manager",
                "swarm-agent",
                "swarm-plugin-host",
                "swarm-plugin-artifacts",
                "swarm-ca",
            ][..],
        ),
        ("swarmd", &["swarm-node"][..]),
        ("swarmctl", &["swarm-types", "swarm-proto"][..]),
    ]);
    let deps = internal_deps();
    assert!(
        deps.get("swarm-manager")
            .is_some_and(|d| d.contains("swarm-raft")),
        "manifests not parsed as expected: {deps:?}"
    );
    let mut violations = Vec::new();
    for (krate, used) in &deps {
        if krate == "swarm-bench" {
            for d in used {
                if d == "swarmd" || d == "swarmctl" {
                    violations.push(format!("{krate} depends on the binary {d}"));
                }
            }
            continue;
        }
        let Some(ok) = allowed.get(krate.as_str()) else {
            violations.push(format!(
                "{krate} is not in the architecture's table: add it to ARCHITECTURE.md and here"
            ));
            continue;
        };
        for d in used {
            if !ok.contains(&d.as_str()) {
                violations.push(format!("{krate} must not depend on {d}"));
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}
