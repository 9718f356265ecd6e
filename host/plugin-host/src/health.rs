//! Failure budgets: a plugin whose calls keep failing (trap, deadline, memory limit, failed
//! instantiation) is quarantined, and its calls then fail at once without running it. Errors a
//! plugin *returns* (an `executor-error`) are answers, not failures, and do not count.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;

use crate::error::PluginError;

/// How many failures a plugin may have within a window before it is quarantined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailureBudget {
    /// Failures within `window` that quarantine the plugin; 0 never quarantines.
    pub max_failures: u32,
    pub window: Duration,
}

impl Default for FailureBudget {
    /// Five failures within a minute.
    fn default() -> Self {
        FailureBudget {
            max_failures: 5,
            window: Duration::from_secs(60),
        }
    }
}

/// What the host knows of a loaded plugin's health.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginHealth {
    pub quarantined: bool,
    /// Failures within the budget's window.
    pub recent_failures: u32,
    /// Failures since the plugin was loaded.
    pub total_failures: u64,
    /// The last failure, e.g. `plugin "x" trapped: ...`.
    pub last_error: Option<String>,
    /// When the plugin was quarantined.
    pub quarantined_at: Option<SystemTime>,
}

#[derive(Debug)]
struct State {
    recent: VecDeque<Instant>,
    total: u64,
    last_error: Option<String>,
    quarantined_at: Option<SystemTime>,
}

/// The health of one loaded plugin, shared by its clones.
#[derive(Debug)]
pub(crate) struct Health {
    budget: FailureBudget,
    state: Mutex<State>,
}

impl Health {
    pub(crate) fn new(budget: FailureBudget) -> Health {
        Health {
            budget,
            state: Mutex::new(State {
                recent: VecDeque::new(),
                total: 0,
                last_error: None,
                quarantined_at: None,
            }),
        }
    }

    /// Fails with [`PluginError::Quarantined`] when the plugin is quarantined.
    pub(crate) fn admit(&self, plugin: &str) -> Result<(), PluginError> {
        let state = self.state.lock();
        if state.quarantined_at.is_some() {
            return Err(PluginError::Quarantined {
                plugin: plugin.to_owned(),
                failures: u32::try_from(state.recent.len()).unwrap_or(u32::MAX),
                last_error: state.last_error.clone().unwrap_or_default(),
            });
        }
        Ok(())
    }

    /// Counts `error` if it is the plugin's failure; quarantines past the budget.
    pub(crate) fn record(&self, plugin: &str, error: &PluginError) {
        self.record_at(plugin, error, Instant::now());
    }

    fn record_at(&self, plugin: &str, error: &PluginError, now: Instant) {
        if !counts(error) {
            return;
        }
        let mut state = self.state.lock();
        state.total += 1;
        state.last_error = Some(error.to_string());
        state.recent.push_back(now);
        while let Some(&oldest) = state.recent.front() {
            if now.duration_since(oldest) > self.budget.window {
                state.recent.pop_front();
            } else {
                break;
            }
        }
        let recent = state.recent.len();
        if self.budget.max_failures > 0
            && recent >= self.budget.max_failures as usize
            && state.quarantined_at.is_none()
        {
            state.quarantined_at = Some(SystemTime::now());
            tracing::error!(
                event = "plugin_quarantined",
                plugin,
                failures = recent,
                window = ?self.budget.window,
                last_error = %error,
                "plugin quarantined: it failed {recent} times within {:?}; its calls now fail \
                 until it is reinstalled or reloaded",
                self.budget.window
            );
        }
    }

    pub(crate) fn snapshot(&self) -> PluginHealth {
        let state = self.state.lock();
        let now = Instant::now();
        let recent = state
            .recent
            .iter()
            .filter(|at| now.duration_since(**at) <= self.budget.window)
            .count();
        PluginHealth {
            quarantined: state.quarantined_at.is_some(),
            recent_failures: u32::try_from(recent).unwrap_or(u32::MAX),
            total_failures: state.total,
            last_error: state.last_error.clone(),
            quarantined_at: state.quarantined_at,
        }
    }
}

/// Whether an error is the plugin misbehaving, as opposed to an answer or a host problem (a
/// failed instantiation is most often the host's: its instance pool is full).
fn counts(error: &PluginError) -> bool {
    matches!(
        error,
        PluginError::Trap { .. }
            | PluginError::DeadlineExceeded { .. }
            | PluginError::MemoryLimit { .. }
    )
}

#[cfg(test)]
mod tests {
    //! Counting, the window and what does not count.

    use super::*;

    fn trap() -> PluginError {
        PluginError::Trap {
            plugin: "p".into(),
            message: "unreachable".into(),
        }
    }

    #[test]
    fn quarantines_after_the_budget_and_refuses_calls() {
        let health = Health::new(FailureBudget {
            max_failures: 3,
            window: Duration::from_secs(60),
        });
        for _ in 0..2 {
            health.record("p", &trap());
            assert!(health.admit("p").is_ok());
        }
        let answer = PluginError::Guest {
            plugin: "p".into(),
            message: "no such task".into(),
        };
        health.record("p", &answer);
        assert!(health.admit("p").is_ok(), "guest answers do not count");
        health.record("p", &trap());
        let error = health.admit("p").expect_err("quarantined");
        assert!(
            matches!(error, PluginError::Quarantined { failures: 3, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("unreachable"), "{error}");
        let snapshot = health.snapshot();
        assert!(snapshot.quarantined);
        assert_eq!(snapshot.total_failures, 3);
        assert!(snapshot.quarantined_at.is_some());
    }

    #[test]
    fn failures_outside_the_window_are_forgotten() {
        let health = Health::new(FailureBudget {
            max_failures: 2,
            window: Duration::from_secs(60),
        });
        let start = Instant::now();
        health.record_at("p", &trap(), start);
        health.record_at("p", &trap(), start + Duration::from_secs(61));
        assert!(
            health.admit("p").is_ok(),
            "the first failure left the window"
        );
        health.record_at("p", &trap(), start + Duration::from_secs(62));
        assert!(health.admit("p").is_err(), "two within the window");
        assert_eq!(health.snapshot().total_failures, 3);
    }

    #[test]
    fn a_zero_budget_never_quarantines() {
        let health = Health::new(FailureBudget {
            max_failures: 0,
            window: Duration::from_secs(60),
        });
        for _ in 0..100 {
            health.record("p", &trap());
        }
        assert!(health.admit("p").is_ok());
    }
}
