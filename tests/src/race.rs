//! Allocations raced by many writers at once: the operations the race tests run, both from
//! threads released by a barrier and from `race_worker` processes released by a file.
//!
//! Each operation claims something that must be unique in the store (a WireGuard tunnel
//! address, a VNI, a network's subnet, a node's underlay address, an endpoint's MAC) and
//! returns the value it got as text, or the error's text.

use std::path::Path;
use std::time::{Duration, Instant};

use overlay_core::wireguard::PrivateKey;
use overlay_core::{Catalog, EndpointSpec, NetworkSpec};

/// One contended operation; `n` makes each writer's input its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaceOp {
    /// Node `r<n>` publishes a WireGuard key: gets a tunnel address.
    Tunnel,
    /// Network `r<n>` on subnet 10.(100+n/256).(n%256).0/24 with an automatic VNI: gets a VNI.
    Vni,
    /// Network `r<n>` on the one subnet 10.250.0.0/24: one writer may win.
    Subnet,
    /// Node `u<n>` with the one underlay address 192.0.2.200: one writer may win.
    Underlay,
    /// Endpoint `e<n>` on network `racenet`, node `r0`, with the one MAC 0a:58:0a:3c:00:05.
    Mac,
}

impl RaceOp {
    pub fn parse(s: &str) -> Option<RaceOp> {
        Some(match s {
            "tunnel" => RaceOp::Tunnel,
            "vni" => RaceOp::Vni,
            "subnet" => RaceOp::Subnet,
            "underlay" => RaceOp::Underlay,
            "mac" => RaceOp::Mac,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            RaceOp::Tunnel => "tunnel",
            RaceOp::Vni => "vni",
            RaceOp::Subnet => "subnet",
            RaceOp::Underlay => "underlay",
            RaceOp::Mac => "mac",
        }
    }

    /// What must exist before writers race: for `Tunnel` the nodes `r0..writers` without a
    /// WireGuard identity; for `Mac` network `racenet` and node `r0`.
    pub fn prepare(self, catalog: &Catalog, writers: u32) {
        match self {
            RaceOp::Tunnel => {
                for n in 0..writers {
                    let ip = std::net::Ipv4Addr::new(192, 0, 2, 1 + n as u8);
                    catalog.add_node(&format!("r{n}"), ip).expect("add node");
                }
            }
            RaceOp::Mac => {
                catalog
                    .create_network(&NetworkSpec {
                        name: "racenet".into(),
                        subnet: "10.60.0.0/24".into(),
                        ..Default::default()
                    })
                    .expect("create network");
                catalog
                    .add_node("r0", "192.0.2.1".parse().unwrap())
                    .expect("add node");
            }
            _ => {}
        }
    }

    /// Runs writer `n`'s operation: the value claimed, or the error's text.
    pub fn run(self, catalog: &Catalog, n: u32) -> Result<String, String> {
        let e = |e: overlay_core::CatalogError| e.to_string();
        match self {
            RaceOp::Tunnel => {
                let key = PrivateKey::from_bytes([n as u8 + 1; 32])
                    .public()
                    .to_base64();
                let node = catalog
                    .set_wireguard(&format!("r{n}"), &key, 51820, "race test")
                    .map_err(e)?;
                let ip = node.wireguard.and_then(|w| w.tunnel_ip);
                Ok(ip.map(|ip| ip.to_string()).unwrap_or_default())
            }
            RaceOp::Vni => catalog
                .create_network(&NetworkSpec {
                    name: format!("r{n}"),
                    subnet: format!("10.{}.{}.0/24", 100 + n / 256, n % 256),
                    ..Default::default()
                })
                .map(|net| net.vni.to_string())
                .map_err(e),
            RaceOp::Subnet => catalog
                .create_network(&NetworkSpec {
                    name: format!("r{n}"),
                    subnet: "10.250.0.0/24".into(),
                    ..Default::default()
                })
                .map(|net| net.name)
                .map_err(e),
            RaceOp::Underlay => catalog
                .add_node(&format!("u{n}"), "192.0.2.200".parse().unwrap())
                .map(|node| node.name)
                .map_err(e),
            RaceOp::Mac => catalog
                .add_endpoint(&EndpointSpec {
                    network: "racenet".into(),
                    node: "r0".into(),
                    id: Some(format!("e{n}")),
                    mac: Some("0a:58:0a:3c:00:05".parse().unwrap()),
                    ..Default::default()
                })
                .map(|ep| ep.id)
                .map_err(e),
        }
    }
}

/// Waits (at most a few minutes) for the start signal file.
pub fn wait_for(go: &Path) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while !go.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}
