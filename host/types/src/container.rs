//! Containers: the `container` runtime, run by an executor on the node's container engine.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::validate::{ValidationError, check_labels};

/// Label prefix the host and executors reserve for the labels tying a container to its task.
pub const RESERVED_LABEL_PREFIX: &str = "io.swarm.";

/// Longest image reference accepted (Docker's own limit on a reference is 255 per component).
const MAX_IMAGE_LEN: usize = 512;

/// What a mount attaches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    /// A path of the node (`source`) at `target`.
    #[default]
    Bind,
    /// A named engine volume (`source`), created when missing.
    Volume,
    /// An empty in-memory file system; no `source`.
    Tmpfs,
}

impl MountKind {
    pub fn name(self) -> &'static str {
        match self {
            MountKind::Bind => "bind",
            MountKind::Volume => "volume",
            MountKind::Tmpfs => "tmpfs",
        }
    }
}

/// One mount of a container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub kind: MountKind,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    pub target: String,
    #[serde(default)]
    pub read_only: bool,
}

impl Mount {
    /// `type=bind,source=/data,target=/data,readonly`, as `--mount` takes it.
    pub fn summary(&self) -> String {
        let mut text = format!("type={}", self.kind.name());
        if !self.source.is_empty() {
            text.push_str(&format!(",source={}", self.source));
        }
        text.push_str(&format!(",target={}", self.target));
        if self.read_only {
            text.push_str(",readonly");
        }
        text
    }
}

/// A container on the node's engine, run by the `container` runtime.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// Image reference; the image must already be present on the node's engine.
    pub image: String,
    /// Replaces the image's entrypoint when not empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    /// Replaces the image's command when not empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// `NAME=VALUE` items.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Labels of the container (the executor adds the ones tying it to its task).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

impl ContainerSpec {
    /// Checks the spec; `field` is its path (`spec.task.runtime.container`).
    pub(crate) fn validate(&self, field: &str) -> Result<(), ValidationError> {
        let image = &self.image;
        if image.trim().is_empty() {
            return Err(ValidationError::new(
                format!("{field}.image"),
                "must not be empty",
            ));
        }
        if image.len() > MAX_IMAGE_LEN || image.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(ValidationError::new(
                format!("{field}.image"),
                format!(
                    "{image:?} is not an image reference (no spaces, at most {MAX_IMAGE_LEN} bytes)"
                ),
            ));
        }
        let labels = format!("{field}.labels");
        check_labels(&labels, &self.labels)?;
        if let Some(key) = self
            .labels
            .keys()
            .find(|k| k.starts_with(RESERVED_LABEL_PREFIX))
        {
            return Err(ValidationError::new(
                labels,
                format!(
                    "label key {key:?}: keys starting with {RESERVED_LABEL_PREFIX:?} are reserved for swarm"
                ),
            ));
        }
        for (i, mount) in self.mounts.iter().enumerate() {
            check_mount(&format!("{field}.mounts[{i}]"), mount)?;
        }
        for (i, a) in self.mounts.iter().enumerate() {
            if self.mounts[..i].iter().any(|b| b.target == a.target) {
                return Err(ValidationError::new(
                    format!("{field}.mounts[{i}].target"),
                    format!("{:?} is mounted twice", a.target),
                ));
            }
        }
        if let Some(dir) = &self.workdir
            && !dir.starts_with('/')
        {
            return Err(ValidationError::new(
                format!("{field}.workdir"),
                format!("{dir:?} must be an absolute path"),
            ));
        }
        if let Some(user) = &self.user
            && (user.is_empty() || user.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(ValidationError::new(
                format!("{field}.user"),
                format!("{user:?} must be a user name or id (USER, UID, USER:GROUP or UID:GID)"),
            ));
        }
        if let Some(hostname) = &self.hostname {
            check_hostname(&format!("{field}.hostname"), hostname)?;
        }
        Ok(())
    }
}

fn check_mount(field: &str, mount: &Mount) -> Result<(), ValidationError> {
    if !mount.target.starts_with('/') {
        return Err(ValidationError::new(
            format!("{field}.target"),
            format!("{:?} must be an absolute path", mount.target),
        ));
    }
    if mount.target == "/" {
        return Err(ValidationError::new(
            format!("{field}.target"),
            "must not be the container's root",
        ));
    }
    let source = format!("{field}.source");
    match mount.kind {
        MountKind::Bind if !mount.source.starts_with('/') => Err(ValidationError::new(
            source,
            format!(
                "{:?} must be an absolute path of the node for a bind mount",
                mount.source
            ),
        )),
        MountKind::Volume
            if mount.source.is_empty()
                || !mount
                    .source
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
                || !mount
                    .source
                    .starts_with(|c: char| c.is_ascii_alphanumeric()) =>
        {
            Err(ValidationError::new(
                source,
                format!(
                    "{:?} must be a volume name ([A-Za-z0-9][A-Za-z0-9_.-]*)",
                    mount.source
                ),
            ))
        }
        MountKind::Tmpfs if !mount.source.is_empty() => Err(ValidationError::new(
            source,
            "must be empty for a tmpfs mount",
        )),
        _ => Ok(()),
    }
}

/// RFC 1123 host names: labels of letters, digits and `-`, at most 63 each, 253 in all.
fn check_hostname(field: &str, hostname: &str) -> Result<(), ValidationError> {
    let valid = !hostname.is_empty()
        && hostname.len() <= 253
        && hostname.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if valid {
        Ok(())
    } else {
        Err(ValidationError::new(
            field,
            format!("{hostname:?} is not a valid host name"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ContainerSpec {
        ContainerSpec {
            image: "swarm-test/busybox:latest".into(),
            args: vec!["sleep".into(), "600".into()],
            mounts: vec![
                Mount {
                    kind: MountKind::Bind,
                    source: "/srv/data".into(),
                    target: "/data".into(),
                    read_only: true,
                },
                Mount {
                    kind: MountKind::Volume,
                    source: "cache".into(),
                    target: "/cache".into(),
                    read_only: false,
                },
                Mount {
                    kind: MountKind::Tmpfs,
                    source: String::new(),
                    target: "/scratch".into(),
                    read_only: false,
                },
            ],
            workdir: Some("/data".into()),
            user: Some("1000:1000".into()),
            hostname: Some("web-1.example".into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_good_spec_validates() {
        assert_eq!(spec().validate("c"), Ok(()));
    }

    #[test]
    fn errors_name_the_field() {
        type Mutation = Box<dyn Fn(&mut ContainerSpec)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (
                Box::new(|s| s.image = " ".into()),
                "c.image: must not be empty",
            ),
            (
                Box::new(|s| s.image = "a b".into()),
                "c.image: \"a b\" is not",
            ),
            (
                Box::new(|s| {
                    s.labels.insert("io.swarm.task.id".into(), "x".into());
                }),
                "c.labels: label key \"io.swarm.task.id\": keys starting with",
            ),
            (
                Box::new(|s| s.mounts[0].source = "relative".into()),
                "c.mounts[0].source: \"relative\" must be an absolute path",
            ),
            (
                Box::new(|s| s.mounts[1].source = "../up".into()),
                "c.mounts[1].source: \"../up\" must be a volume name",
            ),
            (
                Box::new(|s| s.mounts[2].source = "/x".into()),
                "c.mounts[2].source: must be empty for a tmpfs mount",
            ),
            (
                Box::new(|s| s.mounts[2].target = "scratch".into()),
                "c.mounts[2].target: \"scratch\" must be an absolute path",
            ),
            (
                Box::new(|s| s.mounts[2].target = "/data".into()),
                "c.mounts[2].target: \"/data\" is mounted twice",
            ),
            (
                Box::new(|s| s.workdir = Some("data".into())),
                "c.workdir: \"data\" must be an absolute path",
            ),
            (
                Box::new(|s| s.user = Some(String::new())),
                "c.user: \"\" must be a user name or id",
            ),
            (
                Box::new(|s| s.hostname = Some("-bad".into())),
                "c.hostname: \"-bad\" is not a valid host name",
            ),
        ];
        for (mutate, want) in cases {
            let mut s = spec();
            mutate(&mut s);
            let err = s.validate("c").expect_err(want).to_string();
            assert!(err.starts_with(want), "got {err:?}, want prefix {want:?}");
        }
    }

    #[test]
    fn mounts_summarise_as_the_flag_takes_them() {
        let s = spec();
        assert_eq!(
            s.mounts[0].summary(),
            "type=bind,source=/srv/data,target=/data,readonly"
        );
        assert_eq!(s.mounts[2].summary(), "type=tmpfs,target=/scratch");
    }
}
