//! Metadata shared by every stored object: version, timestamps, name and labels.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time with nanosecond precision, serialized as RFC 3339 text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    /// Nanoseconds since the Unix epoch.
    pub unix_nanos: i64,
}

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Self { unix_nanos: nanos }
    }

    /// Build from nanoseconds since the Unix epoch.
    pub fn from_unix_nanos(unix_nanos: i64) -> Self {
        Self { unix_nanos }
    }

    /// The time as a `SystemTime` (times before the epoch clamp to it).
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(u64::try_from(self.unix_nanos).unwrap_or(0))
    }

    /// How long ago this was, relative to `now` (zero if in the future).
    pub fn elapsed_at(self, now: Timestamp) -> Duration {
        Duration::from_nanos(u64::try_from(now.unix_nanos - self.unix_nanos).unwrap_or(0))
    }

    /// This time plus a duration.
    pub fn plus(self, d: Duration) -> Timestamp {
        let add = i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        Timestamp {
            unix_nanos: self.unix_nanos.saturating_add(add),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}",
            humantime::format_rfc3339_millis(self.to_system_time())
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&humantime::format_rfc3339_nanos(self.to_system_time()).to_string())
        } else {
            s.serialize_i64(self.unix_nanos)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            let t = humantime::parse_rfc3339(&text).map_err(serde::de::Error::custom)?;
            let nanos = t
                .duration_since(UNIX_EPOCH)
                .map_err(serde::de::Error::custom)?
                .as_nanos();
            Ok(Timestamp {
                unix_nanos: i64::try_from(nanos).map_err(serde::de::Error::custom)?,
            })
        } else {
            Ok(Timestamp {
                unix_nanos: i64::deserialize(d)?,
            })
        }
    }
}

/// Store metadata of an object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Raft index of the last write to this object. An update must carry the version it read;
    /// the store refuses one whose version is stale.
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A user-facing name and labels.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Annotations {
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Durations as human-readable text in JSON (`"5s"`), nanoseconds in binary formats.
pub(crate) mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&humantime::format_duration(*d).to_string())
        } else {
            s.serialize_u64(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            humantime::parse_duration(&text).map_err(serde::de::Error::custom)
        } else {
            Ok(Duration::from_nanos(u64::deserialize(d)?))
        }
    }
}
