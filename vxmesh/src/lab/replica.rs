//! The lab's demo replica (`vxmesh lab replica`): an HTTP/1.1 server that answers every
//! request with one line, `NAME CLIENT_ADDR CLIENT_PORT\n`: its own name and the peer
//! address of the TCP connection as its socket saw it (so a request through the routing mesh
//! shows whether the client's address was kept).
//!
//! `lab up --replicas N` runs one in each of N containers (inside the container's network
//! namespace and cgroup). It is hyper 1 on tokio, the HTTP library the health checks already
//! use: keep-alive connections are served until the client closes them (or sends no request
//! head for [`HEADER_READ_TIMEOUT`]), and `Connection: close` is honoured, so it is a fair
//! backend for wrk in both of `cargo xtask bench mesh`'s modes.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use hyper::body::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE, SERVER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket};

use http_body_util::Full;

/// The listen backlog: a burst of new connections (wrk with `Connection: close`) waits in
/// the kernel instead of being refused.
pub const BACKLOG: u32 = 4096;
/// A connection that sends no complete request head for this long is closed (nginx's
/// `client_header_timeout` default).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// What to serve.
#[derive(Debug, Clone)]
pub struct ReplicaSpec {
    /// The name every answer starts with.
    pub name: String,
    /// TCP port, on every IPv4 address of the namespace the process runs in.
    pub port: u16,
    /// Runtime threads: 1 runs everything on the calling thread (tokio's current-thread
    /// runtime, like a single nginx worker), more a multi-thread runtime with that many.
    pub threads: usize,
}

/// Errors of [`serve`].
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// A bad parameter; `field` names it.
    #[error("invalid {field} '{value}': {reason}")]
    Invalid {
        /// The parameter.
        field: &'static str,
        /// The value given.
        value: String,
        /// What a good value is.
        reason: &'static str,
    },
    /// A socket or runtime operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error of the operating system.
        #[source]
        source: std::io::Error,
    },
}

/// The answer to a request on a connection from `peer`: `NAME ADDR PORT\n`.
pub fn answer(name: &str, peer: SocketAddr) -> String {
    format!("{name} {} {}\n", peer.ip(), peer.port())
}

/// Checks the spec: a name of 1–64 visible ASCII characters without spaces (it is the first
/// word of every answer), a port 1–65535, 1–64 threads.
pub fn check(spec: &ReplicaSpec) -> Result<(), ReplicaError> {
    let name_ok = !spec.name.is_empty()
        && spec.name.len() <= 64
        && spec.name.bytes().all(|b| b.is_ascii_graphic());
    if !name_ok {
        return Err(ReplicaError::Invalid {
            field: "name",
            value: spec.name.clone(),
            reason: "must be 1 to 64 visible ASCII characters, no spaces",
        });
    }
    if spec.port == 0 {
        return Err(ReplicaError::Invalid {
            field: "port",
            value: "0".into(),
            reason: "must be between 1 and 65535",
        });
    }
    if !(1..=64).contains(&spec.threads) {
        return Err(ReplicaError::Invalid {
            field: "threads",
            value: spec.threads.to_string(),
            reason: "must be between 1 and 64",
        });
    }
    Ok(())
}

/// Serves `spec` until the process is killed. Errors: bad input, the runtime or the listening
/// socket cannot be made (e.g. the port is taken).
pub fn serve(spec: &ReplicaSpec) -> Result<(), ReplicaError> {
    check(spec)?;
    let runtime = if spec.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(spec.threads)
            .enable_all()
            .build()
    }
    .map_err(|source| ReplicaError::Io {
        context: "starting the runtime".into(),
        source,
    })?;
    runtime.block_on(run(spec.clone()))
}

/// A listening TCP socket on `0.0.0.0:port` (SO_REUSEADDR, backlog [`BACKLOG`]) in the
/// network namespace of the calling thread; needs a tokio runtime (its reactor). A socket stays
/// in the namespace it was made in, so one made on a thread inside a container's namespace can
/// be served from any thread with [`serve_on`]. Errors: the port is taken, no permission.
pub fn listen(port: u16) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::UNSPECIFIED,
        port,
    )))?;
    socket.listen(BACKLOG)
}

async fn run(spec: ReplicaSpec) -> Result<(), ReplicaError> {
    let listener = listen(spec.port).map_err(|source| ReplicaError::Io {
        context: format!("listening on 0.0.0.0:{}", spec.port),
        source,
    })?;
    tracing::info!(name = %spec.name, port = spec.port, "replica listening");
    match serve_on(spec.name, listener).await {}
}

/// Serves the replica's answer ([`answer`] with `name`) on every connection `listener`
/// accepts, until the future is dropped or aborted. Each connection is served by a task of its
/// own (on the caller's runtime), which finishes its exchanges even after that: dropping the
/// future closes the listening socket (new connections are refused) without cutting the
/// requests in flight. Accept errors (EMFILE, …) are logged and retried; it never returns.
pub async fn serve_on(name: String, listener: TcpListener) -> Infallible {
    let server = HeaderValue::from_static(concat!("vxmesh-replica/", env!("CARGO_PKG_VERSION")));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE, ENOBUFS, ...: the listener stays usable; give the kernel a moment.
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let body = Bytes::from(answer(&name, peer));
        let server = server.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_req: Request<hyper::body::Incoming>| {
                let mut resp = Response::new(Full::new(body.clone()));
                let h = resp.headers_mut();
                h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                h.insert(SERVER, server.clone());
                async move { Ok::<_, Infallible>(resp) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, "connection: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_with_name_and_peer() {
        let peer: SocketAddr = "10.99.0.250:41234".parse().unwrap();
        assert_eq!(answer("h2-c1", peer), "h2-c1 10.99.0.250 41234\n");
    }

    #[test]
    fn refuses_bad_specs_naming_the_field() {
        let ok = ReplicaSpec {
            name: "h1-c1".into(),
            port: 8080,
            threads: 1,
        };
        assert!(check(&ok).is_ok());
        for (bad, field) in [
            (
                ReplicaSpec {
                    name: "a b".into(),
                    ..ok.clone()
                },
                "name",
            ),
            (
                ReplicaSpec {
                    name: String::new(),
                    ..ok.clone()
                },
                "name",
            ),
            (
                ReplicaSpec {
                    port: 0,
                    ..ok.clone()
                },
                "port",
            ),
            (
                ReplicaSpec {
                    threads: 0,
                    ..ok.clone()
                },
                "threads",
            ),
        ] {
            let e = check(&bad).unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
    }

    /// A real server on loopback in this process's namespace, a real HTTP client (hyper's),
    /// keep-alive then `Connection: close`.
    #[test]
    fn serves_keep_alive_and_close() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = TcpSocket::new_v4().unwrap();
            listener
                .bind("127.0.0.1:0".parse().unwrap())
                .expect("bind loopback");
            let port = listener.local_addr().unwrap().port();
            drop(listener);
            let spec = ReplicaSpec {
                name: "r1".into(),
                port,
                threads: 1,
            };
            tokio::spawn(run(spec));
            let stream = loop {
                match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                    Ok(s) => break s,
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            };
            let me = stream.local_addr().unwrap();
            let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            let driver = tokio::spawn(conn);
            for close in [false, false, true] {
                let mut req = Request::get("/").header("host", "x");
                if close {
                    req = req.header("connection", "close");
                }
                let resp = tx
                    .send_request(req.body(http_body_util::Empty::<Bytes>::new()).unwrap())
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200);
                let keep = resp.headers().get("connection").map(|v| v.to_owned());
                let body = http_body_util::BodyExt::collect(resp.into_body())
                    .await
                    .unwrap()
                    .to_bytes();
                assert_eq!(
                    body,
                    answer("r1", me).as_bytes(),
                    "same connection each time"
                );
                assert_eq!(
                    keep.is_some(),
                    close,
                    "close is answered with Connection: close"
                );
            }
            // The server closed the connection after the `Connection: close` exchange.
            tokio::time::timeout(Duration::from_secs(5), driver)
                .await
                .expect("connection closed by the server")
                .unwrap()
                .unwrap();
        });
    }
}
