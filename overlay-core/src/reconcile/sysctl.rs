//! Per-interface IPv4 sysctls, read and written through /proc/sys of the calling thread's
//! network namespace.

use std::io;

fn path(ifname: &str, key: &str) -> String {
    format!("/proc/sys/net/ipv4/conf/{ifname}/{key}")
}

pub fn read(ifname: &str, key: &str) -> io::Result<String> {
    Ok(std::fs::read_to_string(path(ifname, key))?
        .trim()
        .to_string())
}

pub fn write(ifname: &str, key: &str, value: &str) -> io::Result<()> {
    std::fs::write(path(ifname, key), value)
}
