//! Parsers for flag values: sizes, CPUs, durations, `KEY=VALUE` pairs, constraints.
//!
//! Each returns a message without the flag's name; clap adds it
//! (`invalid value '12X' for '--reserve-memory <SIZE>': ...`).

use std::time::Duration;

/// A memory size in bytes: `1000000`, `512M`, `512MiB`, `1GiB`, `1.5G`, `64k`.
///
/// As in docker, `K`, `M`, `G` and `T` (with or without `B` or `iB`) are multiples of 1024.
pub fn memory_bytes(text: &str) -> Result<i64, String> {
    let usage =
        || format!("{text:?}: expected a size such as 512MiB, 1GiB, 512M or 1000000 (bytes)");
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(usage()),
    };
    let (whole, fraction) = decimal(number).ok_or_else(usage)?;
    // value = (whole + fraction / 10^digits) * 2^shift, rounded down to whole bytes.
    let (digits, scale) = fraction;
    let bytes = whole
        .checked_mul(1u128 << shift)
        .and_then(|w| w.checked_add((digits << shift) / scale))
        .and_then(|b| i64::try_from(b).ok())
        .ok_or_else(|| format!("{text:?}: too large"))?;
    if number.contains('.') && shift == 0 {
        return Err(format!("{text:?}: a number of bytes must be whole"));
    }
    Ok(bytes)
}

/// CPUs as nano-CPUs: `0.5` is 500000000, `2` is 2000000000; at most 9 decimal places.
pub fn nano_cpus(text: &str) -> Result<i64, String> {
    let usage = || format!("{text:?}: expected a number of CPUs such as 0.5, 1 or 2.25");
    let (whole, (digits, scale)) = decimal(text.trim()).ok_or_else(usage)?;
    if scale > 1_000_000_000 {
        return Err(format!("{text:?}: at most 9 decimal places (1 nano-CPU)"));
    }
    whole
        .checked_mul(1_000_000_000)
        .and_then(|w| w.checked_add(digits * (1_000_000_000 / scale)))
        .and_then(|n| i64::try_from(n).ok())
        .ok_or_else(|| format!("{text:?}: too large"))
}

/// `DIGITS[.DIGITS]` as (whole part, (fraction digits as an integer, 10^number of digits)).
fn decimal(text: &str) -> Option<(u128, (u128, u128))> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || !all_digits(fraction) || fraction.len() > 30 {
        return None;
    }
    let whole = if whole.is_empty() {
        0
    } else {
        whole.parse::<u128>().ok()?
    };
    let digits = if fraction.is_empty() {
        0
    } else {
        fraction.parse::<u128>().ok()?
    };
    let scale = 10u128.checked_pow(u32::try_from(fraction.len()).ok()?)?;
    Some((whole, (digits, scale)))
}

/// A duration: `500ms`, `5s`, `1m30s`, `2h`, or `0`.
pub fn duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(trimmed)
        .map_err(|e| format!("{text:?}: {e}; expected a duration such as 500ms, 5s, 1m30s or 2h"))
}

/// `KEY=VALUE`, or `KEY` alone for an empty value (labels, as in docker).
pub fn key_value(text: &str) -> Result<(String, String), String> {
    let (key, value) = text.split_once('=').unwrap_or((text, ""));
    if key.is_empty() {
        return Err(format!("{text:?}: expected KEY=VALUE with a non-empty KEY"));
    }
    Ok((key.to_string(), value.to_string()))
}

/// An environment variable, `NAME=VALUE` (the value may be empty).
pub fn env_var(text: &str) -> Result<String, String> {
    match text.split_once('=') {
        Some((name, _)) if !name.is_empty() => Ok(text.to_string()),
        _ => Err(format!("{text:?}: expected NAME=VALUE")),
    }
}

/// A placement constraint, checked with the same rules as the manager's; kept as written.
pub fn constraint(text: &str) -> Result<String, String> {
    text.parse::<swarm_types::Constraint>()?;
    Ok(text.to_string())
}

/// A secret or config reference: `NAME`, or `source=NAME[,target=FILE]` (Docker's form).
pub fn file_ref(text: &str) -> Result<swarm_types::FileRef, String> {
    if !text.contains('=') {
        return Ok(swarm_types::FileRef::named(text.trim(), ""));
    }
    let mut name = None;
    let mut target = String::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        match item.split_once('=') {
            Some(("source" | "src", value)) => name = Some(value.trim().to_string()),
            Some(("target", value)) => target = value.trim().to_string(),
            _ => {
                return Err(format!(
                    "{text:?}: {item:?} is not source=NAME or target=FILE"
                ));
            }
        }
    }
    let name = name.ok_or_else(|| format!("{text:?}: source=NAME is missing"))?;
    Ok(swarm_types::FileRef::named(name, target))
}

/// A container mount as docker's `--mount` writes it:
/// `type=bind,source=/srv,target=/data,readonly`. Keys: `type` (bind, volume, tmpfs; default
/// bind), `source`/`src`, `target`/`destination`/`dst`, `readonly`/`ro` (alone or `=true|false`).
pub fn mount(text: &str) -> Result<swarm_types::Mount, String> {
    let mut mount = swarm_types::Mount::default();
    let mut target = None;
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (key, value) = match item.split_once('=') {
            Some((key, value)) => (key.trim(), Some(value.trim())),
            None => (item, None),
        };
        match (key.to_ascii_lowercase().as_str(), value) {
            ("type", Some(kind)) => {
                mount.kind = match kind {
                    "bind" => swarm_types::MountKind::Bind,
                    "volume" => swarm_types::MountKind::Volume,
                    "tmpfs" => swarm_types::MountKind::Tmpfs,
                    other => {
                        return Err(format!(
                            "{text:?}: unknown mount type {other:?}; use bind, volume or tmpfs"
                        ));
                    }
                }
            }
            ("source" | "src", Some(source)) => mount.source = source.to_string(),
            ("target" | "destination" | "dst", Some(path)) => target = Some(path.to_string()),
            ("readonly" | "ro", None) => mount.read_only = true,
            ("readonly" | "ro", Some(flag)) => {
                mount.read_only = match flag {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    other => {
                        return Err(format!("{text:?}: readonly={other:?}: use true or false"));
                    }
                }
            }
            _ => {
                return Err(format!(
                    "{text:?}: unknown item {item:?}; expected type=bind|volume|tmpfs, source=, target=, readonly"
                ));
            }
        }
    }
    mount.target = target.ok_or_else(|| {
        format!("{text:?}: target= is required, e.g. type=bind,source=/srv,target=/data")
    })?;
    Ok(mount)
}

/// A log filter for tracing (`warn`, `debug`, `swarmctl=trace,info`).
pub fn log_filter(text: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(text)
        .map(|_| text.to_string())
        .map_err(|e| format!("{text:?}: {e}; expected error, warn, info, debug or trace"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let cases: &[(&str, Result<i64, &str>)] = &[
            ("1000000", Ok(1_000_000)),
            ("1000000b", Ok(1_000_000)),
            ("512MiB", Ok(512 << 20)),
            ("512M", Ok(512 << 20)),
            ("512mb", Ok(512 << 20)),
            ("1GiB", Ok(1 << 30)),
            ("1.5G", Ok(3 << 29)),
            ("64k", Ok(64 << 10)),
            ("2 TiB", Ok(2 << 40)),
            (".5k", Ok(512)),
            ("0", Ok(0)),
            ("12X", Err("expected a size such as 512MiB")),
            ("", Err("expected a size")),
            ("MiB", Err("expected a size")),
            ("-5M", Err("expected a size")),
            ("1.5", Err("must be whole")),
            ("1.2.3M", Err("expected a size")),
            ("99999999999T", Err("too large")),
        ];
        for (input, want) in cases {
            match (memory_bytes(input), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, *want, "{input}"),
                (Err(e), Err(part)) => assert!(e.contains(part), "{input}: {e}"),
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn cpus() {
        let cases: &[(&str, Result<i64, &str>)] = &[
            ("0.5", Ok(500_000_000)),
            ("1", Ok(1_000_000_000)),
            ("2.25", Ok(2_250_000_000)),
            (".1", Ok(100_000_000)),
            ("0.000000001", Ok(1)),
            ("0", Ok(0)),
            ("0.0000000001", Err("at most 9 decimal places")),
            ("half", Err("expected a number of CPUs")),
            ("-1", Err("expected a number of CPUs")),
            ("1e3", Err("expected a number of CPUs")),
            ("99999999999", Err("too large")),
        ];
        for (input, want) in cases {
            match (nano_cpus(input), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, *want, "{input}"),
                (Err(e), Err(part)) => assert!(e.contains(part), "{input}: {e}"),
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn file_refs_take_a_name_or_dockers_form() {
        use swarm_types::FileRef;
        assert_eq!(
            file_ref("db-password"),
            Ok(FileRef::named("db-password", ""))
        );
        assert_eq!(
            file_ref("source=db-password,target=db.pass"),
            Ok(FileRef::named("db-password", "db.pass"))
        );
        assert_eq!(file_ref("src=conf"), Ok(FileRef::named("conf", "")));
        assert_eq!(
            file_ref("target=x"),
            Err("\"target=x\": source=NAME is missing".to_string())
        );
        assert!(file_ref("source=a,mode=0400").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("0"), Ok(Duration::ZERO));
        let err = duration("5x").expect_err("bad unit");
        assert!(err.contains("expected a duration such as"), "{err}");
    }

    #[test]
    fn pairs_env_and_constraints() {
        assert_eq!(key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(key_value("flag"), Ok(("flag".into(), String::new())));
        assert!(key_value("=x").is_err());
        assert_eq!(env_var("A="), Ok("A=".into()));
        assert!(env_var("A").expect_err("no =").contains("NAME=VALUE"));
        assert_eq!(
            constraint("node.labels.zone==east"),
            Ok("node.labels.zone==east".into())
        );
        assert!(
            constraint("node.color==red")
                .expect_err("unknown key")
                .contains("unknown key")
        );
        assert!(log_filter("debug").is_ok());
        assert_eq!(
            mount("type=bind,source=/srv,target=/data,readonly"),
            Ok(swarm_types::Mount {
                kind: swarm_types::MountKind::Bind,
                source: "/srv".into(),
                target: "/data".into(),
                read_only: true,
            })
        );
        assert_eq!(
            mount("type=tmpfs,dst=/scratch,ro=false"),
            Ok(swarm_types::Mount {
                kind: swarm_types::MountKind::Tmpfs,
                target: "/scratch".into(),
                ..Default::default()
            })
        );
        for (bad, want) in [
            ("type=nfs,target=/x", "unknown mount type \"nfs\""),
            ("source=/srv", "target= is required"),
            ("target=/x,color=red", "unknown item \"color=red\""),
            ("target=/x,readonly=maybe", "use true or false"),
        ] {
            let err = mount(bad).expect_err(bad);
            assert!(err.contains(want), "{bad}: {err}");
        }
        assert!(log_filter("=[").is_err());
    }
}
