//! Secrets and configs across a real cluster: created with swarmctl, never shown again (nor
//! logged), written as read-only files only for the tasks that reference them, kept while a
//! service uses them, and gone from the node with the task.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use swarm_tests::{TestCluster, path_str, poll};

/// A value that appears nowhere unless it leaked.
fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{what}-{}-{nanos:x}", std::process::id())
}

#[test]
fn secrets_and_configs_reach_only_the_tasks_that_use_them() {
    let cluster = TestCluster::start(1, 2);
    let manager = &cluster.managers[0];
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = unique("s3cret");
    let config = unique("listen");
    let secret_file = dir.path().join("pw");
    std::fs::write(&secret_file, &secret).expect("write");
    let config_file = dir.path().join("conf");
    std::fs::write(&config_file, &config).expect("write");

    let id = manager
        .ctl(&["secret", "create", "db-password", path_str(&secret_file)])
        .ok()
        .stdout
        .trim()
        .to_string();
    assert_eq!(id.len(), swarm_types::ID_LEN, "the id alone: {id:?}");
    manager
        .ctl(&["config", "create", "app-conf", path_str(&config_file)])
        .ok();

    // The secret's data never comes back; the config's does, on inspect.
    for args in [
        &["secret", "ls"][..],
        &["--format", "json", "secret", "ls"],
        &["secret", "inspect", "db-password"],
        &["--format", "json", "secret", "inspect", &id],
    ] {
        let out = manager.ctl(args).ok();
        assert!(!out.stdout.contains(&secret), "{args:?} shows the secret");
        assert!(out.stdout.contains("db-password") || out.stdout.contains(&id));
    }
    let listed = manager
        .ctl(&["--format", "json", "secret", "ls"])
        .ok()
        .json();
    assert_eq!(listed[0]["size_bytes"], secret.len());
    let inspected = manager.ctl(&["config", "inspect", "app-conf"]).ok();
    assert!(inspected.stdout.contains(&config), "{}", inspected.stdout);

    // Unknown references are refused, naming them.
    let refused = manager.ctl(&[
        "service",
        "create",
        "--name",
        "nope",
        "--secret",
        "missing",
        "--process",
        "--",
        "true",
    ]);
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("secret \"missing\" not found"),
        "{}",
        refused.stderr
    );

    // One task on worker-1 copies its files where the test can read them.
    let out = dir.path().join("out");
    let script = format!(
        "cat \"$SWARM_SECRETS_DIR/pw.txt\" \"$SWARM_CONFIGS_DIR/app-conf\" > {out}.tmp; \
         echo \"$SWARM_SECRETS_DIR\" > {out}.dir; mv {out}.tmp {out}; exec sleep 600",
        out = out.display()
    );
    manager
        .ctl(&[
            "service",
            "create",
            "--name",
            "reader",
            "--constraint",
            "node.hostname==worker-1",
            "--secret",
            "source=db-password,target=pw.txt",
            "--config",
            "app-conf",
            "--process",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .ok();
    let seen = poll("the task to read its secret and config", || {
        std::fs::read_to_string(&out).ok()
    });
    assert_eq!(seen, format!("{secret}{config}"));
    let secrets_dir = PathBuf::from(
        std::fs::read_to_string(format!("{}.dir", out.display()))
            .expect("the secrets directory")
            .trim(),
    );
    assert!(
        secrets_dir.starts_with("/dev/shm"),
        "on a tmpfs: {secrets_dir:?}"
    );
    let mode = std::fs::metadata(secrets_dir.join("pw.txt"))
        .expect("the secret file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o444, "read-only");
    let inspected = manager.ctl(&["service", "inspect", "reader"]).ok();
    assert!(
        inspected.stdout.contains("db-password as pw.txt"),
        "{}",
        inspected.stdout
    );

    // worker-2 runs nothing that uses them: it has no files for them.
    let worker_2 = cluster.node("worker-2").expect("worker-2");
    let worker_2_id = worker_2["id"].as_str().expect("node id");
    assert!(!Path::new(&format!("/dev/shm/swarmd-{worker_2_id}")).exists());

    // Kept while used; the task's files go with the task.
    let refused = manager.ctl(&["secret", "rm", "db-password"]);
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("in use by service reader"),
        "{}",
        refused.stderr
    );
    manager.ctl(&["service", "rm", "reader"]).ok();
    poll("the task's files to be removed", || {
        (!secrets_dir.exists()).then_some(())
    });
    manager.ctl(&["secret", "rm", "db-password"]).ok();
    manager.ctl(&["config", "rm", "app-conf"]).ok();
    let left = manager
        .ctl(&["--format", "json", "secret", "ls"])
        .ok()
        .json();
    assert_eq!(left.as_array().map(Vec::len), Some(0), "{left}");

    // Never logged, by any node.
    for node in cluster.managers.iter().chain(&cluster.workers) {
        assert!(
            !node.log().contains(&secret),
            "{} logged the secret",
            node.hostname()
        );
    }
}
