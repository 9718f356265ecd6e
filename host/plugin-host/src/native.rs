//! Direct access to the host capabilities, for benchmarks that compare a plugin call with the
//! capability work it delegates (the difference is the cost of crossing into the plugin). Not
//! part of the plugin API.

use std::sync::Arc;
use std::time::Duration;

use crate::bindings::types::{ProcessSpec, TaskState};
use crate::capabilities::Capabilities;

/// The `process` and `wasi-runner` capabilities of a host, called natively.
#[derive(Clone)]
pub struct NativeCapabilities {
    pub(crate) capabilities: Arc<Capabilities>,
}

impl NativeCapabilities {
    pub fn process_prepare(&self, task_id: &str, spec: ProcessSpec) -> Result<(), String> {
        self.capabilities.processes.prepare(task_id, spec)
    }

    pub fn process_start(&self, task_id: &str) -> Result<u32, String> {
        self.capabilities.processes.start(task_id)
    }

    pub fn process_status(&self, task_id: &str) -> TaskState {
        self.capabilities.processes.state(task_id)
    }

    pub fn wasi_status(&self, task_id: &str) -> TaskState {
        self.capabilities.wasi.state(task_id)
    }

    pub async fn process_stop(&self, task_id: &str, timeout: Duration) -> Result<(), String> {
        self.capabilities.processes.stop(task_id, timeout).await
    }

    pub async fn process_remove(&self, task_id: &str) -> Result<(), String> {
        self.capabilities.processes.remove(task_id).await
    }
}
