//! The plugin components built from `plugins/` (wasm32-wasip2), embedded as bytes.
//!
//! `build.rs` runs a nested cargo build of each guest package; each guest has a constant with its
//! bytes and one with the path of its file. The default plugins are what `swarmd` embeds so a
//! fresh install works with nothing to fetch; the test guests serve the host's robustness tests.
//!
//! Invariant: every guest listed here is used by some test (`swarm-plugin-host`'s
//! `every_guest_is_tested` test checks the names in [`ALL`] against its test sources).

include!(concat!(env!("OUT_DIR"), "/components.rs"));

#[cfg(test)]
mod tests {
    //! Checks that each component has the component-model preamble.

    #[test]
    fn every_artifact_is_a_component() {
        for (name, bytes) in super::ALL {
            // `\0asm`, then version 0x0d and layer 1 for components (core modules have layer 0).
            assert!(bytes.starts_with(b"\0asm"), "{name} is not wasm");
            assert_eq!(
                bytes.get(6..8),
                Some(&[1u8, 0][..]),
                "{name} is not a component"
            );
        }
    }
}
