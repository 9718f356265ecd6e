//! A WASI command used as a `wasi` task in demos and tests.
//!
//! Usage: `sample-task [sleep <ms> | exit <code> | echo <text>...]...`; the steps run in order.
//! It first prints `sample-task args=[..] SAMPLE_MESSAGE=..` to stdout, and a line to stderr.
//! WASI 0.2's `wasi:cli/exit` reports only success or failure, so `exit 3` ends with code 1.

use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let message = std::env::var("SAMPLE_MESSAGE").unwrap_or_default();
    println!("sample-task args={args:?} SAMPLE_MESSAGE={message}");
    eprintln!("sample-task stderr line");
    let mut steps = args.iter();
    while let Some(step) = steps.next() {
        let value = steps.next().map(String::as_str).unwrap_or("");
        match step.as_str() {
            "sleep" => {
                let millis: u64 = value.parse().unwrap_or(0);
                std::thread::sleep(Duration::from_millis(millis));
                println!("slept {millis} ms");
            }
            "exit" => std::process::exit(value.parse().unwrap_or(1)),
            "echo" => println!("{value}"),
            other => {
                eprintln!("unknown step {other:?}");
                std::process::exit(2);
            }
        }
    }
}
