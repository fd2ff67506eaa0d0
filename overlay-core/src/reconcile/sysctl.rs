//! Per-interface IPv4 and IPv6 sysctls, read and written through /proc/sys of the calling
//! thread's network namespace.

use std::io;

/// The address family a sysctl belongs to.
#[derive(Debug, Clone, Copy)]
pub enum Family {
    V4,
    V6,
}

fn path(family: Family, ifname: &str, key: &str) -> String {
    let f = match family {
        Family::V4 => "ipv4",
        Family::V6 => "ipv6",
    };
    format!("/proc/sys/net/{f}/conf/{ifname}/{key}")
}

/// Sets the sysctl to `value` unless it already has it; true if it wrote.
pub fn ensure(family: Family, ifname: &str, key: &str, value: &str) -> io::Result<bool> {
    let p = path(family, ifname, key);
    if std::fs::read_to_string(&p)?.trim() == value {
        return Ok(false);
    }
    std::fs::write(&p, value)?;
    Ok(true)
}
