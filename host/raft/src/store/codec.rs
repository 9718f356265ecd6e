//! Binary encoding of log entries as stored in redb (compact for opaque command bytes).
//!
//! Layout (integers big-endian):
//! `version:u8 term:u64 leader:u64 index:u64 kind:u8 payload`, where the payload of a normal
//! entry is `count:u32 (len:u32 bytes)*` and a membership entry's is JSON (rare and small).

use openraft::CommittedLeaderId;
use openraft::EntryPayload;

use crate::store::cipher::Sealer;
use crate::types::CommandBatch;
use crate::types::Entry;
use crate::types::LogId;

const FORMAT_VERSION: u8 = 1;
/// The same header, then `nonce ciphertext` of the plain format's `kind payload`, sealed with the
/// header as associated data.
const FORMAT_VERSION_SEALED: u8 = 2;
const KIND_BLANK: u8 = 0;
const KIND_NORMAL: u8 = 1;
const KIND_MEMBERSHIP: u8 = 2;
const HEADER_LEN: usize = 1 + 8 + 8 + 8;

/// A stored entry that cannot be decoded: the log is corrupt or from an unknown version, or
/// encrypted with another key.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CodecError {
    #[error("undecodable raft log entry: {0}")]
    Invalid(String),
    #[error("raft log entry {0}: cannot decrypt: wrong key or corrupt")]
    Decrypt(u64),
    #[error("raft log entry {0} is encrypted and no key was given")]
    NoKey(u64),
}

pub(crate) fn encode_entry(entry: &Entry) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(HEADER_LEN + 1 + payload_size_hint(&entry.payload));
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&entry.log_id.leader_id.term.to_be_bytes());
    out.extend_from_slice(&entry.log_id.leader_id.node_id.to_be_bytes());
    out.extend_from_slice(&entry.log_id.index.to_be_bytes());
    match &entry.payload {
        EntryPayload::Blank => out.push(KIND_BLANK),
        EntryPayload::Normal(batch) => {
            out.push(KIND_NORMAL);
            put_len(&mut out, batch.commands.len())?;
            for command in &batch.commands {
                put_len(&mut out, command.len())?;
                out.extend_from_slice(command);
            }
        }
        EntryPayload::Membership(membership) => {
            out.push(KIND_MEMBERSHIP);
            let json =
                serde_json::to_vec(membership).map_err(|e| CodecError::Invalid(e.to_string()))?;
            out.extend_from_slice(&json);
        }
    }
    Ok(out)
}

pub(crate) fn decode_log_id(bytes: &[u8]) -> Result<LogId, CodecError> {
    let mut reader = Reader { bytes, pos: 0 };
    let version = reader.u8()?;
    if version != FORMAT_VERSION && version != FORMAT_VERSION_SEALED {
        return Err(CodecError::Invalid(format!(
            "unknown entry format version {version}"
        )));
    }
    let term = reader.u64()?;
    let leader = reader.u64()?;
    let index = reader.u64()?;
    Ok(LogId::new(CommittedLeaderId::new(term, leader), index))
}

pub(crate) fn decode_entry(bytes: &[u8]) -> Result<Entry, CodecError> {
    let log_id = decode_log_id(bytes)?;
    let mut reader = Reader {
        bytes,
        pos: HEADER_LEN,
    };
    let payload = match reader.u8()? {
        KIND_BLANK => EntryPayload::Blank,
        KIND_NORMAL => {
            let count = reader.u32()? as usize;
            // Every command takes at least its 4-byte length: bound the allocation by the input.
            let mut commands = Vec::with_capacity(count.min(reader.remaining() / 4));
            for _ in 0..count {
                let len = reader.u32()? as usize;
                commands.push(reader.take(len)?.to_vec());
            }
            EntryPayload::Normal(CommandBatch { commands })
        }
        KIND_MEMBERSHIP => {
            let membership = serde_json::from_slice(reader.rest())
                .map_err(|e| CodecError::Invalid(format!("membership of entry {log_id}: {e}")))?;
            EntryPayload::Membership(membership)
        }
        other => {
            return Err(CodecError::Invalid(format!(
                "unknown payload kind {other} in entry {log_id}"
            )));
        }
    };
    Ok(Entry { log_id, payload })
}

/// The bytes stored for `entry`: sealed with `sealer` when there is one.
pub(crate) fn encode_stored(entry: &Entry, sealer: Option<&Sealer>) -> Result<Vec<u8>, CodecError> {
    let plain = encode_entry(entry)?;
    let Some(sealer) = sealer else {
        return Ok(plain);
    };
    let mut header = plain[..HEADER_LEN].to_vec();
    header[0] = FORMAT_VERSION_SEALED;
    let sealed = sealer.seal(&plain[HEADER_LEN..], &header);
    if sealed.is_empty() {
        return Err(CodecError::Invalid(format!(
            "entry {}: too large to encrypt",
            entry.log_id
        )));
    }
    header.extend_from_slice(&sealed);
    Ok(header)
}

/// An entry from its stored bytes, plain or sealed. Plain entries are read with or without a
/// key (a log written before encryption was turned on).
pub(crate) fn decode_stored(bytes: &[u8], sealer: Option<&Sealer>) -> Result<Entry, CodecError> {
    if bytes.first() != Some(&FORMAT_VERSION_SEALED) {
        return decode_entry(bytes);
    }
    let log_id = decode_log_id(bytes)?;
    let Some(sealer) = sealer else {
        return Err(CodecError::NoKey(log_id.index));
    };
    let (header, sealed) = bytes.split_at(HEADER_LEN);
    let body = sealer
        .open(sealed, header)
        .ok_or(CodecError::Decrypt(log_id.index))?;
    let mut plain = Vec::with_capacity(HEADER_LEN + body.len());
    plain.push(FORMAT_VERSION);
    plain.extend_from_slice(&header[1..]);
    plain.extend_from_slice(&body);
    decode_entry(&plain)
}

fn payload_size_hint(payload: &EntryPayload<crate::types::TypeConfig>) -> usize {
    match payload {
        EntryPayload::Normal(batch) => {
            4 + batch.commands.iter().map(|c| 4 + c.len()).sum::<usize>()
        }
        _ => 64,
    }
}

fn put_len(out: &mut Vec<u8>, len: usize) -> Result<(), CodecError> {
    let len = u32::try_from(len)
        .map_err(|_| CodecError::Invalid(format!("length {len} exceeds 4 GiB")))?;
    out.extend_from_slice(&len.to_be_bytes());
    Ok(())
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], CodecError> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| {
                CodecError::Invalid(format!(
                    "truncated: need {len} bytes at offset {}",
                    self.pos
                ))
            })?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn rest(&mut self) -> &'a [u8] {
        let slice = &self.bytes[self.pos..];
        self.pos = self.bytes.len();
        slice
    }

    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, CodecError> {
        let mut buf = [0u8; 4];
        buf.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(buf))
    }

    fn u64(&mut self) -> Result<u64, CodecError> {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(buf))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::collections::BTreeSet;

    use openraft::BasicNode;
    use openraft::Membership;

    use super::*;

    fn log_id(term: u64, node: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, node), index)
    }

    fn roundtrip(entry: Entry) {
        let bytes = encode_entry(&entry).expect("encode");
        assert_eq!(decode_log_id(&bytes).expect("log id"), entry.log_id);
        let back = decode_entry(&bytes).expect("decode");
        assert_eq!(format!("{back:?}"), format!("{entry:?}"));
        if let (EntryPayload::Normal(a), EntryPayload::Normal(b)) = (&back.payload, &entry.payload)
        {
            assert_eq!(a, b);
        }
    }

    #[test]
    fn entries_roundtrip() {
        roundtrip(Entry {
            log_id: log_id(3, 7, 42),
            payload: EntryPayload::Blank,
        });
        roundtrip(Entry {
            log_id: log_id(1, 1, 1),
            payload: EntryPayload::Normal(CommandBatch {
                commands: vec![b"a".to_vec(), Vec::new(), vec![0, 255, 7]],
            }),
        });
        let nodes = BTreeMap::from([(5, BasicNode::new("10.0.0.5:4242"))]);
        roundtrip(Entry {
            log_id: log_id(u64::MAX, u64::MAX, u64::MAX),
            payload: EntryPayload::Membership(Membership::new(vec![BTreeSet::from([5])], nodes)),
        });
    }

    #[test]
    fn truncated_input_is_an_error() {
        let entry = Entry {
            log_id: log_id(1, 1, 1),
            payload: EntryPayload::Normal(CommandBatch {
                commands: vec![b"hello".to_vec()],
            }),
        };
        let bytes = encode_entry(&entry).expect("encode");
        for cut in 0..bytes.len() {
            assert!(decode_entry(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode_entry(&[9, 0, 0]).is_err());
    }

    #[test]
    fn sealed_entries_hide_commands_and_need_the_key() {
        let entry = Entry {
            log_id: log_id(2, 1, 9),
            payload: EntryPayload::Normal(CommandBatch {
                commands: vec![b"create-service web".to_vec()],
            }),
        };
        let sealer = Sealer::new(&[1; 32]);
        let bytes = encode_stored(&entry, Some(&sealer)).expect("encode");
        assert!(!bytes.windows(7).any(|w| w == b"service"));
        assert_eq!(decode_log_id(&bytes).expect("log id"), entry.log_id);
        let back = decode_stored(&bytes, Some(&sealer)).expect("decode");
        assert_eq!(format!("{back:?}"), format!("{entry:?}"));
        let wrong = decode_stored(&bytes, Some(&Sealer::new(&[2; 32]))).expect_err("wrong key");
        assert_eq!(
            wrong.to_string(),
            "raft log entry 9: cannot decrypt: wrong key or corrupt"
        );
        assert!(matches!(
            decode_stored(&bytes, None),
            Err(CodecError::NoKey(9))
        ));
        // A plain entry still reads with a key.
        let plain = encode_stored(&entry, None).expect("encode");
        assert!(decode_stored(&plain, Some(&sealer)).is_ok());
    }
}
