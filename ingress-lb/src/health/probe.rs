//! One health check: a TCP connect, or an HTTP/1.1 GET over such a connection.

use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::header::{CONNECTION, HOST, USER_AGENT};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::SocketSource;
use crate::service::HealthCheck;

/// The result of one check: success and a few words for `service inspect` and the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub ok: bool,
    pub detail: String,
}

impl CheckResult {
    fn fail(detail: impl Into<String>) -> Self {
        CheckResult {
            ok: false,
            detail: detail.into(),
        }
    }
}

/// Runs one check of `addr` within `timeout` (connect, and for HTTP the response head).
/// `HealthCheck::None` succeeds without touching the network.
///
/// HTTP: `GET path` with `Host: addr` and `Connection: close`; a status 200–399 is a success
/// (the range of Kubernetes' httpGet probe); the body is not read.
pub async fn check(
    sockets: &SocketSource,
    addr: SocketAddrV4,
    kind: &HealthCheck,
    timeout: Duration,
) -> CheckResult {
    if *kind == HealthCheck::None {
        return CheckResult {
            ok: true,
            detail: "not checked".into(),
        };
    }
    match tokio::time::timeout(timeout, run(sockets, addr, kind)).await {
        Ok(r) => r,
        Err(_) => CheckResult::fail(format!("timed out after {}ms", timeout.as_millis())),
    }
}

async fn run(sockets: &SocketSource, addr: SocketAddrV4, kind: &HealthCheck) -> CheckResult {
    let stream = match connect(sockets, addr).await {
        Ok(s) => s,
        Err(e) => return CheckResult::fail(format!("connect: {}", io_words(&e))),
    };
    match kind {
        HealthCheck::Http { path } => http_get(stream, addr, path).await,
        _ => CheckResult {
            ok: true,
            detail: "connected".into(),
        },
    }
}

async fn connect(sockets: &SocketSource, addr: SocketAddrV4) -> std::io::Result<TcpStream> {
    let socket = sockets.tcp_socket().await?;
    socket.connect(SocketAddr::V4(addr)).await
}

async fn http_get(stream: TcpStream, addr: SocketAddrV4, path: &str) -> CheckResult {
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(x) => x,
        Err(e) => return CheckResult::fail(format!("http: {e}")),
    };
    let driver = tokio::spawn(conn);
    let request = Request::get(path)
        .header(HOST, addr.to_string())
        .header(
            USER_AGENT,
            concat!("vxmesh-health/", env!("CARGO_PKG_VERSION")),
        )
        .header(CONNECTION, "close")
        .body(Empty::<Bytes>::new());
    let result = match request {
        Err(e) => CheckResult::fail(format!("http request: {e}")),
        Ok(req) => match sender.send_request(req).await {
            Ok(resp) => {
                let code = resp.status().as_u16();
                CheckResult {
                    ok: (200..400).contains(&code),
                    detail: format!("HTTP {code}"),
                }
            }
            Err(e) => CheckResult::fail(format!("http: {e}")),
        },
    };
    driver.abort();
    result
}

/// "connection refused" rather than "Connection refused (os error 111)".
fn io_words(e: &std::io::Error) -> String {
    let text = e.to_string();
    let short = text.split(" (os error").next().unwrap_or(&text);
    short.to_lowercase()
}
