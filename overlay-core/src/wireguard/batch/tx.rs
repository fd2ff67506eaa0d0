//! The send worker: reads frames from its TAP queue, cuts GSO frames into packets
//! ([`super::segment`]), has boringtun encrypt each for the peer its destination routes to,
//! and sends the ciphertexts to that peer's endpoint in trains of equal-sized datagrams, one
//! `sendmsg` per train ([`super::udp::send`]). Frames are read until the queue is empty (or a
//! train is full) before anything is sent, so small packets (ACKs) are batched as well.

use std::net::{IpAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use boringtun::noise::{Tunn, TunnResult};

use super::peers::Peer;
use super::segment::segment;
use super::udp::{self, MAX_SEGMENTS, MAX_SEND};
use super::vnet::{self, VnetHdr};
use super::{wait, Shared, Wake};

/// Bytes of ciphertext gathered before they must be sent.
const OUT_BUFFER: usize = 256 << 10;
/// boringtun needs room for a handshake initiation (148 bytes) or the packet and 32 bytes.
const ROOM: usize = 148 + 32;
/// Frames read before the batch is sent even if the queue is not empty yet.
const MAX_FRAMES: usize = 64;

/// A train of datagrams of one size in `OutBatch::buf`.
struct Run {
    start: usize,
    len: usize,
    seg: usize,
    count: usize,
    /// A shorter datagram ended the train.
    closed: bool,
}

/// Ciphertexts waiting to go to one endpoint.
struct OutBatch {
    buf: Vec<u8>,
    used: usize,
    runs: Vec<Run>,
    dst: Option<(Arc<Peer>, SocketAddrV4)>,
}

impl OutBatch {
    fn new() -> OutBatch {
        OutBatch {
            buf: vec![0; OUT_BUFFER],
            used: 0,
            runs: Vec::new(),
            dst: None,
        }
    }

    fn is_for(&self, peer: &Arc<Peer>, ep: SocketAddrV4) -> bool {
        self.dst
            .as_ref()
            .is_some_and(|(p, e)| Arc::ptr_eq(p, peer) && *e == ep)
    }

    /// Appends the ciphertext just written at `used` (`n` bytes) to the last train or a new one.
    fn commit(&mut self, n: usize) {
        let extend = self.runs.last().is_some_and(|r| {
            !r.closed && n <= r.seg && r.count < MAX_SEGMENTS && r.len + n <= MAX_SEND
        });
        if extend {
            let r = self.runs.last_mut().expect("checked");
            r.len += n;
            r.count += 1;
            r.closed = n < r.seg;
        } else {
            self.runs.push(Run {
                start: self.used,
                len: n,
                seg: n,
                count: 1,
                closed: false,
            });
        }
        self.used += n;
    }

    fn send(&mut self, shared: &Shared) {
        if let (Some((_, dst)), Some(socks)) = (&self.dst, shared.sockets()) {
            let sock = &socks[0];
            for r in &self.runs {
                let s = &shared.stats;
                match udp::send(sock, &self.buf[r.start..r.start + r.len], r.seg, *dst) {
                    Ok(()) => {
                        s.tx_sends.fetch_add(1, Relaxed);
                        s.tx_datagrams.fetch_add(r.count as u64, Relaxed);
                    }
                    Err(e) => {
                        s.tx_errors.fetch_add(1, Relaxed);
                        tracing::debug!(error = %e, endpoint = %dst, "WireGuard send failed");
                    }
                }
            }
        }
        self.runs.clear();
        self.used = 0;
    }

    /// Encrypts one packet for the batch's peer (whose state the caller has locked).
    fn encrypt(&mut self, tunn: &mut Tunn, pkt: &[u8], shared: &Shared, sock: Option<&UdpSocket>) {
        if self.buf.len() - self.used < pkt.len() + ROOM {
            self.send(shared);
        }
        let dst = self.dst.as_ref().map(|(_, e)| *e);
        match tunn.encapsulate(pkt, &mut self.buf[self.used..]) {
            TunnResult::WriteToNetwork(p) if p.first() == Some(&4) => {
                let n = p.len();
                self.commit(n);
            }
            // A handshake initiation (the packet waits in boringtun's queue): at once.
            TunnResult::WriteToNetwork(p) => {
                if let (Some(sock), Some(dst)) = (sock, dst) {
                    let _ = sock.send_to(p, dst);
                }
            }
            TunnResult::Done => {}
            TunnResult::Err(e) => {
                shared.stats.tx_errors.fetch_add(1, Relaxed);
                tracing::debug!(error = ?e, "WireGuard encapsulation failed");
            }
            _ => {}
        }
    }
}

/// Destination address of an IP packet.
fn destination(pkt: &[u8]) -> Option<IpAddr> {
    match pkt.first()? >> 4 {
        4 => {
            let b: [u8; 4] = pkt.get(16..20)?.try_into().ok()?;
            Some(IpAddr::from(b))
        }
        6 => {
            let b: [u8; 16] = pkt.get(24..40)?.try_into().ok()?;
            Some(IpAddr::from(b))
        }
        _ => None,
    }
}

/// Runs the send worker on TAP queue `queue` until the device stops.
pub(super) fn run(shared: Arc<Shared>, queue: usize) {
    let fd = shared.tap.queues[queue].as_raw_fd();
    let mut frame = vec![0u8; vnet::LEN + 65536 + 512];
    let mut scratch = vec![0u8; 65536 + 512];
    let mut out = OutBatch::new();
    let mut frames = 0;
    loop {
        // SAFETY: reading into a buffer we own, of the length given.
        let n = unsafe { libc::read(fd, frame.as_mut_ptr().cast(), frame.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => {
                    out.send(&shared);
                    frames = 0;
                    // SAFETY: the queue outlives this worker (the device joins it first).
                    let tap = unsafe { BorrowedFd::borrow_raw(fd) };
                    match wait(tap, &shared.stop, None) {
                        Wake::Ready => continue,
                        Wake::Stop => return,
                    }
                }
                _ => {
                    tracing::error!(error = %e, "reading the WireGuard TAP queue failed; its send worker stops");
                    return;
                }
            }
        }
        handle_frame(&shared, &mut frame[..n as usize], &mut scratch, &mut out);
        frames += 1;
        if frames >= MAX_FRAMES || out.used > OUT_BUFFER / 2 {
            out.send(&shared);
            frames = 0;
        }
    }
}

fn handle_frame(shared: &Shared, frame: &mut [u8], scratch: &mut [u8], out: &mut OutBatch) {
    let s = &shared.stats;
    let Some(hdr) = VnetHdr::parse(frame) else {
        return;
    };
    let frame = &mut frame[vnet::LEN..];
    let ethertype = frame.get(12..14).map(|t| u16::from_be_bytes([t[0], t[1]]));
    if !matches!(ethertype, Some(0x0800 | 0x86dd)) {
        // Nothing but IP is carried (the interface does no ARP).
        s.tx_dropped.fetch_add(1, Relaxed);
        return;
    }
    let (Some(hdr), pkt) = (hdr.strip(14), &mut frame[14..]) else {
        s.tx_dropped.fetch_add(1, Relaxed);
        return;
    };
    let peer = destination(pkt).and_then(|d| {
        let t = shared.table.read().unwrap_or_else(|e| e.into_inner());
        t.route(d).cloned()
    });
    let Some(peer) = peer else {
        s.tx_no_peer.fetch_add(1, Relaxed);
        return;
    };
    let mut st = peer.lock();
    let Some(ep) = st.endpoint else {
        s.tx_no_peer.fetch_add(1, Relaxed);
        return;
    };
    if !out.is_for(&peer, ep) {
        out.send(shared);
        out.dst = Some((Arc::clone(&peer), ep));
    }
    s.tx_frames.fetch_add(1, Relaxed);
    if hdr.is_gso() {
        s.tx_gso_frames.fetch_add(1, Relaxed);
    }
    let socks = shared.sockets();
    let sock = socks.as_ref().map(|v| &*v[0]);
    let r = segment(&hdr, pkt, scratch, |seg| {
        s.tx_packets.fetch_add(1, Relaxed);
        out.encrypt(&mut st.tunn, seg, shared, sock);
    });
    if let Err(e) = r {
        s.tx_dropped.fetch_add(1, Relaxed);
        tracing::debug!(error = %e, "dropped a frame the WireGuard device cannot segment");
    }
}
