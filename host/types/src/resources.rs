//! Compute resources: CPU in nano-CPUs (1e9 = one core) and memory in bytes.

use serde::{Deserialize, Serialize};

use crate::validate::ValidationError;

/// An amount of CPU and memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// CPU in units of 1e-9 cores.
    pub nano_cpus: i64,
    pub memory_bytes: i64,
}

impl Resources {
    pub fn is_zero(&self) -> bool {
        self.nano_cpus == 0 && self.memory_bytes == 0
    }
}

/// What a task reserves on its node (used by the scheduler) and the most it may use.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRequirements {
    #[serde(default, skip_serializing_if = "Resources::is_zero")]
    pub limits: Resources,
    #[serde(default, skip_serializing_if = "Resources::is_zero")]
    pub reservations: Resources,
}

impl ResourceRequirements {
    pub(crate) fn validate(&self, field: &str) -> Result<(), ValidationError> {
        for (name, r) in [
            ("limits", &self.limits),
            ("reservations", &self.reservations),
        ] {
            if r.nano_cpus < 0 {
                return Err(ValidationError::new(
                    format!("{field}.{name}.nano_cpus"),
                    "must be >= 0",
                ));
            }
            if r.memory_bytes < 0 {
                return Err(ValidationError::new(
                    format!("{field}.{name}.memory_bytes"),
                    "must be >= 0",
                ));
            }
        }
        let (l, r) = (&self.limits, &self.reservations);
        if l.nano_cpus > 0 && r.nano_cpus > l.nano_cpus {
            return Err(ValidationError::new(
                format!("{field}.reservations.nano_cpus"),
                "must not exceed limits.nano_cpus",
            ));
        }
        if l.memory_bytes > 0 && r.memory_bytes > l.memory_bytes {
            return Err(ValidationError::new(
                format!("{field}.reservations.memory_bytes"),
                "must not exceed limits.memory_bytes",
            ));
        }
        Ok(())
    }
}
