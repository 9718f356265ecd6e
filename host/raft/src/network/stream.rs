//! The append lane: AppendEntries (and heartbeats) to one peer over a long-lived stream of
//! length-prefixed frames instead of one gRPC call each.
//!
//! A gRPC call costs several task wake-ups on each side (tonic's buffer task, the HTTP/2
//! connection task, a task per stream on the server) on top of the bytes; on loopback between
//! processes that was ~140 us each way, more than the follower's `fdatasync`. Here the caller
//! writes the request and reads the answer itself, and the server answers from the task that
//! reads the connection. The stream is whatever [`StreamMaker`] opens: in swarmd a mutual-TLS
//! connection to the peer's remote API port, told apart from gRPC by its ALPN protocol
//! ([`APPEND_STREAM_ALPN`]) and admitted only with a manager certificate, like the gRPC service.
//!
//! Frames (all integers big-endian):
//! - request: `u32 length`, then `u32 header length`, the header (the same JSON as the gRPC
//!   message's), `u32 entry count`, and each entry as `u32 length` + bytes (`store::codec`);
//! - answer: `u32 length`, then one status byte and the rest: `0` the answer's JSON (openraft's
//!   `Result`), `1` the request was refused (a message), `2` the server failed (a message).
//!
//! One request is in flight per connection: the caller owns the stream for the whole exchange
//! and returns it only after a complete answer, so a cancelled exchange drops the connection
//! rather than leaving half a frame on it. A frame longer than [`MAX_RAFT_MESSAGE_BYTES`] or
//! one that does not parse closes the connection (the server says why first).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::MAX_RAFT_MESSAGE_BYTES;

/// The ALPN protocol name of an append lane on a TLS listener that also serves gRPC (`h2`).
pub const APPEND_STREAM_ALPN: &[u8] = b"swarm-raft-append/1";

/// A byte stream to a peer.
pub trait PeerStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> PeerStream for T {}

/// A connection opened by a [`StreamMaker`].
pub type BoxedStream = Box<dyn PeerStream>;

/// Opens an append lane to a peer's address (`host:port`), within its own connect timeout.
/// Without one, AppendEntries go over gRPC like every other raft message.
pub type StreamMaker = Arc<
    dyn Fn(&str) -> Pin<Box<dyn Future<Output = Result<BoxedStream, String>> + Send>>
        + Send
        + Sync
        + 'static,
>;

const STATUS_OK: u8 = 0;
const STATUS_REFUSED: u8 = 1;
const STATUS_FAILED: u8 = 2;

/// An AppendEntries request as it travels: the JSON header and the encoded entries.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct AppendFrame {
    pub(crate) header: Vec<u8>,
    pub(crate) entries: Vec<Vec<u8>>,
}

/// What a server answers.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// openraft's `Result` as JSON.
    Ok(Vec<u8>),
    /// The request was refused (undecodable, inconsistent, not allowed): a message.
    Refused(String),
    /// The server could not handle it (its log failed): a message.
    Failed(String),
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LaneError {
    #[error("append lane: {0}")]
    Io(#[from] std::io::Error),
    #[error("append lane: {0}")]
    Malformed(String),
    #[error("append lane: nothing received for {0:?}")]
    Idle(Duration),
}

fn malformed(what: impl Into<String>) -> LaneError {
    LaneError::Malformed(what.into())
}

fn len_u32(len: usize, what: &str) -> Result<u32, LaneError> {
    u32::try_from(len).map_err(|_| malformed(format!("{what} of {len} bytes is too long")))
}

/// The request's bytes, length prefix included.
pub(crate) fn encode_request(frame: &AppendFrame) -> Result<Vec<u8>, LaneError> {
    let body =
        4 + frame.header.len() + 4 + frame.entries.iter().map(|e| 4 + e.len()).sum::<usize>();
    if body > MAX_RAFT_MESSAGE_BYTES {
        return Err(malformed(format!(
            "a request of {body} bytes exceeds {MAX_RAFT_MESSAGE_BYTES}"
        )));
    }
    let mut bytes = Vec::with_capacity(4 + body);
    bytes.extend_from_slice(&len_u32(body, "a request")?.to_be_bytes());
    bytes.extend_from_slice(&len_u32(frame.header.len(), "a header")?.to_be_bytes());
    bytes.extend_from_slice(&frame.header);
    bytes.extend_from_slice(&len_u32(frame.entries.len(), "an entry count")?.to_be_bytes());
    for entry in &frame.entries {
        bytes.extend_from_slice(&len_u32(entry.len(), "an entry")?.to_be_bytes());
        bytes.extend_from_slice(entry);
    }
    Ok(bytes)
}

/// Reads a `u32` at `*at` of `body`, advancing past it.
fn take_u32(body: &[u8], at: &mut usize, what: &str) -> Result<usize, LaneError> {
    let end = at.checked_add(4).filter(|end| *end <= body.len());
    let Some(end) = end else {
        return Err(malformed(format!("the request ends inside {what}")));
    };
    let mut word = [0u8; 4];
    word.copy_from_slice(&body[*at..end]);
    *at = end;
    Ok(u32::from_be_bytes(word) as usize)
}

/// Takes `len` bytes at `*at` of `body`, advancing past them.
fn take_bytes<'a>(
    body: &'a [u8],
    at: &mut usize,
    len: usize,
    what: &str,
) -> Result<&'a [u8], LaneError> {
    let end = at.checked_add(len).filter(|end| *end <= body.len());
    let Some(end) = end else {
        return Err(malformed(format!(
            "{what} of {len} bytes runs past the request"
        )));
    };
    let bytes = &body[*at..end];
    *at = end;
    Ok(bytes)
}

/// Parses a request body (without its length prefix).
pub(crate) fn decode_request(body: &[u8]) -> Result<AppendFrame, LaneError> {
    let mut at = 0;
    let header_len = take_u32(body, &mut at, "the header length")?;
    let header = take_bytes(body, &mut at, header_len, "a header")?.to_vec();
    let count = take_u32(body, &mut at, "the entry count")?;
    // Every entry takes at least its 4-byte length: a count beyond that is a lie, and must not
    // size an allocation.
    if count > (body.len() - at) / 4 {
        return Err(malformed(format!(
            "{count} entries cannot fit in the {} bytes left",
            body.len() - at
        )));
    }
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let len = take_u32(body, &mut at, "an entry length")?;
        entries.push(take_bytes(body, &mut at, len, "an entry")?.to_vec());
    }
    if at != body.len() {
        return Err(malformed(format!(
            "{} bytes follow the last entry",
            body.len() - at
        )));
    }
    Ok(AppendFrame { header, entries })
}

fn encode_answer(answer: &Answer) -> Vec<u8> {
    let (status, rest) = match answer {
        Answer::Ok(json) => (STATUS_OK, json.as_slice()),
        Answer::Refused(message) => (STATUS_REFUSED, message.as_bytes()),
        Answer::Failed(message) => (STATUS_FAILED, message.as_bytes()),
    };
    // Answers are a few hundred bytes of JSON or a message; never near u32::MAX.
    let len = u32::try_from(1 + rest.len()).unwrap_or(u32::MAX);
    let mut bytes = Vec::with_capacity(5 + rest.len());
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes.push(status);
    bytes.extend_from_slice(rest);
    bytes
}

fn decode_answer(body: Vec<u8>) -> Result<Answer, LaneError> {
    let Some((&status, rest)) = body.split_first() else {
        return Err(malformed("an empty answer"));
    };
    let text = || String::from_utf8_lossy(rest).into_owned();
    match status {
        STATUS_OK => Ok(Answer::Ok(rest.to_vec())),
        STATUS_REFUSED => Ok(Answer::Refused(text())),
        STATUS_FAILED => Ok(Answer::Failed(text())),
        other => Err(malformed(format!("an answer with status {other}"))),
    }
}

/// Reads a frame's length prefix; `None` at a clean end of the stream (between frames).
async fn read_prefix<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Option<usize>, LaneError> {
    let mut prefix = [0u8; 4];
    match stream.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_RAFT_MESSAGE_BYTES {
        return Err(malformed(format!(
            "a frame of {len} bytes exceeds {MAX_RAFT_MESSAGE_BYTES}"
        )));
    }
    Ok(Some(len))
}

/// Reads a frame body of `len` bytes (already checked against the limit).
async fn read_body<S: AsyncRead + Unpin>(stream: &mut S, len: usize) -> Result<Vec<u8>, LaneError> {
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    Ok(body)
}

/// Sends one request and reads its answer (the client side).
pub(crate) async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    request: &[u8],
) -> Result<Answer, LaneError> {
    stream.write_all(request).await?;
    stream.flush().await?;
    match read_prefix(stream).await? {
        Some(len) => decode_answer(read_body(stream, len).await?),
        None => Err(LaneError::Io(std::io::ErrorKind::UnexpectedEof.into())),
    }
}

/// How long a lane may stay silent before the server closes it. A leader sends at least a
/// heartbeat every `heartbeat_interval` (100 ms by default), so a lane this quiet belongs to a
/// peer that is gone without closing it (a machine crash, a partition).
pub(crate) const LANE_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a frame's body may take to arrive once its length did: past the sender's own limit
/// for one AppendEntries (`PENDING_APPEND_LIMIT`, 2 minutes).
const BODY_TIMEOUT: Duration = Duration::from_secs(180);

/// Serves one append lane until the peer closes it or sends nothing for `idle`: each request
/// is handed to `handle`, and its answer written back before the next request is read. A
/// malformed frame is answered `Refused`, then the connection is closed.
pub(crate) async fn serve<S, H, F>(
    mut stream: S,
    idle: Duration,
    handle: H,
) -> Result<(), LaneError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Fn(AppendFrame) -> F,
    F: Future<Output = Answer>,
{
    loop {
        // The wait for a frame to start is bounded by `idle`; its body may take longer (a large
        // one over a slow link: the sender keeps it going past openraft's deadline).
        let prefix = match tokio::time::timeout(idle, read_prefix(&mut stream)).await {
            Ok(prefix) => prefix,
            Err(_) => return Err(LaneError::Idle(idle)),
        };
        let parsed = match prefix {
            Ok(None) => return Ok(()),
            // Bounded too, far more loosely: a peer gone in the middle of a frame must not
            // hold this task and its buffer forever.
            Ok(Some(len)) => {
                match tokio::time::timeout(BODY_TIMEOUT, read_body(&mut stream, len)).await {
                    Ok(Ok(body)) => decode_request(&body),
                    Ok(Err(e)) => Err(e),
                    Err(_) => return Err(LaneError::Idle(BODY_TIMEOUT)),
                }
            }
            Err(e) => Err(e),
        };
        let frame = match parsed {
            Ok(frame) => frame,
            Err(e @ LaneError::Malformed(_)) => {
                stream
                    .write_all(&encode_answer(&Answer::Refused(e.to_string())))
                    .await?;
                stream.flush().await?;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let answer = handle(frame).await;
        stream.write_all(&encode_answer(&answer)).await?;
        stream.flush().await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(entries: usize) -> AppendFrame {
        AppendFrame {
            header: br#"{"vote":1}"#.to_vec(),
            entries: (0..entries).map(|i| vec![i as u8; i * 3]).collect(),
        }
    }

    #[test]
    fn requests_round_trip() {
        for count in [0, 1, 5] {
            let bytes = encode_request(&frame(count)).expect("encode");
            let body = &bytes[4..];
            assert_eq!(
                u32::from_be_bytes(bytes[..4].try_into().expect("a prefix")) as usize,
                body.len()
            );
            assert_eq!(decode_request(body).expect("decode"), frame(count));
        }
    }

    #[test]
    fn malformed_requests_are_refused_naming_what_is_wrong() {
        let good = encode_request(&frame(2)).expect("encode");
        let body = &good[4..];
        // Every truncation fails with a message, none panics.
        for cut in 0..body.len() {
            let error = decode_request(&body[..cut]).expect_err("truncated");
            assert!(error.to_string().contains("append lane"), "{error}");
        }
        let mut trailing = body.to_vec();
        trailing.push(0);
        assert!(
            decode_request(&trailing)
                .expect_err("trailing")
                .to_string()
                .contains("follow the last entry")
        );
        // A huge entry count on a short body is refused before anything is allocated for it.
        let mut lying = Vec::new();
        lying.extend_from_slice(&0u32.to_be_bytes());
        lying.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(
            decode_request(&lying)
                .expect_err("count")
                .to_string()
                .contains("cannot fit")
        );
    }

    #[tokio::test]
    async fn a_lane_answers_each_request_in_order_and_refuses_an_oversized_frame() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let served = tokio::spawn(serve(
            server,
            LANE_IDLE_TIMEOUT,
            |frame: AppendFrame| async move {
                Answer::Ok(format!("{} entries", frame.entries.len()).into_bytes())
            },
        ));
        let mut client = client;
        for count in [3, 0, 1] {
            let request = encode_request(&frame(count)).expect("encode");
            let answer = exchange(&mut client, &request).await.expect("exchange");
            assert_eq!(answer, Answer::Ok(format!("{count} entries").into_bytes()));
        }
        // A length beyond the limit: refused with a reason, then the connection closes.
        let oversized = ((MAX_RAFT_MESSAGE_BYTES + 1) as u32).to_be_bytes();
        let answer = exchange(&mut client, &oversized).await.expect("an answer");
        let Answer::Refused(reason) = answer else {
            panic!("expected a refusal, got {answer:?}");
        };
        assert!(reason.contains("exceeds"), "{reason}");
        assert!(served.await.expect("joined").is_err());
        let request = encode_request(&frame(1)).expect("encode");
        assert!(exchange(&mut client, &request).await.is_err());
    }

    #[tokio::test]
    async fn a_silent_lane_is_closed_after_the_idle_timeout() {
        let (client, server) = tokio::io::duplex(1 << 10);
        let served = serve(server, Duration::from_millis(50), |_: AppendFrame| async {
            Answer::Ok(Vec::new())
        });
        let result = tokio::time::timeout(Duration::from_secs(10), served)
            .await
            .expect("closed well within the deadline");
        let error = result.expect_err("idle");
        assert!(
            error.to_string().contains("nothing received for"),
            "{error}"
        );
        drop(client);
    }
}
