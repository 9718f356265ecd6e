//! The `http` capability: plain HTTP/1.1 requests for discovery backends (etcd, consul), with a
//! timeout and a cap on the response body. One connection per request; no TLS.

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use crate::bindings::discovery_world::swarm::plugin::http::Host;
use crate::bindings::types::{HttpRequest, HttpResponse};
use crate::state::{CallClock, StoreState};

/// Timeout of a request whose `timeout-ms` is 0.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest timeout a plugin may ask for.
const MAX_TIMEOUT: Duration = Duration::from_secs(300);
/// Largest response body handed back to a plugin.
pub(crate) const MAX_RESPONSE_BYTES: usize = 16 << 20;
/// Largest request body a plugin may send.
const MAX_REQUEST_BYTES: usize = 16 << 20;

/// Sends `request`; every failure is a message naming the method and URL.
pub(crate) async fn send(request: HttpRequest) -> Result<HttpResponse, String> {
    let what = format!("{} {}", request.method, request.url);
    let timeout = match request.timeout_ms {
        0 => DEFAULT_TIMEOUT,
        ms => Duration::from_millis(ms).min(MAX_TIMEOUT),
    };
    match tokio::time::timeout(timeout, send_inner(request)).await {
        Ok(result) => result.map_err(|error| format!("{what}: {error}")),
        Err(_) => Err(format!("{what}: no answer within {timeout:?}")),
    }
}

async fn send_inner(request: HttpRequest) -> Result<HttpResponse, String> {
    if request.body.len() > MAX_REQUEST_BYTES {
        return Err(format!(
            "request body of {} bytes is over the limit of {MAX_REQUEST_BYTES}",
            request.body.len()
        ));
    }
    let uri: hyper::Uri = request
        .url
        .parse()
        .map_err(|error| format!("invalid URL: {error}"))?;
    if uri.scheme_str() != Some("http") {
        return Err("only http:// URLs are supported".to_owned());
    }
    let host = uri.host().ok_or("the URL has no host")?.to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let method = hyper::Method::from_bytes(request.method.as_bytes())
        .map_err(|_| format!("invalid method {:?}", request.method))?;
    let path = uri
        .path_and_query()
        .map_or("/", hyper::http::uri::PathAndQuery::as_str)
        .to_owned();
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, format!("{host}:{port}"));
    for (name, value) in &request.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let outgoing = builder
        .body(Full::new(Bytes::from(request.body)))
        .map_err(|error| format!("invalid request: {error}"))?;

    let stream = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|error| format!("connecting to {host}:{port}: {error}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| format!("HTTP handshake: {error}"))?;
    let connection = tokio::spawn(connection);
    let response = sender
        .send_request(outgoing)
        .await
        .map_err(|error| format!("sending: {error}"));
    let result = match response {
        Ok(response) => {
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .filter_map(|(name, value)| {
                    Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
                })
                .collect();
            let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|error| {
                    format!("reading the response (at most {MAX_RESPONSE_BYTES} bytes): {error}")
                })?
                .to_bytes()
                .to_vec();
            Ok(HttpResponse {
                status,
                headers,
                body,
            })
        }
        Err(error) => Err(error),
    };
    connection.abort();
    result
}

impl Host for StoreState {
    async fn send(&mut self, request: HttpRequest) -> Result<HttpResponse, String> {
        CallClock::host(&mut self.clock, send(request)).await
    }
}
