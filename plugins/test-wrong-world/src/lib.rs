//! A test guest that exports an interface which is neither the executor nor the scheduler one,
//! to check that the host refuses it at load time with a clear message.

wit_bindgen::generate!({
    inline: "
        package swarm-test:wrong;
        interface greeter {
            greet: func(name: string) -> string;
        }
        world wrong {
            export greeter;
        }
    ",
    world: "swarm-test:wrong/wrong",
});

struct Plugin;

impl exports::swarm_test::wrong::greeter::Guest for Plugin {
    fn greet(name: String) -> String {
        format!("hello {name}")
    }
}

export!(Plugin);
