//! Validation errors: each names the field at fault, e.g. `spec.replicas: must be >= 0`.

use std::fmt;

/// A spec failed validation. `field` is a dotted path from the spec's root.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Names: 1 to 63 characters, letters, digits, `-` and `_`, starting with a letter or digit
/// (usable in hostnames and task names like `web.3`).
pub(crate) fn check_name(field: &str, name: &str) -> Result<(), ValidationError> {
    if name.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if name.len() > 63 {
        return Err(ValidationError::new(field, "must be at most 63 characters"));
    }
    let mut chars = name.chars();
    let first = chars.next().unwrap_or('-');
    if !first.is_ascii_alphanumeric() {
        return Err(ValidationError::new(
            field,
            format!("{name:?} must start with a letter or digit"),
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(ValidationError::new(
            field,
            format!("{name:?} contains {bad:?}; use letters, digits, '-' and '_'"),
        ));
    }
    Ok(())
}

pub(crate) fn check_labels(
    field: &str,
    labels: &std::collections::BTreeMap<String, String>,
) -> Result<(), ValidationError> {
    for key in labels.keys() {
        if key.is_empty() {
            return Err(ValidationError::new(field, "label keys must not be empty"));
        }
        if key.contains(['=', ' ']) {
            return Err(ValidationError::new(
                field,
                format!("label key {key:?} must not contain '=' or spaces"),
            ));
        }
    }
    Ok(())
}
