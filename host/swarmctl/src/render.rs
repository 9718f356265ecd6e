//! Output for people and programs: borderless tables, `Key: value` blocks, ages, sizes, JSON.

use std::time::Duration;

use comfy_table::{ContentArrangement, Table, presets};
use serde::Serialize;
use swarm_types as t;

/// A table in docker's style: a header row, left-aligned columns three spaces apart, no borders.
pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().copied());
    for row in rows {
        table.add_row(row);
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 3));
    }
    let mut text = String::new();
    for line in table.lines() {
        let line = line.trim_end();
        if !line.is_empty() {
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

/// `Key: value` lines with the values aligned; empty values are left out.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, _)| k.len())
        .max()
        .unwrap_or(0);
    let mut text = String::new();
    for (key, value) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        let key = format!("{key}:");
        text.push_str(&format!("{key:<width$} {value}\n", width = width + 1));
    }
    text
}

/// Pretty JSON of a domain object (or a list of them), with a final newline.
pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<String> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    Ok(text)
}

/// How long ago, for people, as docker says it: `3 seconds`, `about a minute`, `2 hours`.
pub fn human_duration(d: Duration) -> String {
    let seconds = d.as_secs();
    let minutes = seconds / 60;
    let hours = minutes / 60;
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    match () {
        () if seconds < 1 => "less than a second".to_string(),
        () if seconds < 60 => plural(seconds, "second"),
        () if minutes == 1 => "about a minute".to_string(),
        () if minutes < 60 => plural(minutes, "minute"),
        () if hours == 1 => "about an hour".to_string(),
        () if hours < 48 => plural(hours, "hour"),
        () if hours < 24 * 14 => plural(hours / 24, "day"),
        () if hours < 24 * 60 => plural(hours / 24 / 7, "week"),
        () if hours < 24 * 365 * 2 => plural(hours / 24 / 30, "month"),
        () => plural(hours / 24 / 365, "year"),
    }
}

/// `3 seconds ago` relative to `now`; empty for an unset time.
pub fn ago(at: t::Timestamp, now: t::Timestamp) -> String {
    if at.unix_nanos == 0 {
        return String::new();
    }
    format!("{} ago", human_duration(at.elapsed_at(now)))
}

/// A time for inspect output: RFC 3339 and its age, `2026-01-02T03:04:05.000Z (2 hours ago)`.
pub fn time(at: t::Timestamp, now: t::Timestamp) -> String {
    if at.unix_nanos == 0 {
        return String::new();
    }
    format!("{at} ({})", ago(at, now))
}

/// Bytes in the largest binary unit that divides them: `512MiB`, `1GiB`, `1000000` bytes stay.
pub fn bytes(n: i64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if n != 0 && n % (1i64 << shift) == 0 {
            return format!("{}{unit}", n >> shift);
        }
    }
    format!("{n}B")
}

/// Nano-CPUs as CPUs: `500000000` is `0.5`.
pub fn cpus(nano: i64) -> String {
    let whole = nano / 1_000_000_000;
    let fraction = (nano % 1_000_000_000).abs();
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:09}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// `cpu 0.5, memory 512MiB`, or empty when nothing is set.
pub fn resources(r: &t::Resources) -> String {
    let mut parts = Vec::new();
    if r.nano_cpus != 0 {
        parts.push(format!("cpu {}", cpus(r.nano_cpus)));
    }
    if r.memory_bytes != 0 {
        parts.push(format!("memory {}", bytes(r.memory_bytes)));
    }
    parts.join(", ")
}

/// `k=v, k2=v2` in key order.
pub fn labels(labels: &std::collections::BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The runtime of a task spec for tables: `process: sleep 1000`.
pub fn runtime(r: &t::Runtime) -> String {
    format!("{}: {}", r.kind(), r.summary())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_have_no_borders_and_no_trailing_spaces() {
        let text = table(
            &["ID", "NAME", "MODE"],
            vec![
                vec!["a1".into(), "web".into(), "replicated".into()],
                vec!["b2".into(), "".into(), "global".into()],
            ],
        );
        assert_eq!(
            text,
            "ID   NAME   MODE\na1   web    replicated\nb2          global\n"
        );
        assert_eq!(table(&["ID", "NAME"], vec![]), "ID   NAME\n");
    }

    #[test]
    fn fields_align_and_skip_empty_values() {
        let text = fields(&[
            ("ID", "x".into()),
            ("Name", "web".into()),
            ("Long key", String::new()),
        ]);
        assert_eq!(text, "ID:   x\nName: web\n");
    }

    #[test]
    fn durations_read_like_docker() {
        let cases = [
            (0, "less than a second"),
            (1, "1 second"),
            (3, "3 seconds"),
            (60, "about a minute"),
            (119, "about a minute"),
            (300, "5 minutes"),
            (3600, "about an hour"),
            (7200, "2 hours"),
            (3 * 86400, "3 days"),
            (21 * 86400, "3 weeks"),
            (90 * 86400, "3 months"),
            (3 * 365 * 86400, "3 years"),
        ];
        for (seconds, want) in cases {
            assert_eq!(
                human_duration(Duration::from_secs(seconds)),
                want,
                "{seconds}"
            );
        }
        let now = t::Timestamp::from_unix_nanos(10_000_000_000);
        assert_eq!(
            ago(t::Timestamp::from_unix_nanos(7_000_000_000), now),
            "3 seconds ago"
        );
        assert_eq!(ago(t::Timestamp::default(), now), "");
    }

    #[test]
    fn sizes_and_cpus_print_back() {
        assert_eq!(bytes(512 << 20), "512MiB");
        assert_eq!(bytes(1 << 30), "1GiB");
        assert_eq!(bytes(1_000_000), "1000000B");
        assert_eq!(bytes(1536), "1536B");
        assert_eq!(bytes(3 << 10), "3KiB");
        assert_eq!(cpus(500_000_000), "0.5");
        assert_eq!(cpus(2_000_000_000), "2");
        assert_eq!(cpus(1), "0.000000001");
        assert_eq!(
            resources(&t::Resources {
                nano_cpus: 250_000_000,
                memory_bytes: 64 << 20
            }),
            "cpu 0.25, memory 64MiB"
        );
    }
}
