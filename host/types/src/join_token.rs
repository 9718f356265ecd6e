//! Join tokens in SwarmKit's format: `SWMTKN-1-<root CA digest>-<secret>`. The digest (sha256
//! of the root CA certificate, base36, 50 characters) lets a joining node pin the CA before it
//! trusts anything the managers send; the secret (128 bits, base36, 25 characters) says which
//! role the node gets. Pure: the caller hashes the certificate and draws the secret.

use std::fmt;
use std::str::FromStr;

use crate::NodeRole;

/// The token's prefix.
pub const JOIN_TOKEN_PREFIX: &str = "SWMTKN";
/// The only token format version.
pub const JOIN_TOKEN_VERSION: &str = "1";
/// Base36 characters of the CA digest (a 256-bit number).
const DIGEST_CHARS: usize = 50;
/// Base36 characters of the secret (a 128-bit number).
const SECRET_CHARS: usize = 25;
const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// A join token, as issued by the managers and presented by joining nodes.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    ca_digest: [u8; 32],
    secret: [u8; 16],
}

impl fmt::Debug for JoinToken {
    /// Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("ca_digest", &base36(&self.ca_digest, DIGEST_CHARS))
            .finish_non_exhaustive()
    }
}

/// Why a string is not a join token; the message names the part that is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid join token: {0}")]
pub struct JoinTokenError(String);

impl JoinToken {
    /// A token for the root CA whose certificate has sha256 `ca_digest`, with `secret`.
    pub fn new(ca_digest: [u8; 32], secret: [u8; 16]) -> Self {
        Self { ca_digest, secret }
    }

    /// The sha256 of the root CA certificate this token pins.
    pub fn ca_digest(&self) -> [u8; 32] {
        self.ca_digest
    }

    /// Whether the token pins the CA whose certificate has sha256 `digest`.
    pub fn pins(&self, digest: &[u8; 32]) -> bool {
        constant_time_eq(&self.ca_digest, digest)
    }

    /// Whether both tokens carry the same secret and CA, compared in constant time.
    pub fn matches(&self, other: &JoinToken) -> bool {
        // Both comparisons always run: no early exit on the first difference.
        let secret = constant_time_eq(&self.secret, &other.secret);
        let digest = constant_time_eq(&self.ca_digest, &other.ca_digest);
        secret & digest
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{JOIN_TOKEN_PREFIX}-{JOIN_TOKEN_VERSION}-{}-{}",
            base36(&self.ca_digest, DIGEST_CHARS),
            base36(&self.secret, SECRET_CHARS)
        )
    }
}

impl FromStr for JoinToken {
    type Err = JoinTokenError;

    fn from_str(token: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = token.trim().split('-').collect();
        let [prefix, version, digest, secret] = parts[..] else {
            return Err(JoinTokenError(format!(
                "expected {JOIN_TOKEN_PREFIX}-{JOIN_TOKEN_VERSION}-<CA digest>-<secret> (4 parts \
                 separated by '-'), got {} parts",
                parts.len()
            )));
        };
        if prefix != JOIN_TOKEN_PREFIX {
            return Err(JoinTokenError(format!(
                "it starts with {prefix:?}, not {JOIN_TOKEN_PREFIX:?}"
            )));
        }
        if version != JOIN_TOKEN_VERSION {
            return Err(JoinTokenError(format!(
                "version {version:?} is not supported (only {JOIN_TOKEN_VERSION:?})"
            )));
        }
        let ca_digest = parse_base36::<32>(digest, DIGEST_CHARS)
            .map_err(|why| JoinTokenError(format!("the CA digest {why}")))?;
        let secret = parse_base36::<16>(secret, SECRET_CHARS)
            .map_err(|why| JoinTokenError(format!("the secret {why}")))?;
        Ok(JoinToken { ca_digest, secret })
    }
}

/// A sha256 digest (such as the root CA's, which tokens pin) as lowercase hex.
pub fn digest_hex(digest: &[u8; 32]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(64);
    for byte in digest {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

/// The cluster's current tokens, one per role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinTokens {
    pub worker: JoinToken,
    pub manager: JoinToken,
}

impl JoinTokens {
    /// The role `presented` grants, if it is one of the current tokens (constant time in the
    /// secret; both roles are always compared).
    pub fn role_of(&self, presented: &JoinToken) -> Option<NodeRole> {
        let worker = self.worker.matches(presented);
        let manager = self.manager.matches(presented);
        match (worker, manager) {
            (true, false) => Some(NodeRole::Worker),
            (false, true) => Some(NodeRole::Manager),
            // Equal worker and manager tokens would be a bug: grant nothing rather than guess.
            _ => None,
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `bytes` as a big-endian number in base36, left-padded with zeros to `width` characters.
fn base36(bytes: &[u8], width: usize) -> String {
    let mut number = bytes.to_vec();
    let mut digits = Vec::with_capacity(width);
    while number.iter().any(|&b| b != 0) {
        let mut remainder = 0u32;
        for byte in &mut number {
            let value = (remainder << 8) | u32::from(*byte);
            *byte = (value / 36) as u8;
            remainder = value % 36;
        }
        digits.push(ALPHABET[remainder as usize]);
    }
    while digits.len() < width {
        digits.push(b'0');
    }
    digits.reverse();
    digits.into_iter().map(char::from).collect()
}

/// Parses exactly `width` base36 characters into an `N`-byte big-endian number.
fn parse_base36<const N: usize>(text: &str, width: usize) -> Result<[u8; N], String> {
    if text.len() != width {
        return Err(format!(
            "has {} characters, not {width}",
            text.chars().count()
        ));
    }
    let mut number = [0u8; N];
    for c in text.bytes() {
        let Some(digit) = ALPHABET.iter().position(|&a| a == c.to_ascii_lowercase()) else {
            return Err(format!(
                "has {:?}, which is not a base36 character",
                char::from(c)
            ));
        };
        // number = number * 36 + digit
        let mut carry = digit as u32;
        for byte in number.iter_mut().rev() {
            let value = u32::from(*byte) * 36 + carry;
            *byte = (value & 0xff) as u8;
            carry = value >> 8;
        }
        if carry != 0 {
            return Err(format!("is larger than a {}-bit number", N * 8));
        }
    }
    Ok(number)
}

#[cfg(test)]
mod tests {
    //! Format, round trips, refusals naming the part, and role lookup.

    use super::*;

    fn token(digest: u8, secret: u8) -> JoinToken {
        JoinToken::new([digest; 32], [secret; 16])
    }

    #[test]
    fn digests_print_as_lowercase_hex() {
        let mut digest = [0u8; 32];
        digest[0] = 0xab;
        digest[31] = 0x0f;
        let text = digest_hex(&digest);
        assert_eq!(text.len(), 64);
        assert!(text.starts_with("ab00"), "{text}");
        assert!(text.ends_with("000f"), "{text}");
    }

    #[test]
    fn the_format_has_swarmkits_widths() {
        let zero = JoinToken::new([0; 32], [0; 16]).to_string();
        assert_eq!(
            zero,
            format!("SWMTKN-1-{}-{}", "0".repeat(50), "0".repeat(25))
        );
        let max = JoinToken::new([0xff; 32], [0xff; 16]).to_string();
        let parts: Vec<&str> = max.split('-').collect();
        assert_eq!(parts[2].len(), 50, "{max}");
        assert_eq!(parts[3].len(), 25, "{max}");
        // 2^128 - 1 in base36.
        assert_eq!(parts[3], "f5lxx1zz5pnorynqglhzmsp33");
        assert_eq!(
            parts[2],
            "6dp5qcb22im238nr3wvp0ic7q99w035jmy2iw7i6n43d37jtof"
        );
        let mut small = [0u8; 16];
        small[15] = 37;
        let text = JoinToken::new([0; 32], small).to_string();
        assert!(text.ends_with(&format!("-{}11", "0".repeat(23))), "{text}");
    }

    #[test]
    fn tokens_round_trip() {
        for (d, s) in [(0, 0), (1, 2), (0x7f, 0x80), (0xff, 0xff), (0x12, 0xab)] {
            let t = token(d, s);
            let parsed: JoinToken = t.to_string().parse().expect("parses");
            assert_eq!(parsed, t);
            assert!(parsed.pins(&[d; 32]));
            assert!(!parsed.pins(&[d ^ 1; 32]));
        }
        // Upper case and surrounding whitespace are accepted.
        let t = token(3, 4);
        let shouted = format!("  {}\n", t.to_string().to_uppercase());
        assert_eq!(shouted.parse::<JoinToken>().expect("parses"), t);
    }

    #[test]
    fn malformed_tokens_name_what_is_wrong() {
        let good = token(5, 6).to_string();
        let parts: Vec<&str> = good.split('-').collect();
        let cases = [
            ("SWMTKN-1-abc".to_string(), "3 parts"),
            (good.replacen("SWMTKN", "SWARM", 1), "starts with \"SWARM\""),
            (good.replacen("-1-", "-2-", 1), "version \"2\""),
            (
                format!("SWMTKN-1-{}-{}", &parts[2][1..], parts[3]),
                "the CA digest has 49 characters",
            ),
            (
                format!("SWMTKN-1-{}-{}", parts[2], &parts[3][1..]),
                "the secret has 24 characters",
            ),
            (
                format!("SWMTKN-1-{}-{}!", parts[2], &parts[3][1..]),
                "the secret has '!'",
            ),
            (
                format!("SWMTKN-1-{}-{}", parts[2], "z".repeat(25)),
                "the secret is larger than a 128-bit number",
            ),
        ];
        for (text, expected) in cases {
            let error = text.parse::<JoinToken>().expect_err(&text);
            assert!(error.to_string().contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let t = token(1, 0x5a);
        let secret = t.to_string().rsplit('-').next().map(str::to_string);
        let debug = format!("{t:?}");
        assert!(!debug.contains(&secret.expect("secret")), "{debug}");
    }

    #[test]
    fn the_role_comes_from_the_matching_secret() {
        let tokens = JoinTokens {
            worker: token(9, 1),
            manager: token(9, 2),
        };
        assert_eq!(tokens.role_of(&token(9, 1)), Some(NodeRole::Worker));
        assert_eq!(tokens.role_of(&token(9, 2)), Some(NodeRole::Manager));
        assert_eq!(tokens.role_of(&token(9, 3)), None, "a rotated-out secret");
        assert_eq!(tokens.role_of(&token(8, 1)), None, "another CA's token");
        let same = JoinTokens {
            worker: token(9, 1),
            manager: token(9, 1),
        };
        assert_eq!(same.role_of(&token(9, 1)), None);
    }
}
