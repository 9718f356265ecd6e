//! Plugins installed cluster-wide: WebAssembly components (executor, scheduler, discovery) kept
//! in the replicated store by content digest, with the capabilities the operator granted them.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::bytes::Blob;
use crate::meta::{Annotations, Meta, Timestamp};
use crate::validate::{ValidationError, check_labels, check_name};

/// Largest component accepted by `plugin install`: it travels through raft and to every node.
pub const MAX_PLUGIN_BYTES: u64 = 16 << 20;

/// The kind of a plugin: the world its component implements.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    #[default]
    Executor,
    Scheduler,
    Discovery,
}

impl PluginKind {
    pub const ALL: [PluginKind; 3] = [
        PluginKind::Executor,
        PluginKind::Scheduler,
        PluginKind::Discovery,
    ];

    /// `executor`, `scheduler` or `discovery`.
    pub fn name(self) -> &'static str {
        match self {
            PluginKind::Executor => "executor",
            PluginKind::Scheduler => "scheduler",
            PluginKind::Discovery => "discovery",
        }
    }

    /// The capabilities a plugin of this kind may be granted (`log` is always granted and is
    /// never listed). Mirrors the worlds in `wit/`.
    pub fn grantable(self) -> &'static [&'static str] {
        match self {
            PluginKind::Executor => &["process", "wasi-runner", "docker"],
            PluginKind::Scheduler => &[],
            PluginKind::Discovery => &["http"],
        }
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Every capability an operator can grant, whatever the kind.
pub const PLUGIN_CAPABILITIES: [&str; 4] = ["process", "wasi-runner", "docker", "http"];

/// What an operator asks for when installing a plugin.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginSpec {
    /// The plugin's name, unique in the cluster (ignoring ASCII case), as services and nodes
    /// refer to it.
    pub annotations: Annotations,
    pub kind: PluginKind,
    /// Capabilities granted (beyond `log`), sorted, each once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
}

impl PluginSpec {
    /// Check the spec; the error names the field at fault.
    pub fn validate(&self) -> Result<(), ValidationError> {
        check_name("spec.annotations.name", &self.annotations.name)?;
        if BUILTIN_EXECUTORS
            .iter()
            .any(|builtin| builtin.eq_ignore_ascii_case(&self.annotations.name))
        {
            return Err(ValidationError::new(
                "spec.annotations.name",
                format!(
                    "{:?} is the name of an embedded executor; choose another name",
                    self.annotations.name
                ),
            ));
        }
        check_labels("spec.annotations.labels", &self.annotations.labels)?;
        for (i, capability) in self.capabilities.iter().enumerate() {
            let field = format!("spec.capabilities[{i}]");
            if !PLUGIN_CAPABILITIES.contains(&capability.as_str()) {
                return Err(ValidationError::new(
                    field,
                    format!(
                        "unknown capability {capability:?}: use {} (log is always granted)",
                        PLUGIN_CAPABILITIES.join(", ")
                    ),
                ));
            }
            if !self.kind.grantable().contains(&capability.as_str()) {
                let offered = match self.kind.grantable() {
                    [] => "none".to_string(),
                    some => some.join(", "),
                };
                return Err(ValidationError::new(
                    field,
                    format!(
                        "{} plugins cannot be granted {capability:?} (they can have: {offered})",
                        self.kind
                    ),
                ));
            }
            if self.capabilities[..i].contains(capability) {
                return Err(ValidationError::new(
                    field,
                    format!("{capability:?} is granted twice"),
                ));
            }
        }
        Ok(())
    }

    /// The capabilities sorted and each once, as they are stored.
    pub fn normalize(&mut self) {
        self.capabilities.sort();
        self.capabilities.dedup();
    }
}

/// How a plugin has behaved: the failure budget and quarantine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginStatus {
    /// A quarantined plugin is not called any more until an operator acts.
    #[serde(default)]
    pub quarantined: bool,
    /// Failed calls (traps, deadlines, memory) counted against the failure budget.
    #[serde(default)]
    pub failures: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default)]
    pub updated_at: Timestamp,
}

impl PluginStatus {
    /// Quarantined at `now` after `failures` failures, `message` saying where and why.
    pub fn quarantined(failures: u32, message: String, now: Timestamp) -> Self {
        Self {
            quarantined: true,
            failures,
            message,
            updated_at: now,
        }
    }

    /// Not quarantined, as of `now` (a fresh install, or a quarantine lifted).
    pub fn healthy(now: Timestamp) -> Self {
        Self {
            updated_at: now,
            ..Default::default()
        }
    }
}

/// A component's bytes (see [`Blob`]).
pub type ComponentBytes = Blob;

/// An installed plugin: its spec, its component (by digest) and what validation found in it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plugin {
    pub id: String,
    pub meta: Meta,
    pub spec: PluginSpec,
    /// `sha256:<64 lowercase hex digits>` of the component.
    pub digest: String,
    pub size_bytes: u64,
    /// The component. Empty in listings that did not ask for it; an update carrying none keeps
    /// the stored bytes (so status changes do not send the component through raft again).
    #[serde(default, skip_serializing_if = "ComponentBytes::is_empty")]
    pub component: ComponentBytes,
    /// The capabilities the component imports (a subset of those granted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub imports: Vec<String>,
    /// For executors: the runtimes `describe` reported at install.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runtimes: Vec<String>,
    /// For discovery backends: the URI schemes served.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schemes: Vec<String>,
    #[serde(default)]
    pub status: PluginStatus,
}

impl Plugin {
    pub fn name(&self) -> &str {
        &self.spec.annotations.name
    }

    /// The same plugin without its component's bytes (what listings return).
    pub fn without_component(&self) -> Plugin {
        Plugin {
            component: ComponentBytes::default(),
            ..self.clone()
        }
    }

    /// The plugin with `status`, for a status-only update: without its bytes (the store keeps
    /// the component it has), updated at the status's time.
    pub fn with_status(&self, status: PluginStatus) -> Plugin {
        let mut plugin = self.without_component();
        plugin.meta.updated_at = status.updated_at;
        plugin.status = status;
        plugin
    }

    /// Check the spec, the digest's form, the size, and that the bytes (when present) have
    /// that size.
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.spec.validate()?;
        check_digest("digest", &self.digest)?;
        check_plugin_size(self.size_bytes)?;
        if !self.component.is_empty() && self.component.len() as u64 != self.size_bytes {
            return Err(ValidationError::new(
                "component",
                format!(
                    "has {} bytes but size_bytes says {}",
                    self.component.len(),
                    self.size_bytes
                ),
            ));
        }
        Ok(())
    }
}

/// A digest must read `sha256:` and 64 lowercase hex digits.
pub fn check_digest(field: &str, digest: &str) -> Result<(), ValidationError> {
    let hex = digest.strip_prefix("sha256:").ok_or_else(|| {
        ValidationError::new(field, format!("{digest:?} must start with \"sha256:\""))
    })?;
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(ValidationError::new(
            field,
            format!("{digest:?} must be \"sha256:\" and 64 lowercase hex digits"),
        ));
    }
    Ok(())
}

/// A component must not be empty nor larger than [`MAX_PLUGIN_BYTES`].
pub fn check_plugin_size(size: u64) -> Result<(), ValidationError> {
    if size == 0 {
        return Err(ValidationError::new("component", "must not be empty"));
    }
    if size > MAX_PLUGIN_BYTES {
        return Err(ValidationError::new(
            "component",
            format!(
                "is {size} bytes, more than the {MAX_PLUGIN_BYTES} bytes ({} MiB) a plugin may have",
                MAX_PLUGIN_BYTES >> 20
            ),
        ));
    }
    Ok(())
}

/// The executors every node embeds: `default` (process, wasi) and `docker` (container, on nodes
/// whose engine answers). A service or node may name them like installed executors.
pub const BUILTIN_EXECUTORS: [&str; 2] = ["default", "docker"];

/// A reference to an installed plugin (`spec.scheduler`, `spec.executor`): empty, or a name.
pub(crate) fn check_plugin_ref(field: &str, name: &str) -> Result<(), ValidationError> {
    if name.is_empty() {
        return Ok(());
    }
    check_name(field, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: PluginKind, capabilities: &[&str]) -> PluginSpec {
        PluginSpec {
            annotations: Annotations {
                name: "runner".into(),
                labels: Default::default(),
            },
            kind,
            capabilities: capabilities.iter().map(|c| c.to_string()).collect(),
        }
    }

    fn plugin(component: &[u8]) -> Plugin {
        Plugin {
            id: "p1".into(),
            spec: spec(PluginKind::Executor, &["process"]),
            digest: format!("sha256:{}", "ab".repeat(32)),
            size_bytes: component.len() as u64,
            component: ComponentBytes::new(component),
            ..Default::default()
        }
    }

    #[test]
    fn specs_validate_names_and_grants_per_kind() {
        assert_eq!(
            spec(PluginKind::Executor, &["process", "docker"]).validate(),
            Ok(())
        );
        assert_eq!(spec(PluginKind::Discovery, &["http"]).validate(), Ok(()));
        assert_eq!(spec(PluginKind::Scheduler, &[]).validate(), Ok(()));
        let cases: Vec<(PluginSpec, &str)> = vec![
            (
                PluginSpec {
                    annotations: Annotations::default(),
                    ..spec(PluginKind::Executor, &[])
                },
                "spec.annotations.name: must not be empty",
            ),
            (
                PluginSpec {
                    annotations: Annotations {
                        name: "my plugin".into(),
                        labels: Default::default(),
                    },
                    ..spec(PluginKind::Executor, &[])
                },
                "spec.annotations.name: \"my plugin\" contains ' '",
            ),
            (
                spec(PluginKind::Executor, &["process", "network"]),
                "spec.capabilities[1]: unknown capability \"network\": use process, wasi-runner, docker, http",
            ),
            (
                spec(PluginKind::Scheduler, &["process"]),
                "spec.capabilities[0]: scheduler plugins cannot be granted \"process\" (they can have: none)",
            ),
            (
                spec(PluginKind::Executor, &["http"]),
                "spec.capabilities[0]: executor plugins cannot be granted \"http\" (they can have: process, wasi-runner, docker)",
            ),
            (
                spec(PluginKind::Executor, &["docker", "docker"]),
                "spec.capabilities[1]: \"docker\" is granted twice",
            ),
        ];
        for (spec, want) in cases {
            let err = spec.validate().expect_err(want).to_string();
            assert!(err.starts_with(want), "got {err:?}, want prefix {want:?}");
        }
    }

    #[test]
    fn digests_sizes_and_bytes_are_checked() {
        assert_eq!(plugin(b"\0asm").validate(), Ok(()));
        let mut p = plugin(b"\0asm");
        p.digest = "sha256:ABCD".into();
        assert_eq!(
            p.validate().expect_err("short digest").to_string(),
            "digest: \"sha256:ABCD\" must be \"sha256:\" and 64 lowercase hex digits"
        );
        p.digest = "md5:00".into();
        assert!(p.validate().is_err());
        let mut p = plugin(b"\0asm");
        p.size_bytes = 5;
        assert_eq!(
            p.validate().expect_err("size mismatch").to_string(),
            "component: has 4 bytes but size_bytes says 5"
        );
        assert_eq!(check_plugin_size(MAX_PLUGIN_BYTES), Ok(()));
        assert_eq!(
            check_plugin_size(MAX_PLUGIN_BYTES + 1)
                .expect_err("too big")
                .to_string(),
            "component: is 16777217 bytes, more than the 16777216 bytes (16 MiB) a plugin may have"
        );
        assert_eq!(
            check_plugin_size(0).expect_err("empty").to_string(),
            "component: must not be empty"
        );
    }

    #[test]
    fn components_are_base64_in_json_and_absent_when_empty() {
        let p = plugin(&[0, 97, 115, 109, 255]);
        let json = serde_json::to_string(&p).expect("serialize");
        assert!(json.contains("\"component\":\"AGFzbf8=\""), "{json}");
        let back: Plugin = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, p);
        let listed = serde_json::to_string(&p.without_component()).expect("serialize");
        assert!(!listed.contains("component"), "{listed}");
        assert_eq!(format!("{:?}", p.component), "<5 bytes>");
    }

    #[test]
    fn normalize_sorts_and_dedups_grants() {
        let mut s = spec(PluginKind::Executor, &["wasi-runner", "process", "process"]);
        s.normalize();
        assert_eq!(s.capabilities, vec!["process", "wasi-runner"]);
    }
}
