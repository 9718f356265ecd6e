//! Finding the one object a user means: by exact id, by name, or by a unique id prefix.

use crate::error::CliError;

/// How to read an object's id and name for resolution.
pub trait Named {
    fn id(&self) -> &str;
    fn name(&self) -> &str;
}

impl Named for swarm_types::Service {
    fn id(&self) -> &str {
        &self.id
    }
    fn name(&self) -> &str {
        &self.spec.annotations.name
    }
}

impl Named for swarm_types::Node {
    fn id(&self) -> &str {
        &self.id
    }
    fn name(&self) -> &str {
        self.display_name()
    }
}

impl Named for swarm_types::Task {
    fn id(&self) -> &str {
        &self.id
    }
    fn name(&self) -> &str {
        &self.annotations.name
    }
}

impl Named for swarm_types::Plugin {
    fn id(&self) -> &str {
        &self.id
    }
    fn name(&self) -> &str {
        &self.spec.annotations.name
    }
}

impl Named for swarm_types::Cluster {
    fn id(&self) -> &str {
        &self.id
    }
    fn name(&self) -> &str {
        &self.spec.annotations.name
    }
}

/// The object `query` names among `items`, in this order: the object with that exact id; the one
/// object with that name; the one object whose id starts with `query`. When several share the
/// name, `prefer` may single one out (e.g. the current task among old ones of the same name).
/// `kind` names the objects in messages ("service", "node").
pub fn resolve<'a, T: Named>(
    kind: &str,
    query: &str,
    items: &'a [T],
    prefer: impl Fn(&T) -> bool,
) -> Result<&'a T, CliError> {
    if query.is_empty() {
        return Err(CliError::user(format!(
            "the {kind} to use must not be empty"
        )));
    }
    if let Some(item) = items.iter().find(|i| i.id() == query) {
        return Ok(item);
    }
    let by_name: Vec<&T> = items.iter().filter(|i| i.name() == query).collect();
    match by_name.as_slice() {
        [one] => return Ok(one),
        [] => {}
        several => {
            let preferred: Vec<&T> = several.iter().copied().filter(|i| prefer(i)).collect();
            if let [one] = preferred.as_slice() {
                return Ok(one);
            }
            return Err(ambiguous(kind, query, "name", several));
        }
    }
    let by_prefix: Vec<&T> = items.iter().filter(|i| i.id().starts_with(query)).collect();
    match by_prefix.as_slice() {
        [one] => Ok(one),
        [] => Err(CliError::user(format!(
            "no {kind} {query:?}: give an id, a unique id prefix or a name (`swarmctl {kind} ls` lists them)"
        ))),
        several => Err(ambiguous(kind, query, "id prefix", several)),
    }
}

fn ambiguous<T: Named>(kind: &str, query: &str, how: &str, matches: &[&T]) -> CliError {
    let mut listed: Vec<String> = matches
        .iter()
        .map(|i| format!("{} ({})", i.id(), i.name()))
        .collect();
    listed.sort();
    CliError::user(format!(
        "{kind} {how} {query:?} is ambiguous: it matches {}; give the full id",
        listed.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Item(&'static str, &'static str, bool);

    impl Named for Item {
        fn id(&self) -> &str {
            self.0
        }
        fn name(&self) -> &str {
            self.1
        }
    }

    fn items() -> Vec<Item> {
        vec![
            Item("abc111", "web", true),
            Item("abc222", "api", true),
            Item("def333", "db", true),
            Item("abc111x", "abc111", true),
            Item("f00", "dup", false),
            Item("f01", "dup", true),
            Item("f02", "twice", true),
            Item("f03", "twice", true),
        ]
    }

    fn check(query: &str, want: Result<&str, &str>) {
        let items = items();
        match (resolve("service", query, &items, |i| i.2), want) {
            (Ok(got), Ok(id)) => assert_eq!(got.0, id, "{query}"),
            (Err(e), Err(part)) => {
                assert_eq!(e.exit_code(), 1);
                assert!(e.to_string().contains(part), "{query}: {e}");
            }
            (Ok(got), Err(part)) => panic!("{query}: got {}, want error {part:?}", got.0),
            (Err(e), Ok(id)) => panic!("{query}: got error {e}, want {id}"),
        }
    }

    #[test]
    fn exact_id_then_name_then_unique_prefix() {
        check("abc111", Ok("abc111"));
        check("web", Ok("abc111"));
        check("db", Ok("def333"));
        check("de", Ok("def333"));
        check("abc2", Ok("abc222"));
        check("dup", Ok("f01"));
    }

    #[test]
    fn ambiguity_and_absence_are_explained() {
        check(
            "abc",
            Err(
                "service id prefix \"abc\" is ambiguous: it matches abc111 (web), abc111x (abc111), abc222 (api); give the full id",
            ),
        );
        check(
            "twice",
            Err("service name \"twice\" is ambiguous: it matches f02 (twice), f03 (twice)"),
        );
        check(
            "zzz",
            Err("no service \"zzz\": give an id, a unique id prefix or a name"),
        );
        check("", Err("must not be empty"));
    }
}
