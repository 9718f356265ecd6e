//! Process plumbing: signals, liveness checks that survive pid reuse, and memory figures from
//! `/proc`.

use std::path::Path;

use anyhow::{Context as _, bail};

/// Sends `signal` to `pid`, or to the process group `pid` leads when `group` is set. A process
/// that is already gone is not an error.
#[expect(
    unsafe_code,
    reason = "kill(2) through libc; std can only SIGKILL its own children"
)]
pub fn signal(pid: u32, signal: i32, group: bool) -> std::io::Result<()> {
    let pid = i32::try_from(pid)
        .ok()
        .filter(|&pid| pid > 1)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "invalid pid"))?;
    let target = if group { -pid } else { pid };
    // SAFETY: kill(2) takes plain integers and touches no memory of ours. `pid > 1` keeps the
    // target a single process or group, never "every process" (-1) or our own group (0).
    let result = unsafe { libc::kill(target, signal) };
    if result == 0 {
        return Ok(());
    }
    let error = std::io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::ESRCH) {
        return Ok(());
    }
    Err(error)
}

/// What `/proc/<pid>/stat` says of a process.
struct Stat {
    state: char,
    parent: u32,
    /// Clock ticks since boot.
    start_time: u64,
}

fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: parse after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is the first after the name, field 4 (ppid) the second, field 22
    // (starttime) the 20th.
    Some(Stat {
        state: fields.first()?.chars().next()?,
        parent: fields.get(1)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// Waits (up to `timeout`) until every thread of `pid` is stopped, e.g. after SIGSTOP: a stop
/// is delivered asynchronously, and a thread inside `fork` finishes it first. Returns whether
/// every thread was seen stopped (or the process is gone).
pub fn wait_stopped(pid: u32, timeout: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return true;
        };
        let running = threads.flatten().any(|thread| {
            std::fs::read_to_string(thread.path().join("stat"))
                .ok()
                .and_then(|text| {
                    let rest = &text[text.rfind(')')? + 1..];
                    rest.split_whitespace().next()?.chars().next()
                })
                .is_some_and(|state| !matches!(state, 'T' | 't' | 'Z' | 'X' | 'x'))
        });
        if !running {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// The live children of `parent`, as (pid, start time).
pub fn children(parent: u32) -> Vec<(u32, u64)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = stat(pid)?;
            (stat.parent == parent && !matches!(stat.state, 'Z' | 'X' | 'x'))
                .then_some((pid, stat.start_time))
        })
        .collect()
}

/// Whether the process `pid` that started at `start_time` still runs (a zombie has ended).
pub fn is_alive(pid: u32, start_time: u64) -> bool {
    match stat(pid) {
        Some(stat) => stat.start_time == start_time && !matches!(stat.state, 'Z' | 'X' | 'x'),
        None => false,
    }
}

/// Live processes whose working directory is inside `dir` (a task process runs in its task
/// directory), as (pid, start time). Our own process is never listed.
pub fn processes_in(dir: &Path) -> Vec<(u32, u64)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let own = std::process::id();
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != own)
        .filter_map(|pid| {
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
            // A removed directory reads as "<path> (deleted)".
            let text = cwd.to_string_lossy();
            let cwd = Path::new(text.strip_suffix(" (deleted)").unwrap_or(&text));
            if !cwd.starts_with(dir) {
                return None;
            }
            let stat = stat(pid)?;
            (!matches!(stat.state, 'Z' | 'X' | 'x')).then_some((pid, stat.start_time))
        })
        .collect()
}

/// A task's `pid` file as the plugin host writes it: `<pid> <start time>`.
pub fn read_pid_file(path: &Path) -> Option<(u32, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let (pid, start) = text.trim().split_once(' ')?;
    Some((pid.parse().ok()?, start.parse().ok()?))
}

/// A field of `/proc/self/status` in bytes (`VmHWM`: peak resident set; `VmRSS`: current).
pub fn self_status_bytes(field: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    for line in text.lines() {
        if let Some(rest) = line
            .strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
        {
            let kib: u64 = rest
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .with_context(|| format!("parsing {field} in /proc/self/status: {rest:?}"))?;
            return Ok(kib * 1024);
        }
    }
    bail!("no {field} in /proc/self/status")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_has_memory_figures() {
        let pid = std::process::id();
        let own = stat(pid).expect("own stat");
        assert!(is_alive(pid, own.start_time));
        assert!(!is_alive(pid, own.start_time + 1));
        assert!(children(own.parent).iter().any(|&(child, _)| child == pid));
        let peak = self_status_bytes("VmHWM").expect("VmHWM");
        let now = self_status_bytes("VmRSS").expect("VmRSS");
        // Two reads: the current figure may pass the peak read just before it.
        assert!(peak > 0 && now > 0);
    }
}
