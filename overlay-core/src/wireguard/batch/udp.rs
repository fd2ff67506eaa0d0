//! The underlay side: UDP sockets that send many WireGuard datagrams per call (generic
//! segmentation offload, `UDP_SEGMENT`, Linux 4.18) and receive many per call (`UDP_GRO`,
//! Linux 5.0): the kernel keeps a train of equal-sized datagrams to one destination as one
//! buffer as far as it can, and hands it over with the size of each.
//!
//! Several sockets share the port (`SO_REUSEPORT`), one per receive worker; the kernel
//! spreads peers over them by their address, so each peer's datagrams stay in order.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    self, sockopt, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag,
    SockProtocol, SockType, SockaddrIn,
};

/// Datagrams one `sendmsg` may carry (`UDP_MAX_SEGMENTS` of Linux before 6.7; 128 since).
pub const MAX_SEGMENTS: usize = 64;
/// Bytes one `sendmsg` may carry (the payload of an IPv4 UDP datagram: 65535 - 20 - 8).
pub const MAX_SEND: usize = 65507;
/// Socket buffer asked for (the kernel caps it at `net.core.[rw]mem_max`).
const BUFFER: usize = 4 << 20;

/// Opens one of the sockets on `addr` (`0.0.0.0:PORT` for the device), with GRO on receive.
pub fn bind(addr: SocketAddrV4) -> io::Result<UdpSocket> {
    let fd: OwnedFd = socket::socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Udp,
    )?;
    socket::setsockopt(&fd, sockopt::ReusePort, &true)?;
    socket::bind(fd.as_raw_fd(), &SockaddrIn::from(addr)).map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("binding UDP {addr}: {e}"),
        )
    })?;
    socket::setsockopt(&fd, sockopt::UdpGroSegment, &true)?;
    // Best effort: larger buffers only absorb bursts.
    let _ = socket::setsockopt(&fd, sockopt::RcvBuf, &BUFFER);
    let _ = socket::setsockopt(&fd, sockopt::SndBuf, &BUFFER);
    Ok(UdpSocket::from(fd))
}

/// Sends `buf`, a train of datagrams of `seg` bytes each (the last may be shorter), to
/// `dst` in one call; one datagram is sent plainly. When the kernel refuses the train (a
/// route whose MTU is smaller than a datagram: `EINVAL`/`EMSGSIZE`), the datagrams are sent
/// one by one (and fragmented by the kernel if need be).
pub fn send(sock: &UdpSocket, buf: &[u8], seg: usize, dst: SocketAddrV4) -> io::Result<()> {
    if buf.len() <= seg {
        return sock.send_to(buf, dst).map(|_| ());
    }
    let addr = SockaddrIn::from(dst);
    let size = seg as u16;
    let cmsg = [ControlMessage::UdpGsoSegments(&size)];
    let r = loop {
        match socket::sendmsg(
            sock.as_raw_fd(),
            &[IoSlice::new(buf)],
            &cmsg,
            MsgFlags::empty(),
            Some(&addr),
        ) {
            Err(Errno::EINTR) => continue,
            r => break r,
        }
    };
    match r {
        Ok(_) => Ok(()),
        Err(Errno::EINVAL | Errno::EMSGSIZE | Errno::EIO) => {
            for d in buf.chunks(seg) {
                sock.send_to(d, dst)?;
            }
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// What one receive returned: `len` bytes from `from`, datagrams of `seg` bytes each (the
/// last may be shorter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub len: usize,
    pub seg: usize,
    pub from: SocketAddrV4,
}

/// Control buffer for [`recv`] (room for the `UDP_GRO` message).
pub fn control_buffer() -> Vec<u8> {
    nix::cmsg_space!(libc::c_int)
}

/// Receives one buffer without waiting; `Ok(None)` when nothing is queued.
// nix's recvmsg takes the control buffer as a Vec.
#[allow(clippy::ptr_arg)]
pub fn recv(sock: &UdpSocket, buf: &mut [u8], cmsg: &mut Vec<u8>) -> io::Result<Option<Received>> {
    let mut iov = [IoSliceMut::new(buf)];
    let msg = loop {
        match socket::recvmsg::<SockaddrIn>(
            sock.as_fd().as_raw_fd(),
            &mut iov,
            Some(cmsg),
            MsgFlags::MSG_DONTWAIT,
        ) {
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Ok(None),
            r => break r?,
        }
    };
    let len = msg.bytes;
    let mut seg = len;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::UdpGroSegments(s) = c {
            if s > 0 {
                seg = s as usize;
            }
        }
    }
    let Some(from) = msg.address else {
        return Ok(None);
    };
    Ok(Some(Received {
        len,
        seg,
        from: SocketAddrV4::new(from.ip(), from.port()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On loopback: one call sends a train, one call receives it whole with its segment
    /// size, and the datagrams are the ones sent.
    #[test]
    fn a_train_goes_out_and_comes_back_in_one_call_each() {
        let rx = bind(SocketAddrV4::new([127, 0, 0, 1].into(), 0)).unwrap();
        let port = rx.local_addr().unwrap().port();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let dst = SocketAddrV4::new([127, 0, 0, 1].into(), port);
        let mut train = Vec::new();
        for i in 0..10u8 {
            train.extend(std::iter::repeat_n(i, if i == 9 { 300 } else { 1000 }));
        }
        send(&tx, &train, 1000, dst).unwrap();
        let mut buf = vec![0u8; 65536];
        let mut cmsg = control_buffer();
        let mut got = Vec::new();
        let mut calls = 0;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while got.len() < 10 && std::time::Instant::now() < deadline {
            match recv(&rx, &mut buf, &mut cmsg).unwrap() {
                Some(r) => {
                    calls += 1;
                    assert_eq!(r.from.port(), tx.local_addr().unwrap().port());
                    for d in buf[..r.len].chunks(r.seg) {
                        got.push(d.to_vec());
                    }
                }
                None => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
        assert_eq!(got.len(), 10);
        for (i, d) in got.iter().enumerate() {
            assert!(d.iter().all(|b| *b == i as u8));
            assert_eq!(d.len(), if i == 9 { 300 } else { 1000 });
        }
        assert_eq!(calls, 1, "GRO handed the train over in one receive");
    }
}
