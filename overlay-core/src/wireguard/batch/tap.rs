//! The batched device's interface: a multi-queue TAP (`Documentation/networking/tuntap.rst`)
//! with virtio-net headers and segmentation offloads, so that the kernel hands over and
//! accepts whole 64 KiB TCP segments, also inside VXLAN (`TUN_F_UDP_TUNNEL_GSO`, Linux 6.17).
//!
//! A TAP and not a TUN: the kernel accepts tunnel GSO frames written to a queue only with an
//! Ethernet header before them (`virtio_net_hdr_tnl_to_skb` requires the outer transport
//! header at 14 + 20 bytes at least; a TUN's frames start with the IP header, and writes were
//! refused with EINVAL on this machine's 6.18 kernel). The interface has `IFF_NOARP`: its
//! neighbours need no resolution (the kernel addresses every frame to the interface's own
//! MAC), so no ARP ever crosses it.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::vnet;
use crate::wireguard::tundev::{self, check, ifreq};

/// Offloads asked for first: checksums, TSO, and TSO inside UDP tunnels with and without
/// an outer checksum.
const OFFLOADS_TUNNEL: libc::c_uint = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | 0x080 | 0x100;
/// The fallback on kernels without tunnel GSO (before 6.17): VXLAN then arrives segmented.
const OFFLOADS_PLAIN: libc::c_uint = libc::TUN_F_CSUM | libc::TUN_F_TSO4;

/// The TAP interface: one file descriptor per queue. The interface is persistent
/// ([`tundev`]): dropping this closes the queues and leaves the interface, its addresses and
/// routes in place for the next agent.
pub struct Tap {
    pub name: String,
    pub queues: Vec<OwnedFd>,
    /// The interface's MAC: frames written to it must be addressed to it.
    pub mac: [u8; 6],
    /// Whether the kernel takes and gives tunnel GSO frames (`TUN_F_UDP_TUNNEL_GSO`).
    pub tunnel_gso: bool,
    /// Whether the interface existed (left by a previous agent) and was attached to.
    pub reattached: bool,
}

/// The flags of every queue: a multi-queue TAP with virtio-net headers, no packet info.
const FLAGS: libc::c_int =
    libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR | libc::IFF_MULTI_QUEUE;

fn open_queue(name: &str) -> io::Result<(OwnedFd, String)> {
    tundev::open_queue(name, FLAGS)
}

/// `SIOCGIFFLAGS`/`SIOCSIFFLAGS` and `SIOCGIFHWADDR` through a datagram socket of the
/// calling thread's network namespace: sets `IFF_NOARP`, returns the MAC.
fn noarp_and_mac(name: &str) -> io::Result<[u8; 6]> {
    // SAFETY: plain socket(2); the result is checked and owned below.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    check(s, "socket for interface ioctls")?;
    // SAFETY: s was just created.
    let s = unsafe { OwnedFd::from_raw_fd(s) };
    let mut req = ifreq(name)?;
    // SAFETY: these ioctls read and write an ifreq, which req is; the union member read is
    // the one the kernel filled.
    unsafe {
        check(
            libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req),
            "SIOCGIFFLAGS",
        )?;
        req.ifr_ifru.ifru_flags |= libc::IFF_NOARP as i16;
        check(
            libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &mut req),
            "SIOCSIFFLAGS (IFF_NOARP)",
        )?;
        let mut req = ifreq(name)?;
        check(
            libc::ioctl(s.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req),
            "SIOCGIFHWADDR",
        )?;
        let sa = req.ifr_ifru.ifru_hwaddr.sa_data;
        Ok([
            sa[0] as u8,
            sa[1] as u8,
            sa[2] as u8,
            sa[3] as u8,
            sa[4] as u8,
            sa[5] as u8,
        ])
    }
}

impl Tap {
    /// Creates the persistent TAP `name` with `queues` queues (at least one) in the calling
    /// thread's network namespace, with virtio-net headers of [`vnet::LEN`] bytes, the
    /// offloads the kernel takes (tunnel GSO when it can), and `IFF_NOARP`; or, when a TAP of
    /// that name with these flags exists (left by a previous agent), attaches `queues` new
    /// queues to it and keeps its index, addresses, MTU, state and routes. A new interface is
    /// left down: its owner gives it an address, an MTU and brings it up.
    ///
    /// Errors: `EINVAL` when `name` exists as another kind of device or a TUN/TAP with other
    /// flags (the legacy datapath's TUN); nothing is changed then.
    pub fn create(name: &str, queues: usize) -> io::Result<Tap> {
        let reattached = crate::netns::ifindex(name).is_some();
        let (first, name) = open_queue(name)?;
        tundev::persist(&first)?;
        let hdr_len = vnet::LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads an int.
        check(
            unsafe { libc::ioctl(first.as_raw_fd(), libc::TUNSETVNETHDRSZ, &hdr_len) },
            "TUNSETVNETHDRSZ",
        )?;
        // SAFETY: TUNSETOFFLOAD takes its argument by value.
        let tunnel_gso =
            unsafe { libc::ioctl(first.as_raw_fd(), libc::TUNSETOFFLOAD, OFFLOADS_TUNNEL) } == 0;
        if !tunnel_gso {
            // SAFETY: as above.
            check(
                unsafe { libc::ioctl(first.as_raw_fd(), libc::TUNSETOFFLOAD, OFFLOADS_PLAIN) },
                "TUNSETOFFLOAD",
            )?;
            tracing::warn!(
                interface = %name,
                "the kernel takes no tunnel GSO frames on a TAP (Linux < 6.17): encrypted \
                 networks' traffic crosses the interface one packet at a time"
            );
        }
        let mut all = vec![first];
        for _ in 1..queues.max(1) {
            all.push(open_queue(&name)?.0);
        }
        let mac = noarp_and_mac(&name)?;
        Ok(Tap {
            name,
            queues: all,
            mac,
            tunnel_gso,
            reattached,
        })
    }
}
