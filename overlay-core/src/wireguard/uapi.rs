//! A client of the WireGuard cross-platform UAPI (<https://www.wireguard.com/xplatform/>):
//! `get=1` and `set=1` over a stream socket. boringtun and wireguard-go both speak it.

use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use ipnet::IpNet;

use super::keys::{PrivateKey, PublicKey};

/// One peer as a device reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UapiPeer {
    pub public_key: PublicKey,
    pub endpoint: Option<SocketAddr>,
    pub allowed_ips: Vec<IpNet>,
    pub persistent_keepalive: Option<u16>,
    /// Seconds since the last handshake (boringtun) or since the epoch (wireguard-go).
    pub last_handshake_sec: Option<u64>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// What `get=1` answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UapiDevice {
    /// boringtun reports `own_public_key=`; wireguard-go reports `private_key=` (the public key
    /// is derived from it).
    pub public_key: Option<PublicKey>,
    pub listen_port: Option<u16>,
    pub peers: Vec<UapiPeer>,
}

/// A peer to configure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub public_key: PublicKey,
    pub endpoint: SocketAddr,
    pub allowed_ips: Vec<IpNet>,
    pub persistent_keepalive: Option<u16>,
}

/// A UAPI connection. Requests are serialised; each waits at most a few seconds.
pub struct Uapi {
    stream: Mutex<UnixStream>,
}

fn proto(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl Uapi {
    /// Over a stream that stays open (a socket pair shared with an in-process device).
    pub fn from_stream(stream: UnixStream) -> io::Result<Uapi> {
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.set_write_timeout(Some(Duration::from_secs(5)))?;
        Ok(Uapi {
            stream: Mutex::new(stream),
        })
    }

    /// A device's control socket, e.g. `/var/run/wireguard/wg0.sock`.
    pub fn connect(path: &Path) -> io::Result<Uapi> {
        Self::from_stream(UnixStream::connect(path)?)
    }

    /// Sends one request and returns the answer's lines before `errno=`; fails unless errno is 0.
    fn request(&self, body: &str) -> io::Result<Vec<String>> {
        let stream = self.stream.lock().unwrap_or_else(|e| e.into_inner());
        (&*stream).write_all(body.as_bytes())?;
        let mut reader = BufReader::new(&*stream);
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Err(proto("the WireGuard device closed its control socket"));
            }
            let line = line.trim_end_matches('\n');
            if let Some(errno) = line.strip_prefix("errno=") {
                // The answer ends with an empty line.
                let mut end = String::new();
                let _ = reader.read_line(&mut end)?;
                let errno: i32 = errno
                    .parse()
                    .map_err(|_| proto(format!("bad errno line '{line}'")))?;
                if errno != 0 {
                    return Err(io::Error::other(format!(
                        "the WireGuard device refused the request: errno {errno} ({})",
                        io::Error::from_raw_os_error(errno)
                    )));
                }
                return Ok(lines);
            }
            lines.push(line.to_string());
        }
    }

    pub fn get(&self) -> io::Result<UapiDevice> {
        let lines = self.request("get=1\n\n")?;
        let mut dev = UapiDevice::default();
        for line in lines {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let bad = || proto(format!("bad UAPI line '{k}=...'"));
            match k {
                "own_public_key" => {
                    dev.public_key = Some(PublicKey::from_hex(v).ok_or_else(bad)?);
                }
                "private_key" => {
                    let b = PublicKey::from_hex(v).ok_or_else(bad)?.0;
                    dev.public_key = Some(PrivateKey::from_bytes(b).public());
                }
                "listen_port" => dev.listen_port = Some(v.parse().map_err(|_| bad())?),
                "public_key" => dev.peers.push(UapiPeer {
                    public_key: PublicKey::from_hex(v).ok_or_else(bad)?,
                    endpoint: None,
                    allowed_ips: vec![],
                    persistent_keepalive: None,
                    last_handshake_sec: None,
                    rx_bytes: 0,
                    tx_bytes: 0,
                }),
                _ => {
                    let Some(p) = dev.peers.last_mut() else {
                        continue;
                    };
                    match k {
                        "endpoint" => p.endpoint = v.parse().ok(),
                        "allowed_ip" => p.allowed_ips.push(v.parse().map_err(|_| bad())?),
                        "persistent_keepalive_interval" => {
                            p.persistent_keepalive = v.parse().ok().filter(|n| *n != 0)
                        }
                        "last_handshake_time_sec" => {
                            p.last_handshake_sec = v.parse().ok().filter(|n| *n != 0)
                        }
                        "rx_bytes" => p.rx_bytes = v.parse().unwrap_or(0),
                        "tx_bytes" => p.tx_bytes = v.parse().unwrap_or(0),
                        _ => {}
                    }
                }
            }
        }
        Ok(dev)
    }

    /// `set=1` with the given lines (each ending in a newline).
    pub fn set(&self, lines: &str) -> io::Result<()> {
        self.request(&format!("set=1\n{lines}\n")).map(|_| ())
    }

    pub fn set_private_key(&self, key: &PrivateKey) -> io::Result<()> {
        self.set(&format!("private_key={}\n", key.to_hex()))
    }

    pub fn set_listen_port(&self, port: u16) -> io::Result<()> {
        self.set(&format!("listen_port={port}\n"))
    }

    pub fn remove_peer(&self, key: &PublicKey) -> io::Result<()> {
        self.set(&format!("public_key={}\nremove=true\n", key.to_hex()))
    }

    /// Adds a peer that the device does not hold yet (boringtun cannot modify a peer in place:
    /// remove it first).
    pub fn add_peer(&self, p: &PeerConfig) -> io::Result<()> {
        let mut s = format!(
            "public_key={}\nendpoint={}\nreplace_allowed_ips=true\n",
            p.public_key.to_hex(),
            p.endpoint
        );
        for ip in &p.allowed_ips {
            s += &format!("allowed_ip={ip}\n");
        }
        if let Some(k) = p.persistent_keepalive {
            s += &format!("persistent_keepalive_interval={k}\n");
        }
        self.set(&s)
    }
}
