//! Queues of persistent TUN/TAP interfaces (`Documentation/networking/tuntap.rst`).
//!
//! A node's WireGuard interface is made persistent (`TUNSETPERSIST`): it, its addresses and the
//! routes through it outlive the agent that opened it, so an agent restart (SIGTERM or
//! SIGKILL) leaves the encrypted networks' kernel state in place; packets sent while no agent
//! holds a queue are dropped (never sent in clear), and the next agent attaches new queues to
//! the same interface (`TUNSETIFF` by name with the same flags) instead of creating one. Only
//! an explicit deletion over netlink removes it (see `Reconciler::remove_wireguard_device`).

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// An `ifreq` naming `name`, zeroed elsewhere. Errors: `InvalidInput` for an empty name, one
/// of `IFNAMSIZ` bytes or more, or one with a `/`.
pub(crate) fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid interface name '{name}'"),
        ));
    }
    // SAFETY: ifreq is plain old data; all zeros is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(req)
}

/// Turns a negative return of a system call into the `errno` error, prefixed with `what`.
pub(crate) fn check(rc: libc::c_int, what: &str) -> io::Result<()> {
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(())
}

/// Opens one queue of the TUN/TAP interface `name` with `flags` (`IFF_TUN` or `IFF_TAP`,
/// `IFF_NO_PI`, `IFF_VNET_HDR`, `IFF_MULTI_QUEUE`...), creating the interface if it does not
/// exist and attaching to it if it does. Returns the queue (non-blocking, close-on-exec) and
/// the interface's name as the kernel reports it.
///
/// Errors: `EINVAL` when an interface of that name exists but is not a TUN/TAP of the same
/// type and queue mode (e.g. left by the other datapath), `EBUSY`/`EPERM` as `TUNSETIFF`
/// returns them.
pub(crate) fn open_queue(name: &str, flags: libc::c_int) -> io::Result<(OwnedFd, String)> {
    let mut req = ifreq(name)?;
    // SAFETY: a NUL-terminated path; the result is checked.
    let fd = unsafe {
        libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK,
        )
    };
    check(fd, "opening /dev/net/tun")?;
    // SAFETY: fd was just opened and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    req.ifr_ifru.ifru_flags = flags as i16;
    // SAFETY: TUNSETIFF reads and writes an ifreq, which req is.
    check(
        unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req) },
        &format!("TUNSETIFF {name}"),
    )?;
    // SAFETY: the kernel wrote a NUL-terminated name into ifr_name.
    let actual = unsafe { CStr::from_ptr(req.ifr_name.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    Ok((fd, actual))
}

/// Marks the interface of `queue` persistent (`TUNSETPERSIST` 1): it stays when its last
/// queue is closed, with its addresses and routes, until it is deleted explicitly.
pub(crate) fn persist(queue: &OwnedFd) -> io::Result<()> {
    // SAFETY: TUNSETPERSIST takes its argument by value.
    check(
        unsafe { libc::ioctl(queue.as_raw_fd(), libc::TUNSETPERSIST, 1 as libc::c_ulong) },
        "TUNSETPERSIST",
    )
}

/// Creates (or finds) the persistent TUN/TAP interface `name` with `flags` and closes the
/// queue it opened for that: whoever opens it next by name with the same flags attaches to it
/// (as boringtun's device does). Returns whether it existed already.
pub fn ensure_persistent(name: &str, flags: libc::c_int) -> io::Result<bool> {
    let existed = crate::netns::ifindex(name).is_some();
    let (queue, _) = open_queue(name, flags)?;
    persist(&queue)?;
    Ok(existed)
}
