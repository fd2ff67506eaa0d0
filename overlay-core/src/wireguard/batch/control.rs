//! The batched device's side of the WireGuard cross-platform UAPI
//! (<https://www.wireguard.com/xplatform/>): `get=1` and `set=1` requests over a stream, the
//! protocol [`super::super::uapi::Uapi`] and `wg(8)` speak, so the reconciler drives this
//! device exactly as it drives boringtun's own.
//!
//! A `set=1` request is parsed whole before anything is applied: a bad line gets its errno
//! and changes nothing.

use std::io::{self, BufRead, Write};
use std::net::{IpAddr, SocketAddr};

use super::peers::{PeerUpdate, EINVAL};

/// One parsed `set=1` request.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SetRequest {
    pub private_key: Option<[u8; 32]>,
    pub listen_port: Option<u16>,
    pub replace_peers: bool,
    pub peers: Vec<PeerUpdate>,
}

fn key(v: &str) -> Result<[u8; 32], i32> {
    let b = v.as_bytes();
    if b.len() != 64 {
        return Err(EINVAL);
    }
    let mut k = [0u8; 32];
    for (i, k) in k.iter_mut().enumerate() {
        let s = std::str::from_utf8(&b[2 * i..2 * i + 2]).map_err(|_| EINVAL)?;
        *k = u8::from_str_radix(s, 16).map_err(|_| EINVAL)?;
    }
    Ok(k)
}

fn boolean(v: &str) -> Result<bool, i32> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(EINVAL),
    }
}

fn allowed_ip(v: &str) -> Result<(IpAddr, u8), i32> {
    let (ip, cidr) = v.split_once('/').ok_or(EINVAL)?;
    let ip: IpAddr = ip.parse().map_err(|_| EINVAL)?;
    let cidr: u8 = cidr.parse().map_err(|_| EINVAL)?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if cidr > max {
        return Err(EINVAL);
    }
    Ok((ip, cidr))
}

/// Parses the lines of a `set=1` request (after the `set=1` line, without the empty line
/// that ends it). Errors are the errno to answer.
pub fn parse_set(lines: &[String]) -> Result<SetRequest, i32> {
    let mut req = SetRequest::default();
    for line in lines {
        let (k, v) = line.split_once('=').ok_or(libc::EPROTO)?;
        if k == "public_key" {
            req.peers.push(PeerUpdate {
                public: key(v)?,
                ..Default::default()
            });
            continue;
        }
        match (k, req.peers.last_mut()) {
            ("private_key", None) => req.private_key = Some(key(v)?),
            ("listen_port", None) => req.listen_port = Some(v.parse().map_err(|_| EINVAL)?),
            ("fwmark", None) => {
                // Marks are not used by this device; 0 (none) is accepted, as wg(8) sends it.
                if v != "0" {
                    return Err(EINVAL);
                }
            }
            ("replace_peers", None) => req.replace_peers = boolean(v)?,
            ("remove", Some(p)) => p.remove = boolean(v)?,
            ("preshared_key", Some(p)) => {
                let k = key(v)?;
                p.preshared = (k != [0; 32]).then_some(k);
            }
            ("endpoint", Some(p)) => match v.parse::<SocketAddr>().map_err(|_| EINVAL)? {
                SocketAddr::V4(a) => p.endpoint = Some(a),
                // The device's sockets are IPv4 (vxmesh's underlay is IPv4).
                SocketAddr::V6(_) => return Err(libc::EAFNOSUPPORT),
            },
            ("persistent_keepalive_interval", Some(p)) => {
                let n: u16 = v.parse().map_err(|_| EINVAL)?;
                p.keepalive = (n != 0).then_some(n);
            }
            ("replace_allowed_ips", Some(p)) => p.replace_allowed = boolean(v)?,
            ("allowed_ip", Some(p)) => p.allowed.push(allowed_ip(v)?),
            ("protocol_version", Some(_)) if v == "1" => {}
            ("update_only", Some(_)) => {}
            _ => return Err(EINVAL),
        }
    }
    Ok(req)
}

/// What the device does with requests.
pub trait Handler {
    /// The lines of the answer to `get=1`.
    fn get(&self) -> String;
    /// Applies a parsed `set=1` request; errno on failure.
    fn set(&self, req: SetRequest) -> Result<(), i32>;
}

/// Serves requests from `reader` until it closes (or fails), answering on `writer`.
pub fn serve(mut reader: impl BufRead, mut writer: impl Write, h: &impl Handler) -> io::Result<()> {
    loop {
        let mut first = String::new();
        if reader.read_line(&mut first)? == 0 {
            return Ok(());
        }
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            if reader.read_line(&mut l)? == 0 {
                return Ok(());
            }
            let l = l.trim_end_matches('\n');
            if l.is_empty() {
                break;
            }
            lines.push(l.to_string());
        }
        let (body, errno) = match first.trim_end_matches('\n') {
            "get=1" => (h.get(), 0),
            "set=1" => (
                String::new(),
                parse_set(&lines).and_then(|r| h.set(r)).err().unwrap_or(0),
            ),
            _ => (String::new(), libc::EIO),
        };
        writer.write_all(format!("{body}errno={errno}\n\n").as_bytes())?;
        writer.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> Vec<String> {
        s.lines().map(str::to_string).collect()
    }

    const K1: &str = "0101010101010101010101010101010101010101010101010101010101010101";
    const K2: &str = "02020202020202020202020202020202020202020202020202020202020202ff";

    #[test]
    fn a_set_request_with_every_field() {
        let r = parse_set(&lines(&format!(
            "private_key={K1}\nlisten_port=51820\nfwmark=0\nreplace_peers=true\n\
             public_key={K2}\nendpoint=10.99.0.2:51820\nreplace_allowed_ips=true\n\
             allowed_ip=100.88.0.2/32\nallowed_ip=10.0.0.0/8\npersistent_keepalive_interval=25\n\
             protocol_version=1\npublic_key={K1}\nremove=true"
        )))
        .unwrap();
        assert_eq!(r.private_key, Some([1; 32]));
        assert_eq!(r.listen_port, Some(51820));
        assert!(r.replace_peers);
        assert_eq!(r.peers.len(), 2);
        let p = &r.peers[0];
        assert_eq!(p.public[31], 0xff);
        assert_eq!(p.endpoint, Some("10.99.0.2:51820".parse().unwrap()));
        assert!(p.replace_allowed);
        assert_eq!(
            p.allowed,
            vec![
                ("100.88.0.2".parse().unwrap(), 32),
                ("10.0.0.0".parse().unwrap(), 8)
            ]
        );
        assert_eq!(p.keepalive, Some(25));
        assert!(r.peers[1].remove);
    }

    #[test]
    fn bad_lines_are_refused_with_their_errno() {
        for (bad, errno) in [
            ("private_key=zz", EINVAL),
            ("listen_port=70000", EINVAL),
            ("no equals sign", libc::EPROTO),
            ("remove=true", EINVAL),
            ("fwmark=7", EINVAL),
        ] {
            assert_eq!(parse_set(&lines(bad)), Err(errno), "{bad}");
        }
        for bad in [
            "allowed_ip=100.88.0.2/33",
            "allowed_ip=100.88.0.2",
            "endpoint=nowhere",
            "persistent_keepalive_interval=-1",
            "protocol_version=2",
            "unknown=1",
        ] {
            let r = parse_set(&lines(&format!("public_key={K2}\n{bad}")));
            assert_eq!(r, Err(EINVAL), "{bad}");
        }
        let r = parse_set(&lines(&format!("public_key={K2}\nendpoint=[::1]:5")));
        assert_eq!(r, Err(libc::EAFNOSUPPORT));
    }

    struct Fake;
    impl Handler for Fake {
        fn get(&self) -> String {
            "listen_port=1\n".into()
        }
        fn set(&self, r: SetRequest) -> Result<(), i32> {
            if r.listen_port == Some(2) {
                Err(libc::EADDRINUSE)
            } else {
                Ok(())
            }
        }
    }

    #[test]
    fn requests_are_answered_in_turn() {
        let input = "get=1\n\nset=1\nlisten_port=2\n\nset=1\nlisten_port=3\n\nbogus=1\n\n";
        let mut out = Vec::new();
        serve(input.as_bytes(), &mut out, &Fake).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!(
                "listen_port=1\nerrno=0\n\nerrno={}\n\nerrno=0\n\nerrno={}\n\n",
                libc::EADDRINUSE,
                libc::EIO
            )
        );
    }
}
