//! A linearizability checker for histories of independent read/write registers (key -> value).
//!
//! Registers are independent, so a history is linearizable iff each key's sub-history is
//! (P-compositionality); each key is checked on its own. The search is Wing & Gong's with Lowe's
//! memoization: from a state (the set of operations linearized so far, the register's value) an
//! operation can be linearized next iff it was invoked before every other pending operation
//! completed; a read only if it returns the current value. States already explored are not
//! explored again. The history is linearizable iff some path linearizes every completed
//! operation; an operation with an unknown outcome (timed out, connection lost) has no completion
//! bound and may be linearized anywhere after its invocation, or not at all.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::Duration;

/// What an operation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Set the register to this value.
    Write(String),
    /// Read the register: the value returned (`None`: never written).
    Read(Option<String>),
}

/// One operation of a client on one register.
#[derive(Clone, Debug)]
pub struct Operation {
    pub client: usize,
    pub key: String,
    pub kind: Kind,
    /// When the client invoked it (from any fixed origin shared by the whole history).
    pub invoke: Duration,
    /// When it completed with its result; `None` when the outcome is unknown (for a read, whose
    /// result is then unknown too, the operation is ignored).
    pub complete: Option<Duration>,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Write(v) => write!(f, "client {} write {}={v:?}", self.client, self.key)?,
            Kind::Read(v) => write!(f, "client {} read {} -> {v:?}", self.client, self.key)?,
        }
        let end = self
            .complete
            .map_or("?".to_string(), |c| format!("{:.3}s", c.as_secs_f64()));
        write!(f, " [{:.3}s, {end}]", self.invoke.as_secs_f64())
    }
}

/// A key whose sub-history cannot be linearized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub key: String,
    pub explanation: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "key {:?} is not linearizable: {}",
            self.key, self.explanation
        )
    }
}

/// Check a whole history: `Ok` iff every key's sub-history is linearizable.
pub fn check(history: &[Operation]) -> Result<(), Violation> {
    let mut keys: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in history {
        keys.entry(&op.key).or_default().push(op);
    }
    for (key, ops) in keys {
        check_key(key, &ops)?;
    }
    Ok(())
}

/// One register's operations, prepared for the search: values interned, sorted by invocation.
struct Register<'a> {
    ops: Vec<&'a Operation>,
    /// Per operation: `(is_write, value)` with values interned (`None`: unwritten).
    effect: Vec<(bool, Option<usize>)>,
    /// Completion times, `Duration::MAX` for an unknown outcome.
    complete: Vec<Duration>,
    memo: HashSet<(Vec<u64>, Option<usize>)>,
    /// The most operations linearized on any path, and the state there (for the explanation).
    deepest: (usize, Vec<u64>, Option<usize>),
}

fn check_key(key: &str, ops: &[&Operation]) -> Result<(), Violation> {
    // A read with an unknown outcome says nothing. A write with an unknown outcome whose value no
    // read returned can always be taken as not having happened: in any linearization it could
    // only be followed by another write or nothing, so dropping it leaves a linearization.
    let read_values: HashSet<&String> = ops
        .iter()
        .filter(|o| o.complete.is_some())
        .filter_map(|o| match &o.kind {
            Kind::Read(Some(v)) => Some(v),
            _ => None,
        })
        .collect();
    let mut kept: Vec<&Operation> = ops
        .iter()
        .copied()
        .filter(|o| match &o.kind {
            Kind::Read(_) => o.complete.is_some(),
            Kind::Write(v) => o.complete.is_some() || read_values.contains(v),
        })
        .collect();
    kept.sort_by_key(|o| o.invoke);
    let mut interned: HashMap<&str, usize> = HashMap::new();
    let effect = kept
        .iter()
        .map(|o| {
            let (write, v) = match &o.kind {
                Kind::Write(v) => (true, Some(v.as_str())),
                Kind::Read(v) => (false, v.as_deref()),
            };
            let next = interned.len();
            (write, v.map(|v| *interned.entry(v).or_insert(next)))
        })
        .collect();
    let words = kept.len().div_ceil(64);
    let mut reg = Register {
        complete: kept
            .iter()
            .map(|o| o.complete.unwrap_or(Duration::MAX))
            .collect(),
        ops: kept,
        effect,
        memo: HashSet::new(),
        deepest: (0, vec![0; words], None),
    };
    if reg.search() {
        return Ok(());
    }
    Err(Violation {
        key: key.to_string(),
        explanation: reg.explain(),
    })
}

fn has(set: &[u64], i: usize) -> bool {
    set[i / 64] & (1 << (i % 64)) != 0
}

/// The search's position at one linearized prefix: what may come next, and what was tried.
struct Frame {
    candidates: Vec<usize>,
    next: usize,
    value: Option<usize>,
    taken: Option<usize>,
}

impl Register<'_> {
    /// What may be linearized next from `(done, value)`: `Ok(None)` when every completed
    /// operation is linearized, `Err(())` when this state was explored before.
    fn expand(&mut self, done: &[u64], value: Option<usize>) -> Result<Option<Vec<usize>>, ()> {
        let pending = (0..self.ops.len()).filter(|&i| !has(done, i));
        // Every completed operation linearized: the rest (unknown outcomes) need not happen.
        let bound = pending.clone().map(|i| self.complete[i]).min();
        let Some(bound) = bound.filter(|b| *b != Duration::MAX) else {
            return Ok(None);
        };
        if !self.memo.insert((done.to_vec(), value)) {
            return Err(());
        }
        Ok(Some(
            pending
                .take_while(|&i| self.ops[i].invoke <= bound)
                .collect(),
        ))
    }

    /// Whether every completed operation can be linearized (depth-first, iteratively).
    fn search(&mut self) -> bool {
        let mut done = vec![0u64; self.ops.len().div_ceil(64)];
        let (mut value, mut count) = (None, 0);
        let mut stack: Vec<Frame> = Vec::new();
        loop {
            if count > self.deepest.0 {
                self.deepest = (count, done.clone(), value);
            }
            match self.expand(&done, value) {
                Ok(None) => return true,
                Ok(Some(candidates)) => stack.push(Frame {
                    candidates,
                    next: 0,
                    value,
                    taken: None,
                }),
                Err(()) => {}
            }
            // Take the next candidate that fits, backtracking as needed.
            loop {
                let Some(top) = stack.last_mut() else {
                    return false;
                };
                if let Some(i) = top.taken.take() {
                    done[i / 64] &= !(1 << (i % 64));
                    count -= 1;
                }
                let Some(&i) = top.candidates.get(top.next) else {
                    stack.pop();
                    continue;
                };
                top.next += 1;
                let (write, v) = self.effect[i];
                if !write && v != top.value {
                    continue;
                }
                done[i / 64] |= 1 << (i % 64);
                top.taken = Some(i);
                count += 1;
                value = if write { v } else { top.value };
                break;
            }
        }
    }

    /// Names the operations that could not come next at the deepest point the search reached.
    fn explain(&self) -> String {
        let (count, done, value) = &self.deepest;
        let value = value.and_then(|v| {
            (0..self.ops.len())
                .find(|&i| self.effect[i] == (true, Some(v)))
                .and_then(|i| match &self.ops[i].kind {
                    Kind::Write(v) => Some(v.clone()),
                    Kind::Read(_) => None,
                })
        });
        let pending: Vec<usize> = (0..self.ops.len()).filter(|&i| !has(done, i)).collect();
        let bound = pending.iter().map(|&i| self.complete[i]).min();
        let stuck: Vec<String> = pending
            .iter()
            .filter(|&&i| bound.is_some_and(|b| self.ops[i].invoke <= b))
            .map(|&i| format!("  {}", self.ops[i]))
            .collect();
        format!(
            "after linearizing at most {count} of {} operations (value then {value:?}), none of \
             these can come next:\n{}",
            self.ops.len(),
            stuck.join("\n")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: usize, kind: Kind, invoke: u64, complete: Option<u64>) -> Operation {
        Operation {
            client,
            key: "k".into(),
            kind,
            invoke: Duration::from_millis(invoke),
            complete: complete.map(Duration::from_millis),
        }
    }
    fn w(c: usize, v: &str, i: u64, e: Option<u64>) -> Operation {
        op(c, Kind::Write(v.into()), i, e)
    }
    fn r(c: usize, v: Option<&str>, i: u64, e: u64) -> Operation {
        op(c, Kind::Read(v.map(str::to_string)), i, Some(e))
    }

    #[test]
    fn a_sequential_history_passes() {
        let h = [
            r(0, None, 0, 1),
            w(0, "a", 2, Some(3)),
            r(1, Some("a"), 4, 5),
            w(1, "b", 6, Some(7)),
            r(0, Some("b"), 8, 9),
        ];
        assert_eq!(check(&h), Ok(()));
    }

    #[test]
    fn a_stale_read_after_a_completed_write_fails() {
        let h = [
            w(0, "a", 0, Some(1)),
            w(0, "b", 2, Some(3)),
            r(1, Some("a"), 4, 5),
        ];
        let err = check(&h).expect_err("not linearizable");
        assert_eq!(err.key, "k");
        assert!(err.explanation.contains("read k -> Some(\"a\")"), "{err}");
    }

    #[test]
    fn a_read_of_a_value_never_written_fails() {
        let h = [w(0, "a", 0, Some(1)), r(1, Some("z"), 0, 5)];
        assert!(check(&h).is_err());
        assert!(check(&[r(1, Some("z"), 0, 5)]).is_err());
    }

    #[test]
    fn concurrent_write_and_read_pass_in_both_orders() {
        for seen in [None, Some("a")] {
            let h = [w(0, "a", 0, Some(10)), r(1, seen, 1, 9)];
            assert_eq!(check(&h), Ok(()), "{seen:?}");
        }
        // Two concurrent writes, then reads agreeing on either winner.
        for last in ["a", "b"] {
            let h = [
                w(0, "a", 0, Some(10)),
                w(1, "b", 1, Some(9)),
                r(2, Some(last), 11, 12),
                r(3, Some(last), 13, 14),
            ];
            assert_eq!(check(&h), Ok(()), "{last}");
        }
    }

    #[test]
    fn unknown_writes_pass_whether_read_or_not() {
        // Read long after the client gave up on it.
        let h = [
            w(0, "a", 0, None),
            r(1, None, 5, 6),
            r(1, Some("a"), 50, 51),
        ];
        assert_eq!(check(&h), Ok(()));
        let h = [w(0, "a", 0, None), r(1, None, 5, 6), r(1, None, 50, 51)];
        assert_eq!(check(&h), Ok(()));
        // But it cannot take effect before it was invoked.
        let h = [r(1, Some("a"), 0, 1), w(0, "a", 2, None)];
        assert!(check(&h).is_err());
        // Nor twice: once read, then replaced, it cannot reappear.
        let h = [
            w(0, "a", 0, None),
            r(1, Some("a"), 5, 6),
            w(1, "b", 7, Some(8)),
            r(1, Some("a"), 9, 10),
        ];
        assert!(check(&h).is_err());
    }

    #[test]
    fn a_read_going_back_to_an_older_value_fails() {
        let h = [
            w(0, "a", 0, Some(1)),
            w(0, "b", 2, Some(20)),
            r(1, Some("b"), 3, 4),
            r(2, Some("a"), 5, 6),
        ];
        let err = check(&h).expect_err("not linearizable");
        assert!(err.explanation.contains("Some(\"a\")"), "{err}");
        // With the second write's outcome unknown, too.
        let h = [
            w(0, "a", 0, Some(1)),
            w(0, "b", 2, None),
            r(1, Some("b"), 3, 4),
            r(2, Some("a"), 5, 6),
        ];
        assert!(check(&h).is_err());
    }

    #[test]
    fn keys_are_checked_independently() {
        let mut other = r(1, Some("a"), 4, 5);
        other.key = "j".into();
        let h = [w(0, "a", 0, Some(1)), other];
        assert_eq!(check(&h).expect_err("not linearizable").key, "j");
    }

    #[test]
    fn many_unknown_writes_never_read_do_not_blow_up_the_search() {
        // A leader's death leaves many writes with unknown outcomes; none was applied.
        let mut h: Vec<Operation> = (0..60)
            .map(|n| w(n as usize % 4, &format!("u{n}"), n, None))
            .collect();
        h.extend([w(0, "a", 100, Some(101)), w(0, "b", 102, Some(103))]);
        h.push(r(1, Some("a"), 104, 105));
        let start = std::time::Instant::now();
        assert!(check(&h).is_err());
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn a_long_concurrent_history_is_checked_quickly() {
        // 4 clients, each writing then reading its own value, all overlapping their neighbours.
        let mut h = Vec::new();
        for n in 0..1000u64 {
            let c = (n % 4) as usize;
            let v = format!("v{n}");
            h.push(w(c, &v, 10 * n, Some(10 * n + 25)));
            h.push(r(c, Some(&v), 10 * n + 26, 10 * n + 27));
        }
        let start = std::time::Instant::now();
        let result = check(&h);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(result, Ok(()));
        // The same with a last read of the first value: the search fails, quickly too.
        h.push(r(0, Some("v0"), 100_000, 100_001));
        let start = std::time::Instant::now();
        assert!(check(&h).is_err());
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }
}
