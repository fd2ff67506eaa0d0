//! UDP transfers whose every datagram can be checked on arrival, for the encrypted-network
//! transfer test (run inside lab containers):
//!
//! udp_marker send ADDR:PORT COUNT SIZES MARKER
//!     sends COUNT datagrams to ADDR:PORT, the i-th of size SIZES[i % len] (comma-separated
//!     byte counts), each: sequence number (8 bytes, big-endian), MARKER, then bytes derived
//!     from the sequence number; a pause of 1 ms after every 8 (about 10 MB/s: UDP has no
//!     congestion control, and a faster sender fills the interfaces' queues of a busy machine).
//! udp_marker recv PORT COUNT SIZES MARKER IDLE_MS
//!     receives until COUNT datagrams arrived or none for IDLE_MS, then prints one line:
//!     `received=N intact=N in_order=BOOL first_bad=SEQ|-` (a datagram is intact when its
//!     size, marker and bytes are those its sequence number calls for); prints `ready` first,
//!     once the socket is bound.

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

const USAGE: &str = "usage: udp_marker send ADDR:PORT COUNT SIZES MARKER | \
                     recv PORT COUNT SIZES MARKER IDLE_MS";

/// The datagram with sequence number `seq`.
fn datagram(seq: u64, size: usize, marker: &[u8]) -> Vec<u8> {
    let mut d = seq.to_be_bytes().to_vec();
    d.extend_from_slice(marker);
    let mut i = 0u64;
    while d.len() < size {
        d.push((seq.wrapping_mul(31).wrapping_add(i * 7) % 251) as u8);
        i += 1;
    }
    d.truncate(size.max(8 + marker.len()));
    d
}

fn sizes(s: &str) -> Vec<usize> {
    s.split(',').map(|n| n.parse().expect("SIZES")).collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["send", addr, count, s, marker] => send(
            addr.parse().expect("ADDR:PORT"),
            count.parse().expect("COUNT"),
            &sizes(s),
            marker.as_bytes(),
        ),
        ["recv", port, count, s, marker, idle] => recv(
            port.parse().expect("PORT"),
            count.parse().expect("COUNT"),
            &sizes(s),
            marker.as_bytes(),
            Duration::from_millis(idle.parse().expect("IDLE_MS")),
        ),
        _ => {
            eprintln!("{USAGE}");
            64
        }
    };
    std::process::exit(code);
}

fn send(to: SocketAddr, count: u64, sizes: &[usize], marker: &[u8]) -> i32 {
    let sock = UdpSocket::bind("0.0.0.0:0").expect("bind");
    for seq in 0..count {
        let d = datagram(seq, sizes[seq as usize % sizes.len()], marker);
        if let Err(e) = sock.send_to(&d, to) {
            eprintln!("send {seq}: {e}");
            return 1;
        }
        if seq % 8 == 7 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    0
}

fn recv(port: u16, count: u64, sizes: &[usize], marker: &[u8], idle: Duration) -> i32 {
    let sock = UdpSocket::bind(("0.0.0.0", port)).expect("bind");
    // A large buffer (SO_RCVBUFFORCE: root may exceed rmem_max) so that a busy machine does
    // not drop what arrived.
    let size: libc::c_int = 32 << 20;
    // SAFETY: setsockopt with an int option value of the right size.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    sock.set_read_timeout(Some(idle)).expect("timeout");
    println!("ready");
    let _ = std::io::stdout().flush();
    let mut buf = vec![0u8; 65536];
    let (mut received, mut intact, mut in_order) = (0u64, 0u64, true);
    let mut last: Option<u64> = None;
    let mut first_bad: Option<u64> = None;
    while received < count {
        let Ok(n) = sock.recv(&mut buf) else {
            break;
        };
        received += 1;
        let d = &buf[..n];
        let seq = d
            .get(..8)
            .map(|b| u64::from_be_bytes(b.try_into().unwrap()))
            .unwrap_or(u64::MAX);
        let want = datagram(seq, sizes[(seq % sizes.len() as u64) as usize], marker);
        if seq < count && d == want.as_slice() {
            intact += 1;
        } else if first_bad.is_none() {
            first_bad = Some(seq);
        }
        if last.is_some_and(|l| seq <= l) {
            in_order = false;
        }
        last = Some(seq);
    }
    println!(
        "received={received} intact={intact} in_order={in_order} first_bad={}",
        first_bad.map_or("-".to_string(), |s| s.to_string())
    );
    0
}
