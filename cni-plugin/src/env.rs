//! The CNI environment variables.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use overlay_core::mac::MacAddr;

use crate::conf::parse_mac;
use crate::error::*;

/// CNI_COMMAND.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Gc,
    Status,
    Version,
}

impl Command {
    pub fn parse(s: &str) -> CniResult<Command> {
        Ok(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            "VERSION" => Command::Version,
            other => {
                return Err(CniError::new(
                    INVALID_ENV,
                    format!(
                        "CNI_COMMAND '{}' is not one of ADD, DEL, CHECK, GC, STATUS, VERSION",
                        other.chars().take(32).collect::<String>()
                    ),
                ))
            }
        })
    }
}

/// The environment of one call.
#[derive(Debug, Clone)]
pub struct Env {
    pub command: Command,
    pub container_id: Option<String>,
    pub netns: Option<PathBuf>,
    pub ifname: Option<String>,
    /// CNI_ARGS `IP=`.
    pub arg_ip: Option<Ipv4Addr>,
    /// CNI_ARGS `MAC=`.
    pub arg_mac: Option<MacAddr>,
    /// The raw CNI_ARGS (passed on to a delegated IPAM plugin unchanged).
    pub args: Option<String>,
    pub path: Vec<PathBuf>,
}

fn bad(var: &str, msg: impl std::fmt::Display) -> CniError {
    CniError::new(INVALID_ENV, format!("{var}: {msg}"))
}

/// Reads CNI_COMMAND only.
pub fn command(get: &dyn Fn(&str) -> Option<String>) -> CniResult<Command> {
    match get("CNI_COMMAND") {
        None => Err(bad("CNI_COMMAND", "is not set")),
        Some(c) => Command::parse(&c),
    }
}

/// Checks an interface name as the kernel will (1-15 bytes, no '/', ':', whitespace).
pub fn valid_ifname(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("is empty")
    } else if name.len() > 15 {
        Err("is longer than 15 bytes")
    } else if name == "." || name == ".." {
        Err("is reserved")
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c == '\0' || c.is_control())
    {
        Err("contains '/', ':', whitespace or a control character")
    } else {
        Ok(())
    }
}

/// Reads and checks every variable the command needs (`get` is `std::env::var` in the binary).
pub fn parse(get: &dyn Fn(&str) -> Option<String>) -> CniResult<Env> {
    let command = command(get)?;
    let needs_attachment = matches!(command, Command::Add | Command::Del | Command::Check);
    let container_id = match get("CNI_CONTAINERID") {
        Some(c) if !c.is_empty() => {
            crate::conf::validate_cni_name("CNI_CONTAINERID", &c)
                .map_err(|e| CniError::new(INVALID_ENV, e.msg))?;
            Some(c)
        }
        _ if needs_attachment => return Err(bad("CNI_CONTAINERID", "is not set")),
        _ => None,
    };
    let ifname = match get("CNI_IFNAME") {
        Some(i) if !i.is_empty() => {
            valid_ifname(&i).map_err(|why| bad("CNI_IFNAME", format_args!("'{i}' {why}")))?;
            Some(i)
        }
        _ if needs_attachment => return Err(bad("CNI_IFNAME", "is not set")),
        _ => None,
    };
    let netns = match get("CNI_NETNS") {
        Some(n) if !n.is_empty() => {
            if !n.starts_with('/') || n.contains('\0') {
                return Err(bad(
                    "CNI_NETNS",
                    format_args!("'{n}' is not an absolute path"),
                ));
            }
            Some(PathBuf::from(n))
        }
        // DEL may come after the namespace is gone: then the runtime may leave it empty.
        _ if matches!(command, Command::Add | Command::Check) => {
            return Err(bad("CNI_NETNS", "is not set"))
        }
        _ => None,
    };
    let (mut arg_ip, mut arg_mac) = (None, None);
    let args = get("CNI_ARGS").filter(|a| !a.is_empty());
    if let Some(a) = &args {
        for pair in a.split(';').filter(|p| !p.is_empty()) {
            let Some((k, v)) = pair.split_once('=') else {
                return Err(bad("CNI_ARGS", format_args!("'{pair}' is not KEY=VALUE")));
            };
            if k.is_empty() {
                return Err(bad("CNI_ARGS", format_args!("'{pair}' has an empty key")));
            }
            match k {
                "IP" => {
                    let ip = v.split('/').next().unwrap_or(v);
                    arg_ip = Some(ip.parse::<Ipv4Addr>().map_err(|_| {
                        bad("CNI_ARGS", format_args!("IP='{v}' is not an IPv4 address"))
                    })?);
                }
                "MAC" => {
                    arg_mac = Some(
                        parse_mac("CNI_ARGS MAC", v)
                            .map_err(|e| CniError::new(INVALID_ENV, e.msg))?,
                    );
                }
                // Other keys (K8S_POD_NAME, IgnoreUnknown, ...) are for other plugins.
                _ => {}
            }
        }
    }
    let path = get("CNI_PATH")
        .map(|p| {
            p.split(':')
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default();
    Ok(Env {
        command,
        container_id,
        netns,
        ifname,
        arg_ip,
        arg_mac,
        args,
        path,
    })
}
