//! Cross-crate integration suites: shared helpers.
