//! The userspace WireGuard device: boringtun's device on a TUN interface, run by threads of the
//! calling process in the calling thread's network namespace.
//!
//! Its UAPI is one end of a socket pair held by this process, not a socket file under
//! /var/run/wireguard: nothing else on the machine can reconfigure it, and devices of the same
//! name in different network namespaces do not fight over one path.

use std::io;
use std::os::fd::IntoRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use boringtun::device::{DeviceConfig, DeviceHandle};

use super::uapi::Uapi;

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
