//! What the host capabilities share across plugin instances, plus the per-task files they keep
//! under the tasks directory (`<tasks-dir>/<task-id>/`).

use std::path::{Path, PathBuf};

use tokio::sync::watch;

use crate::bindings::types::ExitStatus;
use crate::docker::DockerEngine;
use crate::error::PluginError;
use crate::process::ProcessTable;
use crate::wasi_runner::WasiRunner;

/// State behind the `process`, `wasi-runner` and `docker` capabilities, shared by every instance
/// of every plugin of one host, keyed by task id.
pub(crate) struct Capabilities {
    pub(crate) processes: ProcessTable,
    pub(crate) wasi: WasiRunner,
    pub(crate) docker: DockerEngine,
}

impl Capabilities {
    /// Resolves when a capability that knows `task_id` sees it end (at once if it has ended);
    /// never, when no capability knows the task.
    pub(crate) async fn task_ended(&self, task_id: &str) {
        let process = self.processes.exit_receiver(task_id);
        let wasi = self.wasi.exit_receiver(task_id);
        let docker = self.docker.exit_channel(task_id);
        tokio::select! {
            () = ended(process) => {}
            () = ended(wasi) => {}
            () = ended(docker) => {}
        }
    }
}

/// Resolves when the channel holds an exit status or its sender is gone; never for `None`.
async fn ended(receiver: Option<watch::Receiver<Option<ExitStatus>>>) {
    match receiver {
        Some(mut receiver) => {
            let _ = receiver.wait_for(Option::is_some).await;
        }
        None => std::future::pending().await,
    }
}

/// Longest task id accepted.
const MAX_TASK_ID_LEN: usize = 128;

/// Checks that a task id (guest data) is safe as a single path component.
pub fn check_task_id(task_id: &str) -> Result<(), String> {
    let valid_chars = task_id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if task_id.is_empty()
        || task_id.len() > MAX_TASK_ID_LEN
        || !valid_chars
        || task_id.starts_with('.')
    {
        return Err(format!(
            "invalid task id {task_id:?}: use 1 to {MAX_TASK_ID_LEN} characters from [A-Za-z0-9._-], \
             not starting with a dot"
        ));
    }
    Ok(())
}

pub(crate) fn task_dir(tasks_dir: &Path, task_id: &str) -> Result<PathBuf, String> {
    check_task_id(task_id)?;
    Ok(tasks_dir.join(task_id))
}

/// Name of the file recording how a task ended.
const EXIT_FILE: &str = "exit";

/// Records `exit` as `<code> <signal or -> \n <message>`; failures are logged, not fatal.
pub(crate) fn write_exit_file(dir: &Path, exit: &ExitStatus) {
    let signal = exit.signal.map_or("-".to_owned(), |s| s.to_string());
    let text = format!("{} {signal}\n{}", exit.code, exit.message);
    if let Err(error) = std::fs::write(dir.join(EXIT_FILE), text) {
        tracing::warn!(dir = %dir.display(), %error, "cannot record a task's exit status");
    }
}

pub(crate) fn read_exit_file(dir: &Path) -> Option<ExitStatus> {
    let text = std::fs::read_to_string(dir.join(EXIT_FILE)).ok()?;
    let (first, message) = text.split_once('\n').unwrap_or((&text, ""));
    let (code, signal) = first.split_once(' ')?;
    Some(ExitStatus {
        code: code.parse().ok()?,
        signal: signal.parse().ok(),
        message: message.to_owned(),
    })
}

/// Which log of a task to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    pub(crate) fn file_name(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

/// The last `tail_bytes` of a task's log (all of it when `tail_bytes` is 0).
pub(crate) fn read_logs(
    tasks_dir: &Path,
    task_id: &str,
    stream: LogStream,
    tail_bytes: u64,
) -> Result<Vec<u8>, PluginError> {
    use std::io::{Read, Seek, SeekFrom};
    let dir = task_dir(tasks_dir, task_id).map_err(|message| {
        PluginError::io(
            "reading task logs",
            std::io::Error::new(std::io::ErrorKind::InvalidInput, message),
        )
    })?;
    let path = dir.join(stream.file_name());
    let context = || format!("reading {}", path.display());
    let mut file = std::fs::File::open(&path).map_err(|e| PluginError::io(context(), e))?;
    let length = file
        .metadata()
        .map_err(|e| PluginError::io(context(), e))?
        .len();
    if tail_bytes > 0 && length > tail_bytes {
        file.seek(SeekFrom::Start(length - tail_bytes))
            .map_err(|e| PluginError::io(context(), e))?;
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| PluginError::io(context(), e))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    //! Task id checks and the exit file format.

    use super::*;

    #[test]
    fn task_ids() {
        for good in ["t1", "a.b-c_D", "x".repeat(128).as_str()] {
            assert_eq!(check_task_id(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            ".hidden",
            "a b",
            "x".repeat(129).as_str(),
        ] {
            assert!(check_task_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exit_file_round_trip() {
        let dir = tempfile::tempdir().expect("temp dir");
        for exit in [
            ExitStatus {
                code: 3,
                signal: None,
                message: "exited with code 3".into(),
            },
            ExitStatus {
                code: 137,
                signal: Some(9),
                message: "killed\nby signal 9".into(),
            },
        ] {
            write_exit_file(dir.path(), &exit);
            let read = read_exit_file(dir.path()).expect("exit file");
            assert_eq!(
                (read.code, read.signal, read.message),
                (exit.code, exit.signal, exit.message)
            );
        }
    }
}
