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
    // Dropping the handle stops the device's threads; the TUN interface goes with the process.
    _handle: DeviceHandle,
}

impl UserspaceDevice {
    /// Creates the TUN interface `ifname` and starts `threads` worker threads on it.
    pub fn start(ifname: &str, threads: usize) -> io::Result<UserspaceDevice> {
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
        })
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    pub fn uapi(&self) -> Arc<Uapi> {
        Arc::clone(&self.uapi)
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
    /// Creates the interface `ifname` with `threads` workers (per direction for the batched
    /// datapath, in all for the legacy one).
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

    /// What `vxmesh node ls` shows for this node's implementation.
    pub fn implementation(&self) -> &'static str {
        match self {
            WireguardDevice::Batched(_) => super::IMPL_BATCHED,
            WireguardDevice::Legacy(_) => super::IMPL_USERSPACE,
        }
    }
}
