//! Placement constraints: `key==value` or `key!=value` over node attributes, as in SwarmKit.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::node::{Node, NodeRole};
use crate::validate::ValidationError;

/// The comparison of a constraint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConstraintOp {
    Eq,
    Ne,
}

/// One parsed constraint expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Constraint {
    /// Lower-cased key, e.g. `node.labels.zone`.
    pub key: String,
    pub op: ConstraintOp,
    pub value: String,
}

const FIXED_KEYS: &[&str] = &[
    "node.id",
    "node.hostname",
    "node.ip",
    "node.role",
    "node.platform.os",
    "node.platform.arch",
];
const PREFIX_KEYS: &[&str] = &["node.labels.", "engine.labels."];

impl FromStr for Constraint {
    type Err = String;

    fn from_str(expr: &str) -> Result<Self, String> {
        let (key, op, value) = if let Some((k, v)) = expr.split_once("!=") {
            (k, ConstraintOp::Ne, v)
        } else if let Some((k, v)) = expr.split_once("==") {
            (k, ConstraintOp::Eq, v)
        } else {
            return Err(format!("{expr:?}: expected KEY==VALUE or KEY!=VALUE"));
        };
        let key = key.trim().to_ascii_lowercase();
        let value = value.trim().to_string();
        let known = FIXED_KEYS.contains(&key.as_str())
            || PREFIX_KEYS
                .iter()
                .any(|p| key.starts_with(p) && key.len() > p.len());
        if !known {
            return Err(format!(
                "{expr:?}: unknown key {key:?}; use one of {}, node.labels.<name>, engine.labels.<name>",
                FIXED_KEYS.join(", ")
            ));
        }
        if value.is_empty() {
            return Err(format!("{expr:?}: value must not be empty"));
        }
        if value.contains("==") || value.contains("!=") {
            return Err(format!("{expr:?}: more than one operator"));
        }
        Ok(Constraint { key, op, value })
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            ConstraintOp::Eq => "==",
            ConstraintOp::Ne => "!=",
        };
        write!(f, "{}{}{}", self.key, op, self.value)
    }
}

impl Constraint {
    /// Whether `node` satisfies this constraint. Keys compare case-insensitively, values exactly;
    /// a label the node lacks never equals a value (and so always satisfies `!=`).
    pub fn matches(&self, node: &Node) -> bool {
        let desc = node.description.as_ref();
        let role = match node.role {
            NodeRole::Manager => "manager",
            NodeRole::Worker => "worker",
        };
        let actual: Option<&str> = match self.key.as_str() {
            "node.id" => Some(&node.id),
            "node.hostname" => desc.map(|d| d.hostname.as_str()),
            "node.ip" => Some(node.status.addr.split(':').next().unwrap_or_default()),
            "node.role" => Some(role),
            "node.platform.os" => desc.map(|d| d.platform.os.as_str()),
            "node.platform.arch" => desc.map(|d| d.platform.arch.as_str()),
            key => {
                if let Some(label) = key.strip_prefix("node.labels.") {
                    node.spec
                        .annotations
                        .labels
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(label))
                        .map(|(_, v)| v.as_str())
                } else if let Some(label) = key.strip_prefix("engine.labels.") {
                    desc.and_then(|d| {
                        d.engine
                            .labels
                            .iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case(label))
                            .map(|(_, v)| v.as_str())
                    })
                } else {
                    None
                }
            }
        };
        let equal = actual == Some(self.value.as_str());
        match self.op {
            ConstraintOp::Eq => equal,
            ConstraintOp::Ne => !equal,
        }
    }
}

/// Whether `node` satisfies every expression (expressions that do not parse never match).
pub fn node_satisfies(node: &Node, exprs: &[String]) -> bool {
    exprs
        .iter()
        .all(|e| e.parse::<Constraint>().is_ok_and(|c| c.matches(node)))
}

pub(crate) fn check_constraints(field: &str, exprs: &[String]) -> Result<(), ValidationError> {
    for (i, expr) in exprs.iter().enumerate() {
        expr.parse::<Constraint>()
            .map_err(|e| ValidationError::new(format!("{field}[{i}]"), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_keys_and_rejects_the_rest() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("node.labels.zone==east", Ok("node.labels.zone==east")),
            ("Node.Role != manager", Ok("node.role!=manager")),
            ("engine.labels.ssd==true", Ok("engine.labels.ssd==true")),
            ("node.platform.os==linux", Ok("node.platform.os==linux")),
            ("node.labels.==x", Err("unknown key")),
            ("node.color==red", Err("unknown key")),
            ("node.role=manager", Err("expected KEY==VALUE")),
            ("node.role==", Err("must not be empty")),
        ];
        for (input, expect) in cases {
            match (input.parse::<Constraint>(), expect) {
                (Ok(c), Ok(text)) => assert_eq!(c.to_string(), *text, "{input}"),
                (Err(e), Err(part)) => assert!(e.contains(part), "{input}: {e}"),
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }
}

#[cfg(test)]
mod match_tests {
    use super::*;
    use crate::node::{NodeDescription, Platform};

    #[test]
    fn matches_node_attributes() {
        let mut node = Node {
            id: "n1".into(),
            role: NodeRole::Manager,
            ..Default::default()
        };
        node.spec
            .annotations
            .labels
            .insert("zone".into(), "east".into());
        node.description = Some(NodeDescription {
            hostname: "h1".into(),
            platform: Platform {
                os: "linux".into(),
                arch: "x86_64".into(),
            },
            ..Default::default()
        });
        let cases = [
            ("node.id==n1", true),
            ("node.hostname==h1", true),
            ("node.hostname!=h1", false),
            ("node.role==manager", true),
            ("node.role==worker", false),
            ("node.labels.zone==east", true),
            ("node.labels.ZONE==east", true),
            ("node.labels.zone==East", false),
            ("node.labels.rack==1", false),
            ("node.labels.rack!=1", true),
            ("node.platform.os==linux", true),
            ("node.platform.arch!=x86_64", false),
        ];
        for (expr, want) in cases {
            assert_eq!(node_satisfies(&node, &[expr.to_string()]), want, "{expr}");
        }
        assert!(!node_satisfies(&node, &["garbage".to_string()]));
    }
}
