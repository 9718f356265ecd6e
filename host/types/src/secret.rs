//! Secrets and configs: named data that tasks reference and that reaches only the nodes running
//! those tasks. Both are stored whole in raft (encrypted at rest); the control API never returns
//! a secret's data, while a config's data is shown on request.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::bytes::Blob;
use crate::meta::{Annotations, Meta};
use crate::validate::{ValidationError, check_labels, check_name};

/// Largest secret, SwarmKit's limit (500 KiB).
pub const MAX_SECRET_BYTES: usize = 500 * 1024;
/// Largest config, SwarmKit's limit (1000 KiB).
pub const MAX_CONFIG_BYTES: usize = 1000 * 1024;
/// Longest file name a reference may give its data on the node.
pub const MAX_TARGET_LEN: usize = 255;

/// Which of the two a piece of data is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataKind {
    Secret,
    Config,
}

impl DataKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DataKind::Secret => "secret",
            DataKind::Config => "config",
        }
    }

    /// The size limit of this kind's data.
    pub fn max_bytes(self) -> usize {
        match self {
            DataKind::Secret => MAX_SECRET_BYTES,
            DataKind::Config => MAX_CONFIG_BYTES,
        }
    }
}

impl std::fmt::Display for DataKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an operator gives: a name, labels and the data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataSpec {
    pub annotations: Annotations,
    /// The data. Redacted in `Debug`; empty in control API answers about secrets.
    #[serde(default)]
    pub data: Blob,
}

impl DataSpec {
    /// Checks the name, labels and size; the error names the field.
    pub fn validate(&self, kind: DataKind) -> Result<(), ValidationError> {
        check_name("spec.annotations.name", &self.annotations.name)?;
        check_labels("spec.annotations.labels", &self.annotations.labels)?;
        if self.data.is_empty() {
            return Err(ValidationError::new("spec.data", "must not be empty"));
        }
        if self.data.len() > kind.max_bytes() {
            return Err(ValidationError::new(
                "spec.data",
                format!(
                    "{} bytes is over the {kind} limit of {} bytes ({} KiB)",
                    self.data.len(),
                    kind.max_bytes(),
                    kind.max_bytes() / 1024
                ),
            ));
        }
        Ok(())
    }
}

/// A secret: data only the tasks that reference it may read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    pub id: String,
    pub meta: Meta,
    pub spec: DataSpec,
}

/// A config: non-sensitive data given to tasks as a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    pub id: String,
    pub meta: Meta,
    pub spec: DataSpec,
}

/// What secrets and configs have in common, so the code handling them is written once.
pub trait DataObject: Clone {
    const KIND: DataKind;
    fn new(id: String, meta: Meta, spec: DataSpec) -> Self;
    fn id(&self) -> &str;
    fn meta(&self) -> &Meta;
    fn spec(&self) -> &DataSpec;
    fn spec_mut(&mut self) -> &mut DataSpec;
    fn name(&self) -> &str {
        &self.spec().annotations.name
    }
}

macro_rules! data_object {
    ($ty:ident, $kind:expr) => {
        impl DataObject for $ty {
            const KIND: DataKind = $kind;
            fn new(id: String, meta: Meta, spec: DataSpec) -> Self {
                Self { id, meta, spec }
            }
            fn id(&self) -> &str {
                &self.id
            }
            fn meta(&self) -> &Meta {
                &self.meta
            }
            fn spec(&self) -> &DataSpec {
                &self.spec
            }
            fn spec_mut(&mut self) -> &mut DataSpec {
                &mut self.spec
            }
        }
    };
}

data_object!(Secret, DataKind::Secret);
data_object!(Config, DataKind::Config);

/// A task's use of a secret or config: which one (the id is resolved from the name when the
/// service is created or updated) and the file name it gets on the node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    pub name: String,
    /// The file name; empty: the name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target: String,
}

impl FileRef {
    /// A reference by name, with the file named `target` (or after the data when empty).
    pub fn named(name: impl Into<String>, target: impl Into<String>) -> Self {
        Self {
            id: String::new(),
            name: name.into(),
            target: target.into(),
        }
    }

    /// The file name on the node.
    pub fn file_name(&self) -> &str {
        if self.target.is_empty() {
            &self.name
        } else {
            &self.target
        }
    }
}

/// Checks a list of references: names valid, file names plain and distinct. The agent checks
/// again before it writes files (what arrives from the network is not trusted).
pub fn check_file_refs(field: &str, refs: &[FileRef]) -> Result<(), ValidationError> {
    let mut seen = HashSet::new();
    for (i, r) in refs.iter().enumerate() {
        check_name(&format!("{field}[{i}].name"), &r.name)?;
        let target = r.file_name();
        let plain = !target.is_empty()
            && target.len() <= MAX_TARGET_LEN
            && target != "."
            && target != ".."
            && !target.contains(['/', '\0']);
        if !plain {
            return Err(ValidationError::new(
                format!("{field}[{i}].target"),
                format!(
                    "{target:?} must be a plain file name (no '/', not '.' or '..', at most {MAX_TARGET_LEN} bytes)"
                ),
            ));
        }
        if !seen.insert(target) {
            return Err(ValidationError::new(
                format!("{field}[{i}].target"),
                format!("{target:?} is already the file of another reference"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(bytes: usize) -> DataSpec {
        DataSpec {
            annotations: Annotations {
                name: "db-password".into(),
                labels: Default::default(),
            },
            data: Blob::from(vec![7u8; bytes]),
        }
    }

    #[test]
    fn size_limits_are_swarmkits_and_named() {
        assert_eq!(spec(MAX_SECRET_BYTES).validate(DataKind::Secret), Ok(()));
        let err = spec(MAX_SECRET_BYTES + 1)
            .validate(DataKind::Secret)
            .expect_err("one byte over");
        assert_eq!(err.field, "spec.data");
        assert!(err.message.contains("secret limit of 512000"), "{err}");
        assert_eq!(
            spec(MAX_SECRET_BYTES + 1).validate(DataKind::Config),
            Ok(())
        );
        assert!(
            spec(MAX_CONFIG_BYTES + 1)
                .validate(DataKind::Config)
                .is_err()
        );
        assert!(spec(0).validate(DataKind::Config).is_err());
    }

    #[test]
    fn debug_never_shows_the_data() {
        let mut s = spec(0);
        s.data = Blob::from(b"hunter2".to_vec());
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<7 bytes>"), "{shown}");
    }

    #[test]
    fn references_need_plain_distinct_file_names() {
        let ok = [FileRef::named("a", ""), FileRef::named("b", "b.pem")];
        assert_eq!(check_file_refs("spec.task.secrets", &ok), Ok(()));
        let cases = [
            (
                vec![FileRef::named("a", "../etc/passwd")],
                "spec.task.secrets[0].target",
            ),
            (
                vec![FileRef::named("a", "..")],
                "spec.task.secrets[0].target",
            ),
            (
                vec![FileRef::named("a", "x"), FileRef::named("b", "x")],
                "spec.task.secrets[1].target",
            ),
            (
                vec![FileRef::named("a", ""), FileRef::named("a", "")],
                "spec.task.secrets[1].target",
            ),
            (vec![FileRef::named("a b", "")], "spec.task.secrets[0].name"),
        ];
        for (refs, field) in cases {
            let err = check_file_refs("spec.task.secrets", &refs).expect_err(field);
            assert_eq!(err.field, field, "{err}");
        }
    }
}
