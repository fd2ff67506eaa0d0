//! Health checks against real listeners on 127.0.0.1: a TCP listener opened, closed and
//! opened again; a tiny HTTP server answering 200, then 500, then 200; one that never answers;
//! and checks made from inside another network namespace (created by the test, removed on
//! drop). The waits below are bounds against a hang, never measurements.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ingress_lb::health::{HealthRunner, SocketSource, State, Target, Transition};
use ingress_lb::service::{HealthCheck, HealthSpec};
use overlay_core::netns::{self, NetnsGuard};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const BOUND: Duration = Duration::from_secs(20);

fn spec(check: HealthCheck) -> HealthSpec {
    HealthSpec {
        check,
        interval_ms: 100,
        timeout_ms: 100,
        rise: 2,
        fall: 2,
    }
}

async fn next(
    rx: &mut mpsc::UnboundedReceiver<Transition<&'static str>>,
) -> Transition<&'static str> {
    tokio::time::timeout(BOUND, rx.recv())
        .await
        .expect("a transition within the bound")
        .expect("the runner is alive")
}

/// An HTTP server answering every request with the status in `status`, recording request
/// heads. `status` 0: accept and never answer.
struct HttpServer {
    port: u16,
    status: Arc<AtomicU16>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl HttpServer {
    fn serve(listener: TcpListener, status: u16) -> Self {
        let port = listener.local_addr().unwrap().port();
        let status = Arc::new(AtomicU16::new(status));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (st, reqs) = (status.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                let (st, reqs) = (st.clone(), reqs.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    reqs.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&head).into_owned());
                    let code = st.load(Ordering::SeqCst);
                    if code == 0 {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    let reply = format!(
                        "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    let _ = conn.write_all(reply.as_bytes()).await;
                });
            }
        });
        HttpServer {
            port,
            status,
            requests,
        }
    }

    fn target(&self, path: &str) -> Target<&'static str> {
        Target {
            key: "web",
            addr: SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port),
            spec: spec(HealthCheck::Http { path: path.into() }),
        }
    }
}

async fn loopback_listener() -> TcpListener {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap()
}

#[tokio::test]
async fn tcp_check_follows_a_listener() {
    let listener = loopback_listener().await;
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicU32::new(0));
    let serve = |listener: TcpListener, accepted: Arc<AtomicU32>| {
        tokio::spawn(async move {
            while listener.accept().await.is_ok() {
                accepted.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let server = serve(listener, accepted.clone());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut runner = HealthRunner::new(SocketSource::current(), tx).unwrap();
    runner.set_targets([Target {
        key: "web",
        addr: SocketAddrV4::new(Ipv4Addr::LOCALHOST, port),
        spec: spec(HealthCheck::Tcp),
    }]);
    let t = next(&mut rx).await;
    assert_eq!(
        (t.key, t.state, t.detail.as_str()),
        ("web", State::Up, "connected")
    );
    assert!(
        accepted.load(Ordering::SeqCst) >= 1,
        "the listener saw the check"
    );

    server.abort(); // the listener closes with its task
    let t = next(&mut rx).await;
    assert_eq!(t.state, State::Down);
    assert_eq!(t.detail, "connect: connection refused");

    let again = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .await
        .unwrap();
    let _server = serve(again, accepted.clone());
    let t = next(&mut rx).await;
    assert_eq!(t.state, State::Up);

    // No targets: every check task ends (their senders go with them).
    runner.set_targets([]);
    assert!(runner.is_empty());
    drop(runner);
    assert!(tokio::time::timeout(BOUND, rx.recv())
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn http_check_follows_the_status() {
    let server = HttpServer::serve(loopback_listener().await, 200);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut runner = HealthRunner::new(SocketSource::current(), tx).unwrap();
    runner.set_targets([server.target("/healthz")]);
    let t = next(&mut rx).await;
    assert_eq!((t.state, t.detail.as_str()), (State::Up, "HTTP 200"));
    let head = server.requests.lock().unwrap()[0].clone();
    assert!(head.starts_with("GET /healthz HTTP/1.1\r\n"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("host: 127.0.0.1:{}\r\n", server.port)),
        "{head}"
    );

    server.status.store(500, Ordering::SeqCst);
    let t = next(&mut rx).await;
    assert_eq!((t.state, t.detail.as_str()), (State::Down, "HTTP 500"));
    server.status.store(204, Ordering::SeqCst);
    let t = next(&mut rx).await;
    assert_eq!((t.state, t.detail.as_str()), (State::Up, "HTTP 204"));
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let server = HttpServer::serve(loopback_listener().await, 0);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut runner = HealthRunner::new(SocketSource::current(), tx).unwrap();
    runner.set_targets([server.target("/")]);
    let t = next(&mut rx).await;
    assert_eq!(
        (t.state, t.detail.as_str()),
        (State::Down, "timed out after 100ms")
    );
    assert!(
        !server.requests.lock().unwrap().is_empty(),
        "the request reached the server"
    );
}

fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "vxt-{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The same address and port answer 200 inside a test namespace and 500 in the test's own:
/// a runner whose sockets come from the namespace sees the first, one with sockets of the
/// current namespace the second.
#[tokio::test]
async fn checks_run_in_the_namespace_the_sockets_come_from() {
    let outside = loopback_listener().await;
    let port = outside.local_addr().unwrap().port();
    let outside = HttpServer::serve(outside, 500);

    let ns = NetnsGuard::new(&unique("hc")).unwrap();
    let inside = netns::run_in(ns.path(), move || {
        std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))
    })
    .unwrap()
    .unwrap();
    inside.set_nonblocking(true).unwrap();
    let inside = HttpServer::serve(TcpListener::from_std(inside).unwrap(), 200);

    let (tx, mut rx) = mpsc::unbounded_channel();
    let source = SocketSource::netns(ns.path()).unwrap();
    assert_eq!(source.netns_path(), Some(ns.path()));
    let mut in_ns = HealthRunner::new(source, tx.clone()).unwrap();
    in_ns.set_targets([Target {
        key: "inside",
        ..inside.target("/")
    }]);
    let mut here = HealthRunner::new(SocketSource::current(), tx).unwrap();
    here.set_targets([Target {
        key: "here",
        ..outside.target("/")
    }]);
    let mut seen = [next(&mut rx).await, next(&mut rx).await];
    seen.sort_by_key(|t| t.key);
    assert_eq!(
        seen.iter()
            .map(|t| (t.key, t.state, t.detail.as_str()))
            .collect::<Vec<_>>(),
        [
            ("here", State::Down, "HTTP 500"),
            ("inside", State::Up, "HTTP 200")
        ]
    );
    assert!(!inside.requests.lock().unwrap().is_empty());
    assert!(!outside.requests.lock().unwrap().is_empty());
    drop((in_ns, here));
}

#[test]
fn a_missing_namespace_is_named() {
    let err =
        SocketSource::netns(std::path::Path::new("/run/netns/vxt-does-not-exist")).unwrap_err();
    assert!(err.to_string().contains("vxt-does-not-exist"), "{err}");
}

#[test]
fn the_runner_needs_a_runtime() {
    let (tx, _rx) = mpsc::unbounded_channel::<Transition<u8>>();
    assert!(HealthRunner::new(SocketSource::current(), tx).is_err());
}
