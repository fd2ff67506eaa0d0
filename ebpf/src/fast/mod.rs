//! The overlay fast path (`vxmesh agent --datapath ebpf`): `bpf/overlay_fast.c`, its maps,
//! its loader and its attachments.
//!
//! | program | attach point | does |
//! |---|---|---|
//! | `vxf_from_lxc` | tcx ingress of a container's host-side veth, first | unicast frames to a remote endpoint's MAC straight to the network's VXLAN device; to a local endpoint's straight into its container; ARP requests for an endpoint or the gateway answered |
//! | `vxf_from_vxlan` | tcx ingress of a network's VXLAN device, first | unicast frames from a remote endpoint to a local one straight into the container (`bpf_redirect_peer`) |
//!
//! The network's bridge, VXLAN device and static FDB entries stay as the bridge datapath
//! builds them: the VXLAN device encapsulates (its FDB names each remote MAC's host, so the
//! wire format is the device's own), and every frame the fast path leaves (broadcast, to the
//! gateway, from or to a MAC the store does not name, over the MTU) takes the bridge's way.
//! Attaching or detaching the programs therefore moves established flows from one path to
//! the other without a lost packet.
//!
//! # Maps (pinned by name under the fast path's own directory)
//!
//! | map | type | key → value |
//! |---|---|---|
//! | `vxf_port` | hash | ifindex → [`FastPort`] (the interface's network) |
//! | `vxf_l2` | hash | [`FastMacKey`] (VNI, MAC) → [`FastL2`] (where frames to it go) |
//! | `vxf_ep` | hash | [`FastIpKey`] (VNI, IPv4) → [`FastEp`] (what ARP answers) |
//! | `vxf_stats` | per-CPU array | [`FastStat`] → u64 |
//!
//! # Pin layout
//!
//! `<pin_root>/_fast-<node>/{maps,progs,links}/` ([`fast_pins`]): apart from the services'
//! `<pin_root>/<node>/`, which comes and goes with the services, and never a node's own
//! directory (node names start with a letter or digit). [`teardown_fast`] removes it.

mod maps;
pub mod types;

use std::path::{Path, PathBuf};

use aya::programs::{LinkOrder, SchedClassifier, TcAttachType};
use aya::Ebpf;

pub use maps::{FastMaps, FastState, FastSync, FAST_MAP_NAMES};
pub use types::*;

use crate::{
    attach::{self, attach_tcx, Attachment, LinkOutcome, TcxTarget},
    config::validate_node,
    error::{Error, Result},
    loader::{load_object, load_programs},
    objects::{FAST_OBJ, FAST_PROGRAMS, PROG_FAST_FROM_LXC, PROG_FAST_FROM_VXLAN},
    pins::{ensure_bpffs, teardown_pins, NodePins},
    testrun::{run_once, TcRun},
};

/// The fast path's pin layout for `node` under `pin_root`: `<pin_root>/_fast-<node>/`.
///
/// Errors: [`Error::Invalid`] for a node name that is not 1-64 of `[A-Za-z0-9_.-]`.
pub fn fast_pins(pin_root: &Path, node: &str) -> Result<NodePins> {
    validate_node(node)?;
    let node_dir = pin_root.join(format!("_fast-{node}"));
    Ok(NodePins {
        maps: node_dir.join("maps"),
        progs: node_dir.join("progs"),
        links: node_dir.join("links"),
        node_dir,
    })
}

/// Removes every pin of `node`'s fast path (links first, so its programs detach and every
/// frame takes the bridge's way again; then programs and maps), and `pin_root` when that
/// leaves it empty. Returns the pins removed; nothing pinned is not an error.
pub fn teardown_fast(pin_root: &Path, node: &str) -> Result<Vec<PathBuf>> {
    teardown_pins(pin_root, &fast_pins(pin_root, node)?)
}

/// A node's loaded fast path: both programs (loaded, pinned), its maps, its pin layout.
/// Dropping it detaches nothing: pinned links keep forwarding, and the next
/// [`FastPath::load`] of the node takes them over.
pub struct FastPath {
    pins: NodePins,
    ebpf: Ebpf,
    maps: FastMaps,
}

impl FastPath {
    /// Loads `node`'s fast path under `pin_root`: mounts bpffs if needed, creates the pin
    /// directories, creates or reuses the maps (pinned by name, entries kept), loads both
    /// programs through the verifier and pins them.
    ///
    /// Errors: [`Error::Invalid`] for a bad node name or a relative `pin_root`;
    /// [`Error::Bpffs`]/[`Error::PinPath`] for the file system; [`Error::Load`] or
    /// [`Error::Program`] (with the verifier's log) when the kernel refuses.
    pub fn load(pin_root: &Path, node: &str) -> Result<Self> {
        if !pin_root.is_absolute() {
            return Err(Error::invalid("pin_root", "must be an absolute path"));
        }
        let pins = fast_pins(pin_root, node)?;
        ensure_bpffs(pin_root)?;
        pins.create()?;
        let mut ebpf = load_object("overlay_fast", FAST_OBJ, &[], &pins)?;
        load_programs("overlay_fast", &mut ebpf, &FAST_PROGRAMS, &pins)?;
        let maps = FastMaps::from_maps(|name| {
            ebpf.take_map(name).ok_or(Error::Missing {
                object: "overlay_fast",
                kind: "map",
                name,
            })
        })?;
        tracing::info!(node, dir = %pins.node_dir.display(), "overlay fast path loaded");
        Ok(Self { pins, ebpf, maps })
    }

    /// The maps.
    pub fn maps(&self) -> &FastMaps {
        &self.maps
    }

    /// The maps, for writing.
    pub fn maps_mut(&mut self) -> &mut FastMaps {
        &mut self.maps
    }

    /// The pin layout.
    pub fn pins(&self) -> &NodePins {
        &self.pins
    }

    fn attach(
        &mut self,
        netns: &Path,
        ifindex: u32,
        prog: &'static str,
    ) -> Result<(PathBuf, LinkOutcome)> {
        let target = TcxTarget {
            object: "overlay_fast",
            pins: &self.pins,
            netns,
            ifindex,
        };
        let mut links = attach_tcx(
            &mut self.ebpf,
            &target,
            &[(prog, TcAttachType::Ingress)],
            LinkOrder::first,
            true,
        )?;
        Ok(links.remove(0))
    }

    /// Attaches `vxf_from_lxc` to the tcx ingress of interface `ifindex` of `netns` (a
    /// container's host-side veth), before any program already there, as a link pinned at
    /// `links/tcx<netns inode>_if<ifindex>_vxf_from_lxc`. A pinned link is kept when it runs
    /// the same instructions, and pointed at the program just loaded otherwise.
    ///
    /// Errors: [`Error::Sys`] when the namespace or interface is not there,
    /// [`Error::Program`] when the kernel refuses the attachment.
    pub fn attach_lxc(&mut self, netns: &Path, ifindex: u32) -> Result<(PathBuf, LinkOutcome)> {
        self.attach(netns, ifindex, PROG_FAST_FROM_LXC)
    }

    /// Attaches `vxf_from_vxlan` to the tcx ingress of interface `ifindex` of `netns` (a
    /// network's VXLAN device), as [`FastPath::attach_lxc`] does.
    pub fn attach_vxlan(&mut self, netns: &Path, ifindex: u32) -> Result<(PathBuf, LinkOutcome)> {
        self.attach(netns, ifindex, PROG_FAST_FROM_VXLAN)
    }

    /// Every interface with a link pin of the fast path (also those of an earlier load, and
    /// those whose interface is gone).
    pub fn attachments(&self) -> Result<std::collections::BTreeSet<Attachment>> {
        attach::attachments(&self.pins)
    }

    /// Removes the link pins of `attachment` (its programs detach). Returns how many.
    pub fn detach(&self, attachment: &Attachment) -> Result<usize> {
        attach::detach(&self.pins, attachment)
    }

    /// Runs program `prog` (one of [`FAST_PROGRAMS`]) once on Ethernet frame `packet` as if
    /// it arrived on interface `ifindex` of the calling thread's network namespace (the
    /// programs key everything by the interface; BPF_PROG_TEST_RUN's `__sk_buff.ifindex`).
    /// Returns the verdict and the frame as the program left it. A redirect is not carried
    /// out.
    ///
    /// Errors: [`Error::Invalid`] for another program name; [`Error::Program`] when the
    /// kernel refuses the run (no interface `ifindex`: ENODEV; a frame under 14 bytes).
    pub fn run_tc(&self, prog: &str, packet: &[u8], ifindex: u32) -> Result<TcRun> {
        let name = FAST_PROGRAMS
            .iter()
            .copied()
            .find(|&n| n == prog)
            .ok_or_else(|| {
                Error::invalid(
                    "program",
                    format!("{prog:?} is not one of {FAST_PROGRAMS:?}"),
                )
            })?;
        let p: &SchedClassifier = self
            .ebpf
            .program(name)
            .ok_or(Error::Missing {
                object: "overlay_fast",
                kind: "program",
                name,
            })?
            .try_into()
            .map_err(|e| Error::program(name, "as classifier", e))?;
        // struct __sk_buff up to and including ifindex (offset 40); the rest zero.
        let mut ctx = [0u8; 44];
        ctx[40..44].copy_from_slice(&ifindex.to_ne_bytes());
        run_once(name, p, packet, Some(&ctx))
    }
}
