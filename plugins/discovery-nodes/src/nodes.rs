//! Parsing of `nodes://` URIs, pure (no bindings), so it is tested natively.
//!
//! The body of the URI is a comma-separated list of `host:port` entries. An entry may hold one
//! range `[from:to]` in the last part of its host (`10.0.0.[1:3]:4242`, `node-[1:3]:4242`), which
//! stands for each number from `from` to `to` inclusive. Hosts are IPv4 addresses, IPv6 addresses
//! in brackets (`[fe80::1]:4242`, never expanded) or DNS names. Every error names the entry.

use std::net::{Ipv4Addr, Ipv6Addr};

/// The URI scheme this backend serves.
pub const SCHEME: &str = "nodes";

/// Most entries one URI may stand for, ranges expanded.
pub const MAX_ENTRIES: usize = 4096;

const MAX_HOST_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// Parses `uri` (`nodes://host:port,...`) into its entries, ranges expanded, in order and
/// without duplicates.
pub fn parse_uri(uri: &str) -> Result<Vec<String>, String> {
    let Some((scheme, body)) = uri.split_once("://") else {
        return Err(format!(
            "`{uri}` is not a {SCHEME}:// URI (expected {SCHEME}://host:port,...)"
        ));
    };
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return Err(format!(
            "the {SCHEME} backend serves {SCHEME}:// URIs, not `{scheme}://`"
        ));
    }
    if body.trim().is_empty() {
        return Err(format!("`{uri}` lists no nodes"));
    }
    let mut entries: Vec<String> = Vec::new();
    for (index, raw) in body.split(',').enumerate() {
        let entry = raw.trim();
        if entry.is_empty() {
            return Err(format!(
                "entry {} of `{uri}` is empty (entries are separated by single commas)",
                index + 1
            ));
        }
        for expanded in parse_entry(entry)? {
            if !entries.contains(&expanded) {
                if entries.len() == MAX_ENTRIES {
                    return Err(format!(
                        "`{uri}` stands for more than {MAX_ENTRIES} nodes (at entry `{entry}`)"
                    ));
                }
                entries.push(expanded);
            }
        }
    }
    Ok(entries)
}

/// The error `register` answers: a static list takes no registrations.
pub fn register_refused(addr: &str) -> String {
    format!(
        "the nodes backend is static: it cannot register `{addr}`; list every node in the \
         {SCHEME}:// URI instead"
    )
}

/// One entry, expanded and checked: its `host:port` strings.
fn parse_entry(entry: &str) -> Result<Vec<String>, String> {
    let bad = |why: &str| Err(format!("invalid entry `{entry}`: {why}"));
    if let Some(rest) = entry.strip_prefix('[') {
        // An IPv6 literal: `[addr]:port`.
        let Some((addr, port)) = rest.split_once("]:") else {
            return bad("an IPv6 address in brackets must be followed by `:port`");
        };
        if addr.parse::<Ipv6Addr>().is_err() {
            return bad(&format!("`{addr}` is not an IPv6 address"));
        }
        let port = parse_port(entry, port)?;
        return Ok(vec![format!("[{addr}]:{port}")]);
    }
    let Some(open) = entry.find('[') else {
        let Some((host, port)) = entry.rsplit_once(':') else {
            return bad("missing `:port`");
        };
        if host.contains(':') {
            return bad("an IPv6 address must be in brackets, as in `[fe80::1]:4242`");
        }
        check_host(entry, host)?;
        let port = parse_port(entry, port)?;
        return Ok(vec![format!("{host}:{port}")]);
    };
    // A range: `prefix[from:to]suffix:port`, within the last part of the host.
    let prefix = &entry[..open];
    let Some(close) = entry[open..].find(']').map(|i| open + i) else {
        return bad("`[` without a closing `]`");
    };
    let range = &entry[open + 1..close];
    let after = &entry[close + 1..];
    if after.contains('[') {
        return bad("more than one range (only the last part of the host may be a range)");
    }
    if prefix.contains(':') {
        return bad("a range may only stand in the last part of the host, as in 10.0.0.[1:3]:4242");
    }
    let Some((suffix, port)) = after.rsplit_once(':') else {
        return bad("missing `:port` after the range");
    };
    if suffix.contains('.') {
        return bad("a range may only stand in the last part of the host, as in 10.0.0.[1:3]:4242");
    }
    let Some((from, to)) = range.split_once(':') else {
        return bad(&format!("`[{range}]` is not a range `[from:to]`"));
    };
    let (Ok(from), Ok(to)) = (parse_bound(from), parse_bound(to)) else {
        return bad(&format!(
            "`[{range}]` is not a range of decimal numbers `[from:to]`"
        ));
    };
    if from > to {
        return bad(&format!("the range `[{range}]` is empty ({from} > {to})"));
    }
    if to - from >= MAX_ENTRIES as u32 {
        return bad(&format!(
            "the range `[{range}]` stands for more than {MAX_ENTRIES} nodes"
        ));
    }
    let port = parse_port(entry, port)?;
    (from..=to)
        .map(|n| {
            let host = format!("{prefix}{n}{suffix}");
            check_host(entry, &host)?;
            Ok(format!("{host}:{port}"))
        })
        .collect()
}

fn parse_bound(text: &str) -> Result<u32, ()> {
    if text.is_empty() || text.len() > 9 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(());
    }
    text.parse().map_err(|_| ())
}

fn parse_port(entry: &str, port: &str) -> Result<u16, String> {
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "invalid entry `{entry}`: `{port}` is not a port number"
        ));
    }
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(format!(
            "invalid entry `{entry}`: port {port} is not between 1 and 65535"
        )),
    }
}

/// Checks that `host` (from `entry`) is an IPv4 address or a DNS name.
fn check_host(entry: &str, host: &str) -> Result<(), String> {
    let bad = |why: String| Err(format!("invalid entry `{entry}`: {why}"));
    if host.is_empty() {
        return bad("the host is empty".to_owned());
    }
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return match host.parse::<Ipv4Addr>() {
            Ok(_) => Ok(()),
            Err(_) => bad(format!("`{host}` is not an IPv4 address")),
        };
    }
    if host.len() > MAX_HOST_LEN {
        return bad(format!(
            "the host name is longer than {MAX_HOST_LEN} characters"
        ));
    }
    for label in host.split('.') {
        let valid = !label.is_empty()
            && label.len() <= MAX_LABEL_LEN
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !valid {
            return bad(format!(
                "`{host}` is not a host name (letters, digits and inner `-` in dot-separated parts)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(uri: &str) -> Vec<String> {
        match parse_uri(uri) {
            Ok(entries) => entries,
            Err(error) => panic!("{uri}: {error}"),
        }
    }

    fn err(uri: &str) -> String {
        match parse_uri(uri) {
            Ok(entries) => panic!("{uri} parsed as {entries:?}"),
            Err(error) => error,
        }
    }

    #[test]
    fn plain_entries_keep_their_order() {
        assert_eq!(
            ok("nodes://10.0.0.2:4242,node-1.example.com:2375,[fe80::1]:80"),
            ["10.0.0.2:4242", "node-1.example.com:2375", "[fe80::1]:80"]
        );
    }

    #[test]
    fn spaces_around_entries_are_ignored_and_duplicates_dropped() {
        assert_eq!(
            ok("nodes:// 10.0.0.1:1 , 10.0.0.1:1,10.0.0.1:2"),
            ["10.0.0.1:1", "10.0.0.1:2"]
        );
    }

    #[test]
    fn ranges_expand_in_the_last_octet() {
        assert_eq!(
            ok("nodes://10.0.0.[1:3]:4242,10.0.1.5:4242"),
            [
                "10.0.0.1:4242",
                "10.0.0.2:4242",
                "10.0.0.3:4242",
                "10.0.1.5:4242"
            ]
        );
        assert_eq!(ok("nodes://10.0.0.[7:7]:1"), ["10.0.0.7:1"]);
    }

    #[test]
    fn ranges_expand_in_the_last_label_of_a_name() {
        assert_eq!(
            ok("nodes://node-[9:11]:2375"),
            ["node-9:2375", "node-10:2375", "node-11:2375"]
        );
        assert_eq!(
            ok("nodes://rack.w[1:2]x:2375"),
            ["rack.w1x:2375", "rack.w2x:2375"]
        );
    }

    #[test]
    fn ranges_elsewhere_are_refused() {
        for uri in [
            "nodes://10.0.[1:2].1:4242",
            "nodes://node-[1:2].example.com:4242",
            "nodes://10.0.0.1:[4000:4002]",
        ] {
            let error = err(uri);
            assert!(error.contains("last part of the host"), "{uri}: {error}");
        }
        assert!(err("nodes://10.0.0.[1:2][3:4]:1").contains("more than one range"));
    }

    #[test]
    fn bad_ranges_are_named() {
        let error = err("nodes://10.0.0.1:1,10.0.0.[3:1]:4242");
        assert!(error.contains("`10.0.0.[3:1]:4242`"), "{error}");
        assert!(error.contains("empty"), "{error}");
        assert!(err("nodes://10.0.0.[a:b]:1").contains("decimal"));
        assert!(err("nodes://10.0.0.[1-3]:1").contains("not a range"));
        assert!(err("nodes://10.0.0.[1:3:1").contains("closing"));
        assert!(err("nodes://10.0.0.[1:3]").contains("missing `:port`"));
        // The expansion is checked: 256 is no octet.
        let error = err("nodes://10.0.0.[254:256]:1");
        assert!(
            error.contains("`10.0.0.256` is not an IPv4 address"),
            "{error}"
        );
    }

    #[test]
    fn huge_ranges_are_refused() {
        assert!(err("nodes://n[0:999999999]:1").contains("more than 4096"));
        assert!(err("nodes://n[0:9999999999]:1").contains("decimal"));
        let many: Vec<String> = (0..2).map(|i| format!("n{i}-[0:4000]:1")).collect();
        assert!(err(&format!("nodes://{}", many.join(","))).contains("more than 4096"));
    }

    #[test]
    fn bad_entries_are_named() {
        let cases = [
            ("nodes://10.0.0.1", "`10.0.0.1`", "missing `:port`"),
            ("nodes://10.0.0.1:0", "`10.0.0.1:0`", "between 1 and 65535"),
            (
                "nodes://10.0.0.1:65536",
                "`10.0.0.1:65536`",
                "between 1 and 65535",
            ),
            (
                "nodes://10.0.0.1:http",
                "`10.0.0.1:http`",
                "not a port number",
            ),
            ("nodes://:4242", "`:4242`", "host is empty"),
            (
                "nodes://300.1.1.1:1",
                "`300.1.1.1:1`",
                "not an IPv4 address",
            ),
            ("nodes://fe80::1:80", "`fe80::1:80`", "must be in brackets"),
            (
                "nodes://[fe80::zz]:80",
                "`[fe80::zz]:80`",
                "not an IPv6 address",
            ),
            ("nodes://[fe80::1]", "`[fe80::1]`", "followed by `:port`"),
            ("nodes://a_b:1", "`a_b:1`", "not a host name"),
            ("nodes://-a:1", "`-a:1`", "not a host name"),
            ("nodes://a..b:1", "`a..b:1`", "not a host name"),
        ];
        for (uri, entry, why) in cases {
            let error = err(uri);
            assert!(error.contains(entry), "{uri}: {error}");
            assert!(error.contains(why), "{uri}: {error}");
        }
    }

    #[test]
    fn empty_entries_and_other_schemes_are_refused() {
        assert!(err("nodes://a:1,,b:2").contains("entry 2"));
        assert!(err("nodes://").contains("lists no nodes"));
        assert!(err("etcd://10.0.0.1:2379/swarm").contains("not `etcd://`"));
        assert!(err("10.0.0.1:4242").contains("not a nodes:// URI"));
        assert_eq!(ok("NODES://a:1"), ["a:1"]);
    }

    #[test]
    fn register_is_refused_by_name() {
        let message = register_refused("10.0.0.9:4242");
        assert!(message.starts_with("the nodes backend is static"));
        assert!(message.contains("10.0.0.9:4242"));
    }
}
