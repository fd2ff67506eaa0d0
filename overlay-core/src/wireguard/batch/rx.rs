//! The receive worker: takes trains of datagrams from its UDP socket ([`super::udp::recv`]),
//! finds each datagram's peer (by receiver index; a handshake initiation by the static key
//! inside it), has boringtun authenticate and decrypt it, drops what the peer's allowed IPs
//! do not cover (cryptokey routing), and writes the packets to the TAP merged into large
//! frames ([`super::coalesce`]). Handshake answers and the packets boringtun held back while
//! it had no session go out at once.

use std::net::{IpAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::{Packet, TunnResult};

use super::coalesce::Coalescer;
use super::peers::{Peer, Table};
use super::udp;
use super::{wait, EventFd, Shared, Wake};

/// Datagrams decrypted before the merged frames are written even if more are queued.
const MAX_DATAGRAMS: usize = 128;
/// Ethernet source address of the frames written to the TAP (any unicast address will do:
/// the kernel looks only at the destination, the TAP's own).
const SOURCE_MAC: [u8; 6] = [0x02, 0x77, 0x67, 0, 0, 1];

/// Writes one frame (an iovec of at most two parts: headers, packet) to the TAP queue `fd`.
fn write_frame(shared: &Shared, fd: i32, iov: &[&[u8]]) {
    let mut v = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; 2];
    let n = iov.len().min(2);
    for (d, b) in v.iter_mut().zip(iov) {
        *d = libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        };
    }
    // SAFETY: the first n iovecs point into live slices of the given lengths.
    let n = unsafe { libc::writev(fd, v.as_ptr(), n as libc::c_int) };
    if n < 0 {
        shared.stats.rx_errors.fetch_add(1, Relaxed);
        tracing::debug!(error = %std::io::Error::last_os_error(), "writing to the WireGuard TAP failed");
    }
}

/// Runs the receive worker on socket `sock` (writing to TAP queue `queue`) until the device
/// stops or `rebind` says its sockets were replaced.
pub(super) fn run(shared: Arc<Shared>, sock: Arc<UdpSocket>, queue: usize, rebind: Arc<EventFd>) {
    let tap = shared.tap.queues[queue].as_raw_fd();
    let mut buf = vec![0u8; 65536];
    let mut cmsg = udp::control_buffer();
    let mut plain = vec![0u8; 65536];
    let vxlan = shared.tap.tunnel_gso.then_some(shared.vxlan_port);
    let mut coalescer = Coalescer::new(shared.tap.mac, SOURCE_MAC, vxlan);
    let mut sink = |iov: &[&[u8]]| write_frame(&shared, tap, iov);
    let mut pending = 0;
    loop {
        let r = match udp::recv(&sock, &mut buf, &mut cmsg) {
            Ok(r) => r,
            Err(e) => {
                shared.stats.rx_errors.fetch_add(1, Relaxed);
                tracing::debug!(error = %e, "WireGuard receive failed");
                continue;
            }
        };
        let Some(r) = r else {
            coalescer.flush(&mut sink);
            count(&shared, &mut coalescer);
            pending = 0;
            match wait(sock.as_fd(), &shared.stop, Some(rebind.as_ref())) {
                Wake::Ready => continue,
                Wake::Stop => break,
            }
        };
        let s = &shared.stats;
        s.rx_recvs.fetch_add(1, Relaxed);
        let table = shared.table.read().unwrap_or_else(|e| e.into_inner());
        let mut checked = None;
        for d in buf[..r.len].chunks(r.seg.max(1)) {
            s.rx_datagrams.fetch_add(1, Relaxed);
            let mut deliver = |pkt: &[u8]| coalescer.push(pkt, &mut sink);
            datagram(
                &table,
                &sock,
                d,
                r.from,
                &mut plain,
                &mut checked,
                &mut deliver,
            );
            pending += 1;
        }
        drop(table);
        if pending >= MAX_DATAGRAMS {
            coalescer.flush(&mut sink);
            count(&shared, &mut coalescer);
            pending = 0;
        }
    }
}

/// Moves the coalescer's counts to the device's counters.
fn count(shared: &Shared, c: &mut Coalescer) {
    let s = &shared.stats;
    s.rx_frames
        .fetch_add(std::mem::take(&mut c.frames), Relaxed);
    s.rx_merged
        .fetch_add(std::mem::take(&mut c.merged), Relaxed);
}

/// The last source address found allowed, and for which peer: a train of datagrams from one
/// peer carries packets from one address, looked up once (valid while the table is).
type Checked = Option<(IpAddr, *const Peer)>;

/// Whether the table routes `ip` to `peer` (cryptokey routing: a peer may only send from
/// its allowed IPs).
fn allowed(table: &Table, peer: &Arc<Peer>, ip: IpAddr, checked: &mut Checked) -> bool {
    if *checked == Some((ip, Arc::as_ptr(peer))) {
        return true;
    }
    let ok = table.route(ip).is_some_and(|p| Arc::ptr_eq(p, peer));
    if ok {
        *checked = Some((ip, Arc::as_ptr(peer)));
    }
    ok
}

/// Handles one datagram from `from`; decrypted packets go to `deliver`.
fn datagram(
    table: &Table,
    sock: &UdpSocket,
    d: &[u8],
    from: SocketAddrV4,
    plain: &mut [u8],
    checked: &mut Checked,
    deliver: &mut impl FnMut(&[u8]),
) {
    let (Some((secret, public)), Some(limiter)) = (&table.key, &table.limiter) else {
        return;
    };
    let src = IpAddr::V4(*from.ip());
    // MAC and load check before any key is looked for (boringtun's device does the same).
    let parsed = match limiter.verify_packet(Some(src), d, plain) {
        Ok(p) => p,
        Err(TunnResult::WriteToNetwork(cookie)) => {
            let _ = sock.send_to(cookie, from);
            return;
        }
        Err(_) => return,
    };
    let peer = match &parsed {
        Packet::HandshakeInit(p) => parse_handshake_anon(secret, public, p)
            .ok()
            .and_then(|h| table.peers.get(&h.peer_static_public)),
        Packet::HandshakeResponse(p) => table.by_index.get(&(p.receiver_idx >> 8)),
        Packet::PacketCookieReply(p) => table.by_index.get(&(p.receiver_idx >> 8)),
        Packet::PacketData(p) => table.by_index.get(&(p.receiver_idx >> 8)),
    };
    // Not a peer of ours (a forged or removed key, a stale index): nothing.
    let Some(peer) = peer else {
        return;
    };
    let mut st = peer.lock();
    let mut answered = false;
    match st.tunn.decapsulate(Some(src), d, plain) {
        TunnResult::Done => {}
        TunnResult::Err(e) => {
            tracing::trace!(error = ?e, "WireGuard datagram refused");
            return;
        }
        TunnResult::WriteToNetwork(p) => {
            let _ = sock.send_to(p, from);
            answered = true;
        }
        TunnResult::WriteToTunnelV4(pkt, ip) => {
            if allowed(table, peer, IpAddr::V4(ip), checked) {
                deliver(pkt);
            }
        }
        TunnResult::WriteToTunnelV6(pkt, ip) => {
            if allowed(table, peer, IpAddr::V6(ip), checked) {
                deliver(pkt);
            }
        }
    }
    if answered {
        // A handshake completed: what boringtun queued meanwhile goes out now.
        while let TunnResult::WriteToNetwork(p) = st.tunn.decapsulate(None, &[], plain) {
            let _ = sock.send_to(p, from);
        }
    }
    // An authenticated datagram: its source is the peer's endpoint from now on.
    st.endpoint = Some(from);
}
