//! A small client the service tests run inside a lab container (through `vxmesh lab exec`, so
//! in the container's cgroup or outside it), printing what the application itself sees:
//!
//! svc_client udp ADDR:PORT PAYLOAD
//!     one unconnected UDP socket: sendto(ADDR:PORT), recvfrom; prints `from=IP:PORT reply=…`
//!     (the source recvfrom() reports: a VIP when the socket programs turned it back).
//! svc_client udp-serve PORT NAME
//!     a UDP request/reply server: answers every datagram on PORT with NAME, to its sender.
//! svc_client keepalive ADDR:PORT COUNT INTERVAL_MS [STOP_FILE [TIMEOUT_MS]]
//!     ONE TCP connection (prints `peer=IP:PORT` as getpeername() reports it), then COUNT
//!     HTTP/1.1 keep-alive GETs, one every INTERVAL_MS, or fewer if STOP_FILE appears;
//!     prints `ok MS BODY` per answer, or `err MS WHY` and exits 2 when the connection fails
//!     or an answer takes longer than TIMEOUT_MS (default 3000).
//! svc_client bulk-serve PORT NAME
//!     a TCP bulk server: per connection, a request line `down N` (it sends `NAME\n` and N
//!     bytes, then closes) or `up N` (it reads N bytes, then answers `NAME GOT\n`).
//! svc_client bulk ADDR:PORT down|up N
//!     one connection to a bulk server, N bytes down or up; prints `NAME BYTES` (the bytes
//!     it received, or the bytes the server says it received), or `err WHY` and exits 1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

const USAGE: &str = "usage: svc_client udp ADDR:PORT PAYLOAD | udp-serve PORT NAME | \
                     keepalive ADDR:PORT COUNT INTERVAL_MS [STOP_FILE [TIMEOUT_MS]] | \
                     bulk-serve PORT NAME | bulk ADDR:PORT down|up N";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["udp", addr, payload] => udp(addr.parse().expect("ADDR:PORT"), payload),
        ["udp-serve", port, name] => udp_serve(port.parse().expect("PORT"), name),
        ["keepalive", addr, count, interval, ref rest @ ..] if rest.len() <= 2 => keepalive(
            addr.parse().expect("ADDR:PORT"),
            count.parse().expect("COUNT"),
            Duration::from_millis(interval.parse().expect("INTERVAL_MS")),
            rest.first().map(std::path::Path::new),
            Duration::from_millis(rest.get(1).map_or(3000, |t| t.parse().expect("TIMEOUT_MS"))),
        ),
        ["bulk-serve", port, name] => bulk::serve(port.parse().expect("PORT"), name),
        ["bulk", addr, dir @ ("down" | "up"), n] => {
            bulk::transfer(addr.parse().expect("ADDR:PORT"), dir, n.parse().expect("N"))
        }
        _ => {
            eprintln!("{USAGE}");
            64
        }
    };
    std::process::exit(code);
}

fn udp(addr: SocketAddr, payload: &str) -> i32 {
    let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    if let Err(e) = s.send_to(payload.as_bytes(), addr) {
        println!("err send: {e}");
        return 1;
    }
    let mut buf = [0u8; 1500];
    match s.recv_from(&mut buf) {
        Ok((n, from)) => {
            println!(
                "from={from} reply={}",
                String::from_utf8_lossy(&buf[..n]).trim()
            );
            0
        }
        Err(e) => {
            println!("err recv: {e}");
            1
        }
    }
}

fn udp_serve(port: u16, name: &str) -> i32 {
    let s = UdpSocket::bind(("0.0.0.0", port)).expect("bind");
    let mut buf = [0u8; 1500];
    loop {
        match s.recv_from(&mut buf) {
            Ok((_, from)) => {
                let _ = s.send_to(name.as_bytes(), from);
            }
            Err(e) => {
                eprintln!("recv: {e}");
                return 1;
            }
        }
    }
}

/// Reads one HTTP/1.1 response with a Content-Length; returns its body.
fn response(r: &mut BufReader<TcpStream>) -> std::io::Result<String> {
    let mut len = None;
    let mut status = String::new();
    r.read_line(&mut status)?;
    if !status.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!("status {:?}", status.trim())));
    }
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse::<usize>().ok();
            }
        }
    }
    let mut body = vec![0u8; len.ok_or_else(|| std::io::Error::other("no content-length"))?];
    r.read_exact(&mut body)?;
    Ok(String::from_utf8_lossy(&body).trim().to_string())
}

fn keepalive(
    addr: SocketAddr,
    count: u32,
    interval: Duration,
    stop: Option<&std::path::Path>,
    timeout: Duration,
) -> i32 {
    let start = Instant::now();
    let ms = || start.elapsed().as_millis();
    let stream = match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
        Ok(s) => s,
        Err(e) => {
            println!("err {} connect: {e}", ms());
            return 2;
        }
    };
    stream.set_read_timeout(Some(timeout)).unwrap();
    println!("peer={}", stream.peer_addr().expect("peer"));
    let mut w = stream.try_clone().expect("clone");
    let mut r = BufReader::new(stream);
    for _ in 0..count {
        if stop.is_some_and(|p| p.exists()) {
            break;
        }
        let next = Instant::now() + interval;
        let res = w
            .write_all(format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
            .and_then(|()| response(&mut r));
        match res {
            Ok(body) => println!("ok {} {body}", ms()),
            Err(e) => {
                println!("err {} {e}", ms());
                return 2;
            }
        }
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    0
}

/// TCP bulk transfers (`bulk-serve`, `bulk`): whole-size segments both ways, bytes counted.
mod bulk {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
    use std::time::Duration;

    const CHUNK: usize = 64 * 1024;
    const TIMEOUT: Duration = Duration::from_secs(10);

    pub fn serve(port: u16, name: &str) -> i32 {
        let l = TcpListener::bind(("0.0.0.0", port)).expect("bind");
        for conn in l.incoming() {
            let Ok(conn) = conn else { continue };
            let name = name.to_string();
            std::thread::spawn(move || {
                if let Err(e) = serve_one(conn, &name) {
                    eprintln!("bulk: {e}");
                }
            });
        }
        1
    }

    fn serve_one(conn: TcpStream, name: &str) -> std::io::Result<()> {
        conn.set_read_timeout(Some(TIMEOUT))?;
        let mut w = conn.try_clone()?;
        let mut r = BufReader::new(conn);
        let mut line = String::new();
        r.read_line(&mut line)?;
        let bad = || std::io::Error::other(format!("bad request {line:?}"));
        let (dir, n) = line.trim().split_once(' ').ok_or_else(bad)?;
        let n: u64 = n.parse().map_err(|_| bad())?;
        match dir {
            "down" => {
                w.write_all(format!("{name}\n").as_bytes())?;
                send(&mut w, n)?;
                w.shutdown(Shutdown::Write)
            }
            "up" => {
                let got = std::io::copy(&mut r.take(n), &mut std::io::sink())?;
                w.write_all(format!("{name} {got}\n").as_bytes())
            }
            _ => Err(bad()),
        }
    }

    /// Writes n bytes (a repeated pattern).
    fn send(w: &mut impl Write, mut n: u64) -> std::io::Result<()> {
        let chunk: Vec<u8> = (0..CHUNK).map(|i| (i % 251) as u8).collect();
        while n > 0 {
            let k = n.min(CHUNK as u64) as usize;
            w.write_all(&chunk[..k])?;
            n -= k as u64;
        }
        Ok(())
    }

    pub fn transfer(addr: SocketAddr, dir: &str, n: u64) -> i32 {
        match run(addr, dir, n) {
            Ok(line) => {
                println!("{line}");
                0
            }
            Err(e) => {
                println!("err {e}");
                1
            }
        }
    }

    fn run(addr: SocketAddr, dir: &str, n: u64) -> std::io::Result<String> {
        let conn = TcpStream::connect_timeout(&addr, TIMEOUT)?;
        conn.set_read_timeout(Some(TIMEOUT))?;
        let mut w = conn.try_clone()?;
        let mut r = BufReader::new(conn);
        w.write_all(format!("{dir} {n}\n").as_bytes())?;
        let mut line = String::new();
        if dir == "up" {
            send(&mut w, n)?;
            w.shutdown(Shutdown::Write)?;
            r.read_line(&mut line)?;
            return Ok(line.trim().to_string());
        }
        r.read_line(&mut line)?;
        let got = std::io::copy(&mut r, &mut std::io::sink())?;
        Ok(format!("{} {got}", line.trim()))
    }
}
