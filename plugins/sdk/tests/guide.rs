//! The plugin author's guide (`plugins/README.md`) shows each example package's code verbatim,
//! so the code in the guide is code that compiles and that the host's tests run.

use std::path::Path;

#[test]
fn the_guide_shows_each_example_verbatim() {
    let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let guide = std::fs::read_to_string(plugins.join("README.md")).expect("reading README.md");
    for kind in ["executor", "scheduler", "discovery"] {
        let path = plugins.join("examples").join(kind).join("src/lib.rs");
        let code = std::fs::read_to_string(&path).expect("reading an example");
        assert!(
            guide.contains(&format!("```rust\n{code}```")),
            "plugins/README.md does not show {} verbatim: copy it into the guide",
            path.display()
        );
    }
}
