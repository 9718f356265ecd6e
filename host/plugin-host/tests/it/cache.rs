//! The compile cache: artifacts written by digest, reused by a new host, and a corrupt file
//! recompiled rather than trusted.

use swarm_plugin_artifacts as artifacts;
use swarm_plugin_host::{HostConfig, PluginHost};

use crate::common::must_host;

fn cache_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("read cache dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiled_components_are_cached_and_checked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = HostConfig {
        cache_dir: dir.path().join("cache"),
        tasks_dir: dir.path().join("tasks"),
        call_deadline: std::time::Duration::from_secs(5),
        memory_limit_bytes: 64 << 20,
        engine_addr: None,
    };
    let host = must_host(config.clone());
    host.load_executor(
        "default",
        artifacts::EXECUTOR_DEFAULT,
        swarm_plugin_host::DEFAULT_EXECUTOR_GRANTS,
    )
    .expect("load");
    let files = cache_files(&config.cache_dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let written = std::fs::read(&files[0]).expect("read cache file");
    drop(host);

    // A new host uses the file as it is.
    let host = must_host(config.clone());
    let executor = host
        .load_executor(
            "default",
            artifacts::EXECUTOR_DEFAULT,
            swarm_plugin_host::DEFAULT_EXECUTOR_GRANTS,
        )
        .expect("load from cache");
    assert_eq!(executor.describe().await.expect("describe").name, "default");
    assert_eq!(std::fs::read(&files[0]).expect("read cache file"), written);
    drop(host);

    // A corrupted file is recompiled and rewritten.
    let mut corrupt = written.clone();
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0xff;
    std::fs::write(&files[0], &corrupt).expect("corrupt cache file");
    let host = PluginHost::new(config.clone()).expect("host");
    let executor = host
        .load_executor(
            "default",
            artifacts::EXECUTOR_DEFAULT,
            swarm_plugin_host::DEFAULT_EXECUTOR_GRANTS,
        )
        .expect("load after corruption");
    assert_eq!(executor.describe().await.expect("describe").name, "default");
    assert_eq!(std::fs::read(&files[0]).expect("read cache file"), written);
    // Truncated to nothing: the same.
    drop(host);
    std::fs::write(&files[0], b"").expect("truncate cache file");
    let host = PluginHost::new(config).expect("host");
    host.load_executor(
        "default",
        artifacts::EXECUTOR_DEFAULT,
        swarm_plugin_host::DEFAULT_EXECUTOR_GRANTS,
    )
    .expect("load after truncation");
}
