//! The `process` capability: runs a task's host process in its own process group, logs into the
//! task's directory, and finds a still-running process again after the host restarts.
//!
//! Files under `<tasks-dir>/<task-id>/`: `stdout`, `stderr` (appended), `pid` (`<pid> <start
//! time>`, the start time from `/proc/<pid>/stat` guarding against pid reuse) and `exit`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::bindings::executor_world::swarm::plugin::process::Host;
use crate::bindings::types::{ExitStatus, ProcessSpec, TaskState};
use crate::capabilities::{read_exit_file, task_dir, write_exit_file};
use crate::state::{CallClock, StoreState};

const PID_FILE: &str = "pid";
/// How often an adopted process (not our child) is checked in `/proc`.
const ADOPTED_POLL: Duration = Duration::from_millis(100);
/// How long to wait for a process to end after SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(10);
/// PATH given to processes whose spec does not set one (their environment starts empty).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

enum Entry {
    Prepared(ProcessSpec),
    /// Started (or adopted); the channel gets the exit status when the process ends.
    Started {
        pid: u32,
        start_time: u64,
        exit: watch::Receiver<Option<ExitStatus>>,
    },
}

pub(crate) struct ProcessTable {
    tasks_dir: PathBuf,
    entries: Mutex<HashMap<String, Entry>>,
}

impl ProcessTable {
    pub(crate) fn new(tasks_dir: &Path) -> ProcessTable {
        ProcessTable {
            tasks_dir: tasks_dir.to_owned(),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn dir(&self, task_id: &str) -> Result<PathBuf, String> {
        task_dir(&self.tasks_dir, task_id)
    }

    pub(crate) fn prepare(&self, task_id: &str, spec: ProcessSpec) -> Result<(), String> {
        let dir = self.dir(task_id)?;
        if self.status(task_id) != StateKind::Missing {
            return Err(format!("task {task_id} already exists"));
        }
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        self.entries
            .lock()
            .insert(task_id.to_owned(), Entry::Prepared(spec));
        Ok(())
    }

    pub(crate) fn start(&self, task_id: &str) -> Result<u32, String> {
        let dir = self.dir(task_id)?;
        let mut entries = self.entries.lock();
        let spec = match entries.get(task_id) {
            Some(Entry::Prepared(spec)) => spec.clone(),
            Some(Entry::Started { .. }) => {
                return Err(format!("task {task_id} was already started"));
            }
            None => return Err(format!("task {task_id} is not prepared")),
        };
        let open = |name: &str| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(name))
                .map_err(|e| format!("opening the {name} log of task {task_id}: {e}"))
        };
        let stdout = open("stdout")?;
        let stderr = open("stderr")?;
        // Resolve a bare command name against the PATH the child gets: with a changed PATH and a
        // bare name, std falls back from posix_spawn to fork + exec, and forking swarmd (whose
        // wasmtime pool maps a lot of address space) costs several milliseconds per task.
        let path_var = spec
            .env
            .iter()
            .rev()
            .find(|(k, _)| k == "PATH")
            .map_or(DEFAULT_PATH, |(_, v)| v.as_str());
        let program = resolve_program(&spec.command, path_var);
        let mut command = tokio::process::Command::new(&program);
        command
            .arg0(&spec.command)
            .args(&spec.args)
            .env_clear()
            .env("PATH", DEFAULT_PATH)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .current_dir(spec.dir.as_deref().map_or(dir.clone(), PathBuf::from))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            // Its own process group: signals reach its children, and it outlives the host.
            .process_group(0)
            .kill_on_drop(false);
        let mut child = command
            .spawn()
            .map_err(|e| format!("starting {:?} for task {task_id}: {e}", spec.command))?;
        let pid = child
            .id()
            .ok_or_else(|| format!("task {task_id}: the process ended before its pid was read"))?;
        let start_time = proc_start_time(pid).unwrap_or(0);
        if let Err(error) = std::fs::write(dir.join(PID_FILE), format!("{pid} {start_time}")) {
            tracing::warn!(task_id, %error, "cannot record the pid of a task");
        }
        let (sender, exit) = watch::channel(None);
        entries.insert(
            task_id.to_owned(),
            Entry::Started {
                pid,
                start_time,
                exit,
            },
        );
        tokio::spawn(async move {
            let exit = match child.wait().await {
                Ok(status) => exit_status(status),
                Err(error) => ExitStatus {
                    code: -1,
                    signal: None,
                    message: format!("waiting for the process failed: {error}"),
                },
            };
            write_exit_file(&dir, &exit);
            let _ = sender.send(Some(exit));
        });
        Ok(pid)
    }

    /// The exit channel of a started task, adopting it from its files if needed.
    fn exit_channel(&self, task_id: &str) -> Result<watch::Receiver<Option<ExitStatus>>, String> {
        self.status(task_id);
        match self.entries.lock().get(task_id) {
            Some(Entry::Started { exit, .. }) => Ok(exit.clone()),
            Some(Entry::Prepared(_)) => Err(format!("task {task_id} is not started")),
            None => Err(format!("task {task_id} is not known")),
        }
    }

    /// The exit channel of a started (or adoptable) task; `None` when the table does not know it.
    pub(crate) fn exit_receiver(
        &self,
        task_id: &str,
    ) -> Option<watch::Receiver<Option<ExitStatus>>> {
        self.dir(task_id).ok()?;
        self.exit_channel(task_id).ok()
    }

    pub(crate) fn kill(&self, task_id: &str, signal: i32) -> Result<(), String> {
        self.dir(task_id)?;
        if !(1..=64).contains(&signal) {
            return Err(format!("invalid signal {signal}"));
        }
        self.status(task_id);
        let (pid, start_time) = match self.entries.lock().get(task_id) {
            Some(Entry::Started {
                pid,
                start_time,
                exit,
            }) if exit.borrow().is_none() => (*pid, *start_time),
            Some(Entry::Started { .. }) => return Ok(()),
            _ => return Err(format!("task {task_id} is not running")),
        };
        if !is_alive(pid, start_time) {
            return Ok(());
        }
        signal_group(pid, signal).map_err(|e| format!("signalling task {task_id}: {e}"))
    }

    pub(crate) async fn stop(&self, task_id: &str, timeout: Duration) -> Result<(), String> {
        let mut exit = self.exit_channel(task_id)?;
        if exit.borrow().is_some() {
            return Ok(());
        }
        self.kill(task_id, libc::SIGTERM)?;
        if tokio::time::timeout(timeout, exit.wait_for(Option::is_some))
            .await
            .is_ok()
        {
            return Ok(());
        }
        self.kill(task_id, libc::SIGKILL)?;
        match tokio::time::timeout(KILL_GRACE, exit.wait_for(Option::is_some)).await {
            Ok(_) => Ok(()),
            Err(_) => Err(format!("task {task_id} did not end after SIGKILL")),
        }
    }

    pub(crate) async fn remove(&self, task_id: &str) -> Result<(), String> {
        let dir = self.dir(task_id)?;
        if self.status(task_id) == StateKind::Running {
            let mut exit = self.exit_channel(task_id)?;
            self.kill(task_id, libc::SIGKILL)?;
            if tokio::time::timeout(KILL_GRACE, exit.wait_for(Option::is_some))
                .await
                .is_err()
            {
                return Err(format!("task {task_id} did not end after SIGKILL"));
            }
        }
        self.entries.lock().remove(task_id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(format!("removing {}: {error}", dir.display())),
        }
    }

    pub(crate) fn state(&self, task_id: &str) -> TaskState {
        if self.dir(task_id).is_err() {
            return TaskState::Missing;
        }
        self.status(task_id);
        match self.entries.lock().get(task_id) {
            None => TaskState::Missing,
            Some(Entry::Prepared(_)) => TaskState::Prepared,
            Some(Entry::Started { exit, .. }) => match &*exit.borrow() {
                Some(status) => TaskState::Exited(status.clone()),
                None => TaskState::Running,
            },
        }
    }

    /// The task's state, adopting a task this host does not know from its `pid` file.
    fn status(&self, task_id: &str) -> StateKind {
        let mut entries = self.entries.lock();
        if let Some(entry) = entries.get(task_id) {
            return StateKind::of(entry);
        }
        let Ok(dir) = self.dir(task_id) else {
            return StateKind::Missing;
        };
        let Some((pid, start_time)) = read_pid_file(&dir) else {
            return StateKind::Missing;
        };
        let (sender, exit) = watch::channel(None);
        if let Some(status) = read_exit_file(&dir) {
            let _ = sender.send(Some(status));
        } else if is_alive(pid, start_time) && tokio::runtime::Handle::try_current().is_ok() {
            tracing::info!(task_id, pid, "adopting a process that kept running");
            tokio::spawn(async move {
                let mut interval = tokio::time::interval(ADOPTED_POLL);
                while is_alive(pid, start_time) {
                    interval.tick().await;
                }
                let exit = read_exit_file(&dir).unwrap_or_else(|| unknown_exit(pid));
                let _ = sender.send(Some(exit));
            });
        } else {
            let _ = sender.send(Some(unknown_exit(pid)));
        }
        let entry = Entry::Started {
            pid,
            start_time,
            exit,
        };
        let kind = StateKind::of(&entry);
        entries.insert(task_id.to_owned(), entry);
        kind
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StateKind {
    Missing,
    Prepared,
    Running,
    Exited,
}

impl StateKind {
    fn of(entry: &Entry) -> StateKind {
        match entry {
            Entry::Prepared(_) => StateKind::Prepared,
            Entry::Started { exit, .. } if exit.borrow().is_some() => StateKind::Exited,
            Entry::Started { .. } => StateKind::Running,
        }
    }
}

fn unknown_exit(pid: u32) -> ExitStatus {
    ExitStatus {
        code: -1,
        signal: None,
        message: format!(
            "process {pid} was adopted after a restart of the host and has ended; \
             its exit code is unknown"
        ),
    }
}

fn exit_status(status: std::process::ExitStatus) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitStatus {
            code,
            signal: None,
            message: format!("exited with code {code}"),
        },
        (None, Some(signal)) => ExitStatus {
            code: 128 + signal,
            signal: Some(signal),
            message: format!("killed by signal {signal}"),
        },
        (None, None) => ExitStatus {
            code: -1,
            signal: None,
            message: format!("ended with status {status}"),
        },
    }
}

fn read_pid_file(dir: &Path) -> Option<(u32, u64)> {
    let text = std::fs::read_to_string(dir.join(PID_FILE)).ok()?;
    let (pid, start_time) = text.trim().split_once(' ')?;
    Some((pid.parse().ok()?, start_time.parse().ok()?))
}

/// Fields of `/proc/<pid>/stat` after the command name: state and start time (in clock ticks
/// since boot).
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain anything: split after the last ')'.
    let (_, rest) = text.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Field 22 of the file; `state` was field 3.
    let start_time = fields.nth(18)?.parse().ok()?;
    Some((state, start_time))
}

fn proc_start_time(pid: u32) -> Option<u64> {
    proc_stat(pid).map(|(_, start_time)| start_time)
}

/// Whether `pid` is still the process that was started at `start_time` and has not ended.
fn is_alive(pid: u32, start_time: u64) -> bool {
    match proc_stat(pid) {
        Some((state, started)) => started == start_time && !matches!(state, 'Z' | 'X' | 'x'),
        None => false,
    }
}

#[expect(
    unsafe_code,
    reason = "kill(2) through libc; std has no way to signal a process group"
)]
fn signal_group(pid: u32, signal: i32) -> std::io::Result<()> {
    let group = i32::try_from(pid)
        .ok()
        .filter(|&group| group > 1)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "invalid pid"))?;
    // SAFETY: kill(2) takes plain integers and touches no memory of ours. `group > 1` makes the
    // negative argument a single process group, never "every process" (-1).
    let result = unsafe { libc::kill(-group, signal) };
    if result == 0 {
        Ok(())
    } else {
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::ESRCH) {
            return Ok(());
        }
        Err(error)
    }
}

impl Host for StoreState {
    async fn prepare(&mut self, task_id: String, spec: ProcessSpec) -> Result<(), String> {
        self.capabilities.processes.prepare(&task_id, spec)
    }

    async fn start(&mut self, task_id: String) -> Result<u32, String> {
        self.capabilities.processes.start(&task_id)
    }

    async fn kill(&mut self, task_id: String, signal: i32) -> Result<(), String> {
        self.capabilities.processes.kill(&task_id, signal)
    }

    async fn stop(&mut self, task_id: String, timeout_ms: u64) -> Result<(), String> {
        let capabilities = self.capabilities.clone();
        let timeout = Duration::from_millis(timeout_ms);
        CallClock::host(
            &mut self.clock,
            capabilities.processes.stop(&task_id, timeout),
        )
        .await
    }

    async fn status(&mut self, task_id: String) -> TaskState {
        self.capabilities.processes.state(&task_id)
    }

    async fn remove(&mut self, task_id: String) -> Result<(), String> {
        let capabilities = self.capabilities.clone();
        CallClock::host(&mut self.clock, capabilities.processes.remove(&task_id)).await
    }
}

/// The file a bare command name runs from, searched in `path_var` as `execvp` would; a name
/// with a slash, or one found nowhere, is returned as is (spawning then reports the error).
fn resolve_program(command: &str, path_var: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    if command.contains('/') {
        return PathBuf::from(command);
    }
    path_var
        .split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(command))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .unwrap_or_else(|| PathBuf::from(command))
}

#[cfg(test)]
mod resolve_tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn bare_names_resolve_against_the_given_path_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tool = dir.path().join("tool");
        std::fs::write(&tool, "#!/bin/sh\n").expect("write");
        let not_exec = dir.path().join("data");
        std::fs::write(&not_exec, "x").expect("write");
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let path_var = format!("/nonexistent:{}", dir.path().display());
        assert_eq!(resolve_program("tool", &path_var), tool);
        assert_eq!(resolve_program("data", &path_var), PathBuf::from("data"));
        assert_eq!(
            resolve_program("tool", "/nonexistent"),
            PathBuf::from("tool")
        );
        assert_eq!(
            resolve_program("./tool", &path_var),
            PathBuf::from("./tool")
        );
    }
}
