//! The agent's overlay fast path (`agent --datapath ebpf`, issue 12): keeps
//! `vxmesh_ebpf::fast`'s programs attached to every local container's host-side veth and
//! every network's VXLAN device of this host, and its maps equal to the store (through
//! overlay-core's [`Desired`] state, the same the bridge path is built from).
//!
//! Why this shape: the fast path redirects container frames to the network's own VXLAN
//! device (which keeps its static FDB entries and encapsulates them), rather than to one
//! collect-metadata VXLAN device with the remote host set per packet
//! (`bpf_skb_set_tunnel_key`). VXLAN sockets with different receive flags cannot share UDP
//! port 4789, so a metadata device would take the port from the per-network devices: a host
//! could not run both datapaths at once, and everything that reaches the overlay through the
//! bridge today (the host's routed traffic, the services' DNAT and routing mesh, encrypted
//! networks through WireGuard) would have to be redone in BPF. Kept this way, the bridge
//! path stays built underneath and carries whatever the fast path leaves, the wire format is
//! the kernel VXLAN device's by construction, and switching a host between the datapaths is
//! attaching or detaching programs: established connections continue (shown by
//! `tests/tests/datapath_switch.rs`). The cost kept is one FDB hash lookup per frame in the
//! VXLAN device.
//!
//! In bridge mode (the default) the plane removes the fast path's pins if an earlier agent
//! left them, which detaches its programs; frames then take the bridge again.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use overlay_core::reconcile::{Change, Desired, DesiredNetwork};
use vxmesh_ebpf::fast::{
    fast_pins, teardown_fast, FastEp, FastIpKey, FastL2, FastMacKey, FastPath, FastPort, FastState,
    L2_F_EGRESS, L2_F_LOCAL, PORT_F_VXLAN,
};
use vxmesh_ebpf::{inode_of, Attachment, LinkOutcome};

use overlay_core::netns::ifindex;

/// Which datapath carries a host's plain overlay traffic between containers and the VXLAN
/// devices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatapathMode {
    /// The Linux bridge of each network (the default).
    #[default]
    Bridge,
    /// The eBPF fast path, with the bridge underneath for the rest.
    Ebpf,
}

impl fmt::Display for DatapathMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DatapathMode::Bridge => "bridge",
            DatapathMode::Ebpf => "ebpf",
        })
    }
}

impl FromStr for DatapathMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bridge" => Ok(DatapathMode::Bridge),
            "ebpf" => Ok(DatapathMode::Ebpf),
            _ => Err(format!(
                "invalid datapath '{s}': must be 'bridge' or 'ebpf'"
            )),
        }
    }
}

/// Where the fast path attaches and pins.
#[derive(Debug, Clone)]
pub struct FastConfig {
    /// The datapath this agent runs.
    pub mode: DatapathMode,
    /// Pin root: the fast path pins under `<pin_root>/_fast-<node>/`.
    pub pin_root: PathBuf,
    /// The network namespace of the veths and VXLAN devices (the agent's own).
    pub netns: PathBuf,
}

/// What one pass did.
#[derive(Debug, Default)]
pub struct FastReport {
    /// Every change made.
    pub changes: Vec<Change>,
    /// Every error met (the bridge path carries on meanwhile).
    pub errors: Vec<String>,
}

impl FastReport {
    fn change(&mut self, action: &'static str, object: impl Into<String>) {
        self.changes.push(Change {
            action,
            object: object.into(),
        });
    }
}

/// The fast-path half of one agent.
pub struct FastPlane {
    node: String,
    config: FastConfig,
    fp: Option<FastPath>,
    /// Attachments this process made or checked since it loaded the fast path.
    taken: BTreeSet<Attachment>,
}

/// What the fast path's maps should hold for network `d`, added to `s`: its VXLAN device and
/// the host-side veths of its local attachments as ports, every endpoint's MAC (local: its
/// veth, delivered through the veth's egress when it is in `egress`; remote: the VXLAN
/// device), and every endpoint's and the gateway's address for ARP. Nothing when the VXLAN
/// device is not there (yet): the network is not built.
fn network_state(
    d: &DesiredNetwork,
    egress: &BTreeSet<String>,
    ifindex: &dyn Fn(&str) -> Option<u32>,
    s: &mut FastState,
) {
    let net = &d.network;
    let Some(vxlan) = ifindex(&net.vxlan_name()) else {
        return;
    };
    let vni = net.vni;
    s.ports.insert(
        vxlan,
        FastPort {
            vni,
            vxlan_ifindex: vxlan,
            flags: PORT_F_VXLAN,
        },
    );
    let gw_mac = overlay_core::MacAddr::for_endpoint(net.gateway);
    s.eps
        .insert(FastIpKey::new(vni, net.gateway), FastEp::gateway(gw_mac.0));
    for e in &d.local_attached {
        let Some((name, veth)) = e.host_ifname.as_ref().and_then(|n| Some((n, ifindex(n)?))) else {
            continue;
        };
        s.ports.insert(
            veth,
            FastPort {
                vni,
                vxlan_ifindex: vxlan,
                flags: 0,
            },
        );
        let flags = L2_F_LOCAL
            | if egress.contains(name) {
                L2_F_EGRESS
            } else {
                0
            };
        s.l2.insert(
            FastMacKey::new(vni, e.mac.0),
            FastL2 {
                ifindex: veth,
                flags,
            },
        );
        s.eps
            .insert(FastIpKey::new(vni, e.ip), FastEp::local(e.mac.0, veth));
    }
    for (ip, mac) in &d.neighbours {
        let vtep = d
            .fdb
            .iter()
            .find(|f| f.mac == *mac)
            .and_then(|f| match f.dst {
                std::net::IpAddr::V4(v) => Some(v),
                std::net::IpAddr::V6(_) => None,
            });
        let Some(vtep) = vtep else { continue };
        s.l2.insert(
            FastMacKey::new(vni, mac.0),
            FastL2 {
                ifindex: vxlan,
                flags: 0,
            },
        );
        s.eps
            .insert(FastIpKey::new(vni, *ip), FastEp::remote(mac.0, vtep));
    }
}

/// What the fast path's maps should hold on this host: `network_state` of every network
/// it builds.
pub fn wanted_state(
    desired: &Desired,
    egress: &BTreeSet<String>,
    ifindex: &dyn Fn(&str) -> Option<u32>,
) -> FastState {
    let mut s = FastState::default();
    for d in desired.networks.values().filter(|d| d.local.is_some()) {
        network_state(d, egress, ifindex, &mut s);
    }
    s
}

impl FastPlane {
    /// The plane of `node` (nothing is loaded before the first [`FastPlane::pass`]).
    pub fn new(node: String, config: FastConfig) -> Self {
        FastPlane {
            node,
            config,
            fp: None,
            taken: BTreeSet::new(),
        }
    }

    /// One pass. `desired`: this host's overlay, as the reconciler just applied it;
    /// `egress`: host-side veths where the services' tc programs run (frames for them are
    /// delivered through the veth's egress).
    pub fn pass(&mut self, desired: &Desired, egress: &BTreeSet<String>) -> FastReport {
        let mut r = FastReport::default();
        if self.config.mode == DatapathMode::Bridge || desired.node.is_none() {
            self.remove(&mut r);
            return r;
        }
        if self.fp.is_none() && !self.load(&mut r) {
            return r;
        }
        let fp = self.fp.as_mut().expect("loaded above");
        // Maps first: an interface is attached once its entries are there.
        let want = wanted_state(desired, egress, &ifindex);
        match fp.maps_mut().sync(&want) {
            Ok(n) if n.written + n.removed > 0 => r.change(
                "sync fast path maps",
                format!("{} written, {} removed", n.written, n.removed),
            ),
            Ok(_) => {}
            Err(e) => r.errors.push(format!("writing the fast path's maps: {e}")),
        }
        self.attach(&want, &mut r);
        r
    }

    /// Loads the fast path; false (with the error reported) when it cannot be.
    fn load(&mut self, r: &mut FastReport) -> bool {
        let existed =
            fast_pins(&self.config.pin_root, &self.node).is_ok_and(|p| p.node_dir.exists());
        match FastPath::load(&self.config.pin_root, &self.node) {
            Ok(fp) => {
                if !existed {
                    r.change("load fast path", fp.pins().node_dir.display().to_string());
                }
                self.fp = Some(fp);
                self.taken.clear();
                true
            }
            Err(e) => {
                r.errors.push(format!(
                    "loading the overlay fast path (the bridge carries the traffic): {e}"
                ));
                false
            }
        }
    }

    /// Makes the attachments exactly the ports of `want`.
    fn attach(&mut self, want: &FastState, r: &mut FastReport) {
        let fp = self.fp.as_mut().expect("loaded");
        let netns = &self.config.netns;
        let present = match fp.attachments() {
            Ok(p) => p,
            Err(e) => {
                r.errors
                    .push(format!("reading the fast path's link pins: {e}"));
                return;
            }
        };
        let netns_ino = match inode_of(netns) {
            Ok(i) => i,
            Err(e) => {
                r.errors.push(format!("opening {}: {e}", netns.display()));
                return;
            }
        };
        let mut wanted = BTreeSet::new();
        for (&ifindex, port) in &want.ports {
            let a = Attachment::Lxc { netns_ino, ifindex };
            wanted.insert(a);
            if self.taken.contains(&a) && present.contains(&a) {
                continue;
            }
            let vxlan = port.flags & PORT_F_VXLAN != 0;
            let what = format!(
                "fast path on {} ifindex {ifindex}",
                if vxlan { "VXLAN device" } else { "veth" }
            );
            let res = if vxlan {
                fp.attach_vxlan(netns, ifindex)
            } else {
                fp.attach_lxc(netns, ifindex)
            };
            match res {
                Ok((_, outcome)) => {
                    self.taken.insert(a);
                    match outcome {
                        LinkOutcome::Attached => r.change("attach", what),
                        LinkOutcome::Updated => r.change("update program", what),
                        LinkOutcome::Unchanged => {}
                    }
                }
                Err(e) => r.errors.push(format!("attaching the {what}: {e}")),
            }
        }
        for a in present.difference(&wanted) {
            match fp.detach(a) {
                Ok(_) => {
                    self.taken.remove(a);
                    r.change("detach", format!("fast path from {a:?}"));
                }
                Err(e) => r
                    .errors
                    .push(format!("detaching the fast path from {a:?}: {e}")),
            }
        }
    }

    /// Removes every pin of the fast path, if any (its programs detach).
    fn remove(&mut self, r: &mut FastReport) {
        self.fp = None;
        self.taken.clear();
        let Ok(pins) = fast_pins(&self.config.pin_root, &self.node) else {
            return;
        };
        if !pins.node_dir.exists() {
            return;
        }
        match teardown_fast(&self.config.pin_root, &self.node) {
            Ok(removed) => r.change(
                "remove fast path",
                format!(
                    "{} ({} pins; frames take the bridge again)",
                    pins.node_dir.display(),
                    removed.len()
                ),
            ),
            Err(e) => r.errors.push(format!("removing the fast path: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use overlay_core::catalog::Snapshot;
    use overlay_core::model::{Endpoint, Network, Node};
    use overlay_core::MacAddr;

    fn snapshot() -> Snapshot {
        let mut s = Snapshot::default();
        for (name, ip) in [("h1", "192.0.2.1"), ("h2", "192.0.2.2")] {
            s.nodes.insert(
                name.into(),
                Node {
                    name: name.into(),
                    underlay: ip.parse().unwrap(),
                    wireguard: None,
                },
            );
        }
        for (name, subnet, gw, vni) in [
            ("a", "10.1.0.0/24", "10.1.0.1", 4096),
            ("b", "10.2.0.0/24", "10.2.0.1", 4097),
        ] {
            let n = Network {
                name: name.into(),
                subnet: subnet.parse().unwrap(),
                gateway: gw.parse().unwrap(),
                vni,
                mtu: None,
                encrypted: false,
            };
            s.networks.insert(name.into(), n);
        }
        for (id, net, node, ip) in [
            ("c1", "a", "h1", "10.1.0.2"),
            ("c2", "a", "h2", "10.1.0.3"),
            ("c3", "b", "h1", "10.2.0.2"),
        ] {
            let ip: std::net::Ipv4Addr = ip.parse().unwrap();
            s.endpoints.push(Endpoint {
                id: id.into(),
                network: net.into(),
                node: node.into(),
                ip,
                mac: MacAddr::for_endpoint(ip),
                host_ifname: Some(format!("ve-{id}")),
                cni: None,
                mtu: None,
            });
        }
        s
    }

    #[test]
    fn every_endpoint_of_a_built_network_and_its_gateway_are_in_the_maps() {
        let s = snapshot();
        let d = Desired::compute(&s, "h1");
        let (va, vb) = (s.networks["a"].vni, s.networks["b"].vni);
        let index = |n: &str| match n {
            "vx-a" => Some(10),
            "vx-b" => Some(20),
            "ve-c1" => Some(11),
            "ve-c3" => Some(21),
            _ => None,
        };
        let egress = BTreeSet::from(["ve-c3".to_string()]);
        let w = wanted_state(&d, &egress, &index);
        let ports: Vec<(u32, u32, u32, u32)> = w
            .ports
            .iter()
            .map(|(i, p)| (*i, p.vni, p.vxlan_ifindex, p.flags))
            .collect();
        assert_eq!(
            ports,
            [
                (10, va, 10, PORT_F_VXLAN),
                (11, va, 10, 0),
                (20, vb, 20, PORT_F_VXLAN),
                (21, vb, 20, 0)
            ]
        );
        let mac = |ip: &str| MacAddr::for_endpoint(ip.parse().unwrap()).0;
        let l2 = |vni, ip: &str| w.l2.get(&FastMacKey::new(vni, mac(ip))).copied();
        assert_eq!(
            l2(va, "10.1.0.2"),
            Some(FastL2 {
                ifindex: 11,
                flags: L2_F_LOCAL
            })
        );
        assert_eq!(
            l2(va, "10.1.0.3"),
            Some(FastL2 {
                ifindex: 10,
                flags: 0
            })
        );
        assert_eq!(
            l2(vb, "10.2.0.2"),
            Some(FastL2 {
                ifindex: 21,
                flags: L2_F_LOCAL | L2_F_EGRESS
            })
        );
        // Network a's remote endpoint is not network b's.
        assert_eq!(l2(vb, "10.1.0.3"), None);
        let ep = |vni, ip: &str| w.eps[&FastIpKey::new(vni, ip.parse().unwrap())];
        assert_eq!(
            ep(va, "10.1.0.3").vtep(),
            Some("192.0.2.2".parse().unwrap())
        );
        assert_eq!(ep(va, "10.1.0.1").mac, mac("10.1.0.1"));
        assert_eq!(w.eps.len(), 5, "two gateways, three endpoints");
        // Without its VXLAN device, a network is not in the maps at all.
        let none = |n: &str| if n == "vx-a" { None } else { index(n) };
        let w = wanted_state(&d, &egress, &none);
        assert!(w.ports.values().all(|p| p.vni == vb));
        assert!(w.l2.keys().all(|k| k.vni == vb));
    }

    #[test]
    fn datapath_names_parse_and_print() {
        for m in [DatapathMode::Bridge, DatapathMode::Ebpf] {
            assert_eq!(m.to_string().parse::<DatapathMode>(), Ok(m));
        }
        let e = "xdp".parse::<DatapathMode>().unwrap_err();
        assert!(e.contains("'xdp'") && e.contains("bridge"), "{e}");
    }
}
