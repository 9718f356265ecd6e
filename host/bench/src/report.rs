//! Result rows, printed as one table (comfy-table) or as one JSON object per line.

use std::time::Duration;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::Value;

/// How results are printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One table once every row is measured.
    #[default]
    Table,
    /// One JSON object per row, one line each, printed as soon as the row is measured.
    Json,
}

/// One measured row: ordered fields, each with its JSON value and its text for the table.
#[derive(Clone, Debug, Default)]
pub struct Row {
    fields: Vec<(&'static str, Value, String)>,
}

impl Row {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn text(mut self, key: &'static str, value: impl Into<String>) -> Self {
        let value = value.into();
        self.fields.push((key, Value::from(value.clone()), value));
        self
    }

    pub fn int(mut self, key: &'static str, value: u64) -> Self {
        self.fields
            .push((key, Value::from(value), value.to_string()));
        self
    }

    /// A float shown in the table with `decimals` decimals.
    pub fn float(mut self, key: &'static str, value: f64, decimals: usize) -> Self {
        self.fields
            .push((key, Value::from(value), format!("{value:.decimals$}")));
        self
    }

    /// A duration, in seconds in both formats (`key` should be `seconds` or end in `_seconds`).
    pub fn seconds(self, key: &'static str, value: Duration) -> Self {
        self.opt_seconds(key, Some(value.as_secs_f64()))
    }

    /// Seconds that may be unknown (`null` in JSON, `-` in the table).
    pub fn opt_seconds(mut self, key: &'static str, value: Option<f64>) -> Self {
        let (json, text) = match value {
            Some(seconds) => (Value::from(seconds), format_seconds(seconds)),
            None => (Value::Null, "-".to_owned()),
        };
        self.fields.push((key, json, text));
        self
    }

    pub fn flag(mut self, key: &'static str, value: bool) -> Self {
        let text = if value { "yes" } else { "no" };
        self.fields.push((key, Value::from(value), text.to_owned()));
        self
    }

    /// The row as one line of JSON, keeping the field order.
    pub fn to_json_line(&self) -> anyhow::Result<String> {
        let mut parts = Vec::with_capacity(self.fields.len());
        for (key, value, _) in &self.fields {
            parts.push(format!(
                "{}:{}",
                serde_json::to_string(key)?,
                serde_json::to_string(value)?
            ));
        }
        Ok(format!("{{{}}}", parts.join(",")))
    }
}

/// Seconds with about four significant digits.
fn format_seconds(seconds: f64) -> String {
    let magnitude = if seconds > 0.0 {
        seconds.abs().log10().floor()
    } else {
        0.0
    };
    // 4 significant digits: 12.34, 1.234, 0.1234, 0.001234.
    let decimals = (3.0 - magnitude).clamp(0.0, 9.0);
    // Clamped to 0..=9 just above, so the conversion is exact.
    let decimals = decimals as usize;
    format!("{seconds:.decimals$}")
}

/// Collects rows and prints them in the chosen format.
#[derive(Debug)]
pub struct Output {
    format: Format,
    rows: Vec<Row>,
}

impl Output {
    pub fn new(format: Format) -> Self {
        Self {
            format,
            rows: Vec::new(),
        }
    }

    /// Records a row; in JSON it is printed at once.
    pub fn push(&mut self, row: Row) -> anyhow::Result<()> {
        if self.format == Format::Json {
            println!("{}", row.to_json_line()?);
        }
        self.rows.push(row);
        Ok(())
    }

    /// Prints the table (JSON rows are already out).
    pub fn finish(self) {
        if self.format != Format::Table || self.rows.is_empty() {
            return;
        }
        let mut columns: Vec<&'static str> = Vec::new();
        for row in &self.rows {
            for (key, _, _) in &row.fields {
                if !columns.contains(key) {
                    columns.push(key);
                }
            }
        }
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        table.set_header(columns.iter().copied());
        for row in &self.rows {
            table.add_row(columns.iter().map(|column| {
                row.fields
                    .iter()
                    .find(|(key, _, _)| key == column)
                    .map_or_else(String::new, |(_, _, text)| text.clone())
            }));
        }
        println!("{table}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_keep_four_significant_digits() {
        assert_eq!(format_seconds(19.04), "19.04");
        assert_eq!(format_seconds(1.4567), "1.457");
        assert_eq!(format_seconds(0.17), "0.1700");
        assert_eq!(format_seconds(0.0012346), "0.001235");
        assert_eq!(format_seconds(0.0), "0.000");
    }

    #[test]
    fn json_lines_keep_field_order_and_types() {
        let row = Row::new()
            .text("scheduler", "wasm")
            .int("tasks", 1000)
            .seconds("seconds", Duration::from_millis(250))
            .opt_seconds("swarmkit_seconds", None)
            .flag("met", true);
        assert_eq!(
            row.to_json_line().expect("json"),
            r#"{"scheduler":"wasm","tasks":1000,"seconds":0.25,"swarmkit_seconds":null,"met":true}"#
        );
    }
}
