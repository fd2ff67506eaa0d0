//! The userspace WireGuard devices, run by threads of the calling process in the calling
//! thread's network namespace: boringtun's own device on a TUN interface (the legacy
//! datapath), and the batched datapath of [`super::batch`] (the default).
//!
//! Its UAPI is one end of a socket pair held by this process, not a socket file under
//! /var/run/wireguard: nothing else on the machine can reconfigure it, and devices of the same
//! name in different network namespaces do not fight over one path.

use std::io;
use std::os::fd::IntoRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use boringtun::device::{DeviceConfig, DeviceHandle};

use super::batch::BatchedDevice;
use super::uapi::Uapi;

/// boringtun's own device (`boringtun::device`): one packet per read and per send.
pub struct UserspaceDevice {
    ifname: String,
    uapi: Arc<Uapi>,
    // Dropping the handle stops the device's threads; the TUN interface is persistent and stays.
    _handle: DeviceHandle,
    reattached: bool,
}

/// The flags boringtun's device opens its TUN with (`boringtun::device::tun_linux`).
const LEGACY_FLAGS: libc::c_int = libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_MULTI_QUEUE;

impl UserspaceDevice {
    /// Creates the persistent TUN interface `ifname` (or finds the one a previous agent left,
    /// see [`super::tundev`]) and starts `threads` boringtun worker threads on it.
    ///
    /// Errors: `EINVAL` when `ifname` exists as another kind of device (the batched
    /// datapath's TAP); whatever boringtun returns.
    pub fn start(ifname: &str, threads: usize) -> io::Result<UserspaceDevice> {
        // boringtun opens the TUN by name with these flags: made persistent first, its queues
        // attach to it and it outlives the process.
        let reattached = super::tundev::ensure_persistent(ifname, LEGACY_FLAGS)?;
        let (ours, theirs) = UnixStream::pair()?;
        let config = DeviceConfig {
            n_threads: threads.max(1),
            use_connected_socket: true,
            use_multi_queue: true,
            uapi_fd: theirs.into_raw_fd(),
        };
        let handle = DeviceHandle::new(ifname, config)
            .map_err(|e| io::Error::other(format!("starting boringtun on {ifname}: {e:?}")))?;
        Ok(UserspaceDevice {
            ifname: ifname.to_string(),
            uapi: Arc::new(Uapi::from_stream(ours)?),
            _handle: handle,
            reattached,
        })
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    pub fn uapi(&self) -> Arc<Uapi> {
        Arc::clone(&self.uapi)
    }

    /// Whether the interface was left by a previous agent and attached to (not created).
    pub fn reattached(&self) -> bool {
        self.reattached
    }
}

/// Which userspace datapath runs a node's WireGuard interface (`vxmesh agent --wg-datapath`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Datapath {
    /// [`BatchedDevice`]: a TAP with offloads, GSO/GRO in user space and on the UDP socket.
    #[default]
    Batched,
    /// [`UserspaceDevice`]: boringtun's own device, one packet per system call (kept to
    /// compare with, and as a fallback).
    Legacy,
}

impl std::str::FromStr for Datapath {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "batched" => Ok(Datapath::Batched),
            "legacy" => Ok(Datapath::Legacy),
            _ => Err(format!(
                "invalid WireGuard datapath '{s}': must be batched or legacy"
            )),
        }
    }
}

impl std::fmt::Display for Datapath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Datapath::Batched => "batched",
            Datapath::Legacy => "legacy",
        })
    }
}

/// A running userspace WireGuard interface of either datapath; both are driven through the
/// UAPI alike.
pub enum WireguardDevice {
    Batched(BatchedDevice),
    Legacy(UserspaceDevice),
}

impl WireguardDevice {
    /// Creates the persistent interface `ifname`, or attaches to the one a previous agent
    /// left, with `threads` workers (per direction for the batched datapath, in all for the
    /// legacy one). Errors: `InvalidInput` (`EINVAL`) when `ifname` exists as a device the datapath cannot
    /// attach to (the other datapath's); the caller may delete it and try again.
    pub fn start(ifname: &str, threads: usize, datapath: Datapath) -> io::Result<Self> {
        Ok(match datapath {
            Datapath::Batched => WireguardDevice::Batched(BatchedDevice::start(
                ifname,
                threads,
                crate::model::ENCRYPTED_VXLAN_PORT,
            )?),
            Datapath::Legacy => WireguardDevice::Legacy(UserspaceDevice::start(ifname, threads)?),
        })
    }

    pub fn ifname(&self) -> &str {
        match self {
            WireguardDevice::Batched(d) => d.ifname(),
            WireguardDevice::Legacy(d) => d.ifname(),
        }
    }

    pub fn uapi(&self) -> Arc<Uapi> {
        match self {
            WireguardDevice::Batched(d) => d.uapi(),
            WireguardDevice::Legacy(d) => d.uapi(),
        }
    }

    /// Whether the interface was left by a previous agent and attached to (not created).
    pub fn reattached(&self) -> bool {
        match self {
            WireguardDevice::Batched(d) => d.reattached(),
            WireguardDevice::Legacy(d) => d.reattached(),
        }
    }

    /// What `vxmesh node ls` shows for this node's implementation.
    pub fn implementation(&self) -> &'static str {
        match self {
            WireguardDevice::Batched(_) => super::IMPL_BATCHED,
            WireguardDevice::Legacy(_) => super::IMPL_USERSPACE,
        }
    }
}
