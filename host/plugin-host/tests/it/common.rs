//! Helpers shared by the integration tests: hosts on temporary directories, polling with a deadline.

use std::future::Future;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use swarm_plugin_host::{HostConfig, PluginHost};

/// One compile cache for the whole test binary, so each component is compiled once.
pub fn shared_cache_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"))
        .path()
}

pub fn config(tasks_dir: &Path) -> HostConfig {
    HostConfig {
        cache_dir: shared_cache_dir().to_owned(),
        tasks_dir: tasks_dir.to_owned(),
        call_deadline: Duration::from_secs(5),
        memory_limit_bytes: 64 << 20,
        engine_addr: None,
    }
}

pub fn must_host(config: HostConfig) -> PluginHost {
    PluginHost::new(config).expect("plugin host")
}

/// Polls `condition` until it holds, failing the test after `limit`.
pub async fn must_eventually<F, Fut>(what: &str, limit: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
