//! Placement constraints (`node.labels.zone==east`): parsing and matching against a node.

use crate::model::Node;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operator {
    Equal,
    NotEqual,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Key {
    Id,
    Hostname,
    Role,
    Ip,
    Os,
    Arch,
    NodeLabel(String),
    EngineLabel(String),
}

/// A parsed constraint. Keys are matched case-insensitively, values exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Constraint {
    key: Key,
    operator: Operator,
    value: String,
}

const NODE_LABEL_PREFIX: &str = "node.labels.";
const ENGINE_LABEL_PREFIX: &str = "engine.labels.";

impl Constraint {
    /// Parses `key==value` or `key!=value`; the error says what is wrong, for a reason string.
    pub fn parse(expression: &str) -> Result<Constraint, String> {
        let (key, operator, value) = if let Some((key, value)) = expression.split_once("==") {
            (key, Operator::Equal, value)
        } else if let Some((key, value)) = expression.split_once("!=") {
            (key, Operator::NotEqual, value)
        } else {
            return Err(format!(
                "invalid constraint {expression:?}: expected an == or != operator"
            ));
        };
        let key = key.trim();
        let value = value.trim();
        if value.is_empty() {
            return Err(format!("invalid constraint {expression:?}: empty value"));
        }
        if value.contains("==") || value.contains("!=") {
            return Err(format!(
                "invalid constraint {expression:?}: more than one operator"
            ));
        }
        let lower = key.to_ascii_lowercase();
        let key = match lower.as_str() {
            "node.id" => Key::Id,
            "node.hostname" => Key::Hostname,
            "node.role" => Key::Role,
            "node.ip" => Key::Ip,
            "node.platform.os" => Key::Os,
            "node.platform.arch" => Key::Arch,
            other => {
                if let Some(label) = other.strip_prefix(NODE_LABEL_PREFIX) {
                    if label.is_empty() {
                        return Err(format!(
                            "invalid constraint {expression:?}: empty label name"
                        ));
                    }
                    Key::NodeLabel(label.to_owned())
                } else if let Some(label) = other.strip_prefix(ENGINE_LABEL_PREFIX) {
                    if label.is_empty() {
                        return Err(format!(
                            "invalid constraint {expression:?}: empty label name"
                        ));
                    }
                    Key::EngineLabel(label.to_owned())
                } else {
                    return Err(format!(
                        "invalid constraint {expression:?}: unknown key {key:?} (expected node.id, \
                         node.hostname, node.role, node.ip, node.platform.os, node.platform.arch, \
                         node.labels.<name> or engine.labels.<name>)"
                    ));
                }
            }
        };
        Ok(Constraint {
            key,
            operator,
            value: value.to_owned(),
        })
    }

    /// Whether `node` satisfies the constraint. A missing label satisfies only `!=`.
    pub fn matches(&self, node: &Node) -> bool {
        let actual: Option<&str> = match &self.key {
            Key::Id => Some(&node.id),
            Key::Hostname => Some(&node.hostname),
            Key::Role => Some(node.role.as_str()),
            Key::Ip => Some(&node.addr),
            Key::Os => Some(&node.os),
            Key::Arch => Some(&node.arch),
            Key::NodeLabel(name) => find_label(&node.labels, name),
            Key::EngineLabel(name) => find_label(&node.engine_labels, name),
        };
        match (self.operator, actual) {
            (Operator::Equal, Some(actual)) => actual == self.value,
            (Operator::Equal, None) => false,
            (Operator::NotEqual, Some(actual)) => actual != self.value,
            (Operator::NotEqual, None) => true,
        }
    }
}

fn find_label<'a>(labels: &'a [(String, String)], name: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// Parses every expression, stopping at the first malformed one.
pub fn parse_all(expressions: &[String]) -> Result<Vec<Constraint>, String> {
    expressions.iter().map(|e| Constraint::parse(e)).collect()
}
