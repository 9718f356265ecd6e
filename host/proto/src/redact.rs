//! `Debug` for the generated messages that carry secrets (their derive is skipped in
//! `build.rs`): lengths only, never the bytes or the key.

use std::fmt;

use crate::pb;

impl fmt::Debug for pb::SecretSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretSpec")
            .field("annotations", &self.annotations)
            .field("data", &format_args!("<{} bytes>", self.data.len()))
            .finish()
    }
}

impl fmt::Debug for pb::GetUnlockKeyResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetUnlockKeyResponse")
            .field("unlock_key", &redacted(&self.unlock_key))
            .finish()
    }
}

impl fmt::Debug for pb::UnlockNodeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnlockNodeRequest")
            .field("unlock_key", &redacted(&self.unlock_key))
            .finish()
    }
}

fn redacted(key: &str) -> &'static str {
    if key.is_empty() {
        "<none>"
    } else {
        "<redacted>"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_keys_never_show_in_debug() {
        let spec = pb::SecretSpec {
            annotations: None,
            data: b"hunter2".to_vec(),
        };
        let shown = format!("{spec:?}");
        assert!(
            !shown.contains("104") && shown.contains("<7 bytes>"),
            "{shown}"
        );
        let key = pb::GetUnlockKeyResponse {
            unlock_key: "SWMKEY-1-abc".into(),
        };
        assert!(!format!("{key:?}").contains("SWMKEY"));
        let request = pb::UnlockNodeRequest {
            unlock_key: "SWMKEY-1-abc".into(),
        };
        assert!(!format!("{request:?}").contains("SWMKEY"));
    }
}
