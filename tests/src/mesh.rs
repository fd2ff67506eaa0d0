//! Routing-mesh helpers: requests from the lab's outside client through each host's
//! published port, captures on every host's underlay device, the frames that travel between
//! two hosts, and TCP options read from captured SYNs.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::capture::Capture;
use crate::services::{lab_exec_output, tally};
use crate::{wait_until, Lab};

/// The underlay address of the lab's outside client (`lab exec client`), as every host sees
/// it (in the lab's underlay subnet, `lab up --underlay`).
pub fn client_addr(lab: &Lab) -> Ipv4Addr {
    lab.state
        .client
        .as_ref()
        .expect("lab status shows the outside client")
        .address
}

/// Hosts of `lab`, by name.
pub fn host_names(lab: &Lab) -> Vec<String> {
    lab.state.hosts.iter().map(|h| h.name.clone()).collect()
}

/// Waits (up to 30 s) until an HTTP request to port `port` of every host is answered.
pub fn wait_answered_everywhere(lab: &Lab, port: u16) -> bool {
    wait_until(Duration::from_secs(30), || {
        lab.state.hosts.iter().all(|h| {
            let url = format!("http://{}:{port}/", h.address);
            lab_exec_output(lab, "client", true, &["curl", "-sS", "-m", "2", &url])
                .status
                .success()
        })
    })
}

/// `n` HTTP requests, each on a new connection, from the client to `host`'s port `port`,
/// path `/PATH-1` … `/PATH-n`: the answers (`NAME ADDR PORT`, see services::Nginx) counted by
/// replica, and the client addresses each replica saw. Panics unless all `n` are answered.
pub fn new_connections(
    lab: &Lab,
    host: &str,
    port: u16,
    path: &str,
    n: usize,
) -> (BTreeMap<String, usize>, BTreeMap<String, Vec<String>>) {
    let url = format!("http://{}:{port}/{path}-[1-{n}]", lab.host(host).address);
    let out = lab_exec_output(
        lab,
        "client",
        true,
        &["curl", "-sS", "-m", "5", "-H", "Connection: close", &url],
    );
    let (count, addrs) = tally(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        count.values().sum::<usize>(),
        n,
        "through {host}: {}\nagent log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        lab.agent_log(host)
    );
    (count, addrs)
}

/// tcpdump on every host's underlay device at once (filter `filter`).
pub struct UnderlayCaptures {
    caps: Vec<Capture>,
}

impl UnderlayCaptures {
    pub fn start(lab: &Lab, filter: &str) -> Self {
        let caps = lab
            .state
            .hosts
            .iter()
            .map(|h| Capture::start(&h.namespace, &h.interface, filter))
            .collect();
        Self { caps }
    }

    /// Stops every capture; the frames of all of them.
    pub fn stop(mut self) -> Vec<Vec<u8>> {
        self.caps.iter_mut().flat_map(|c| c.stop()).collect()
    }
}

/// IPv4 source and destination of an Ethernet frame.
pub fn ipv4_ends(frame: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    if frame.len() < 34 || u16::from_be_bytes([frame[12], frame[13]]) != 0x0800 {
        return None;
    }
    let a = |i: usize| Ipv4Addr::new(frame[i], frame[i + 1], frame[i + 2], frame[i + 3]);
    Some((a(26), a(30)))
}

/// The frames whose IPv4 source and destination are both hosts of `lab` (underlay).
pub fn between_hosts<'a>(lab: &Lab, frames: &'a [Vec<u8>]) -> Vec<&'a Vec<u8>> {
    let hosts: Vec<Ipv4Addr> = lab.state.hosts.iter().map(|h| h.address).collect();
    frames
        .iter()
        .filter(|f| ipv4_ends(f).is_some_and(|(s, d)| hosts.contains(&s) && hosts.contains(&d)))
        .collect()
}

/// The MSS option of an Ethernet/IPv4/TCP frame (RFC 9293 3.1 option list), if it has one.
pub fn tcp_mss(frame: &[u8]) -> Option<u16> {
    if ipv4_ends(frame).is_none() || frame.get(23) != Some(&6) {
        return None;
    }
    let tcp = frame.get(14 + usize::from(frame[14] & 0x0f) * 4..)?;
    let opts = tcp.get(20..usize::from(tcp.get(12)? >> 4) * 4)?;
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => return None,
            1 => i += 1,
            2 if opts.get(i + 1) == Some(&4) => {
                return Some(u16::from_be_bytes([*opts.get(i + 2)?, *opts.get(i + 3)?]))
            }
            _ => i += usize::from(*opts.get(i + 1)?).max(2),
        }
    }
    None
}
