//! A client loop of HTTP requests run from inside a lab namespace (the outside client): one
//! new TCP connection per request (`Connection: close`), a few per second, every outcome
//! recorded with the moment it started, until stopped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request: when it started, and the answer's body (`NAME ADDR PORT`) or why it failed.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub start: Instant,
    pub result: Result<String, String>,
}

/// A loop of requests running on a thread inside a network namespace.
pub struct RequestLoop {
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RequestLoop {
    /// Starts requests `GET /N` to `to` from network namespace `netns` (a name under
    /// /run/netns), one every `every`; each waits at most `timeout` to connect and to read.
    pub fn start(netns: &str, to: SocketAddr, every: Duration, timeout: Duration) -> RequestLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let (s, o) = (stop.clone(), outcomes.clone());
        let path = overlay_core::netns::path(netns);
        let thread = std::thread::spawn(move || {
            overlay_core::netns::run_in(&path, move || {
                let mut n = 0u64;
                while !s.load(Ordering::Relaxed) {
                    n += 1;
                    let start = Instant::now();
                    let result = get(to, n, timeout);
                    o.lock().unwrap().push(Outcome { start, result });
                    std::thread::sleep(every.saturating_sub(start.elapsed()));
                }
            })
            .expect("enter the client's namespace");
        });
        RequestLoop {
            stop,
            outcomes,
            thread: Some(thread),
        }
    }

    /// The outcomes so far.
    pub fn so_far(&self) -> Vec<Outcome> {
        self.outcomes.lock().unwrap().clone()
    }

    /// Stops the loop (after its current request) and returns every outcome.
    pub fn stop(mut self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("request loop");
        }
        self.so_far()
    }
}

impl Drop for RequestLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One `GET /N` on a new connection; the body of a `200` answer, or the failure.
fn get(to: SocketAddr, n: u64, timeout: Duration) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&to, timeout).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.write_all(format!("GET /{n} HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)
        .map_err(|e| format!("read: {e} after {answer:?}"))?;
    match answer.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.trim_end().to_string()),
        _ => Err(format!("bad answer {answer:?}")),
    }
}
