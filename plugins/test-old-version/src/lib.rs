//! A test guest built against `swarm:plugin@0.1.0` (see `wit/old.wit`): the host must refuse it
//! with a message naming the version it was built against and the world and version it expects.

wit_bindgen::generate!({
    path: "wit",
    world: "swarm:plugin/executor-plugin@0.1.0",
});

struct Plugin;

impl exports::swarm::plugin::executor::Guest for Plugin {
    fn describe() -> String {
        "an executor from the 0.1.0 days".to_owned()
    }
}

export!(Plugin);
