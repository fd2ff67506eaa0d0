//! WireGuard for encrypted networks: host keys, the UAPI (the text protocol every WireGuard
//! implementation but the kernel module speaks) and the userspace device (boringtun on a TUN).
//!
//! The interface is persistent ([`tundev`]): it outlives the agent, which re-attaches to it
//! after a restart, and is deleted over netlink when the node no longer needs it.
//!
//! Each node has one WireGuard interface with a tunnel address from [`TUNNEL_NET`]. The VXLAN
//! devices of encrypted networks send from the node's tunnel address to the other nodes'
//! tunnel addresses, so their packets are routed into the WireGuard interface and leave the
//! host as WireGuard UDP; plain networks keep using the underlay.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

pub mod batch;
pub mod device;
pub mod keys;
pub mod tundev;
pub mod uapi;

pub use batch::BatchedDevice;
pub use device::{Datapath, UserspaceDevice, WireguardDevice};
pub use keys::{KeyError, PrivateKey, PublicKey};
pub use uapi::{Uapi, UapiDevice, UapiPeer};

/// Default UDP port of a node's WireGuard interface.
pub const DEFAULT_PORT: u16 = 51820;
/// Default name of a node's WireGuard interface.
pub const DEFAULT_IFNAME: &str = "wg-vx";
/// Bytes WireGuard adds to each packet on an IPv4 underlay: IPv4 20 + UDP 8 + WireGuard data
/// header 16 + Poly1305 tag 16.
pub const WIREGUARD_OVERHEAD: u32 = 60;
/// Seconds between keepalives to every peer: a restarted peer, which lost its sessions, gets a
/// fresh handshake within this time even when it has nothing to send.
pub const PERSISTENT_KEEPALIVE: u16 = 25;
/// What `vxmesh node ls` and the agent's log report for boringtun's own device (the legacy
/// datapath).
pub const IMPL_USERSPACE: &str = "userspace (boringtun 0.7)";
/// What they report for the batched datapath (boringtun's protocol, batched I/O).
pub const IMPL_BATCHED: &str = "userspace (boringtun 0.7, batched)";

/// The range tunnel addresses are taken from (one per node, allocated by the catalog).
pub fn tunnel_net() -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(100, 88, 0, 0), 16).expect("valid prefix")
}

/// Whether the WireGuard kernel module is available (`/sys/module/wireguard`).
pub fn kernel_module_present() -> bool {
    std::path::Path::new("/sys/module/wireguard").exists()
}
