//! vxmesh's eBPF datapath: the kernel programs (C, in `bpf/`, compiled by Debian's clang
//! from `build.rs` on every build), the Rust mirrors of their map layouts, and the loader.
//!
//! # Programs
//!
//! | program | object | attach point | does |
//! |---|---|---|---|
//! | `vx_from_lxc` | `lxc.o` | tcx ingress of a container's host-side veth | DNAT to a backend; answer ARP for VIPs |
//! | `vx_to_lxc` | `lxc.o` | tcx egress of that veth | reverse NAT of replies |
//! | `vx_from_underlay` | `host.o` | tcx ingress of the host's underlay device | published ports: DNAT (client address kept), redirect to the backend's veth or into the overlay |
//! | `vx_from_overlay` | `host.o` | tcx ingress of a network's VXLAN device | routing-mesh replies: reverse NAT, out of the underlay; remember flows from ingress nodes |
//! | `vx_connect4` | `sock.o` | cgroup connect4 | rewrite connect() to a backend |
//! | `vx_sendmsg4` | `sock.o` | cgroup sendmsg4 | rewrite an unconnected UDP send |
//! | `vx_recvmsg4` | `sock.o` | cgroup recvmsg4 | show the frontend as a reply's source |
//! | `vx_getpeername4` | `sock.o` | cgroup getpeername4 | show the frontend as the peer |
//! | `vx_sock_release` | `sock.o` | cgroup sock_release | forget the socket's reverse entry |
//! | `vxf_from_lxc` | `overlay_fast.o` | tcx ingress of a container's host-side veth, first | overlay fast path: frames straight to the VXLAN device; ARP from the endpoint map ([`fast`]) |
//! | `vxf_from_vxlan` | `overlay_fast.o` | tcx ingress of a network's VXLAN device, first | overlay fast path: frames straight into the container ([`fast`]) |
//!
//! The C sources follow Katran's and Cilium's split: `bpf/include/` holds the one header of
//! map layouts (`vxmesh_maps.h`), packet parsing (`parse.h`), checksum-correct NAT
//! (`nat.h`), the connection table (`conntrack.h`), the Maglev lookup (`maglev.h`) and the
//! engine that ties them (`lb.h`: `vx_lb_dnat`/`vx_lb_reverse`, which only rewrite and
//! report; the caller decides where the packet goes, so the routing mesh reuses them).
//!
//! # Verdicts of the tc programs
//!
//! - `TC_ACT_REDIRECT` ([`TC_ACT_REDIRECT`]): an ARP request for a VIP of `vx_vip`, turned
//!   into its reply and sent back out of the veth to the container (a VIP is in its
//!   network's subnet, so containers outside the hooked cgroup ask for its MAC; nobody
//!   else holds the address). Counted as [`Stat::ArpReply`].
//! - `TC_ACT_OK` ([`TC_ACT_OK`]): every packet that is not dropped: translated, not for a
//!   service, not IPv4 TCP/UDP, truncated or malformed (untouched, counted as
//!   [`Stat::Truncated`]), or a later fragment whose first fragment was not seen
//!   (untouched, [`Stat::FragMiss`]).
//! - `TC_ACT_SHOT` ([`TC_ACT_SHOT`]): a packet to a service that has no backend (no Maglev
//!   table, or one of size 0): dropped, not rejected, and counted per service
//!   ([`SvcStats::no_backend`]) and globally ([`Stat::NoBackend`]); also a packet a rewrite
//!   helper failed on ([`Stat::NatError`]).
//! - The socket programs refuse connect()/sendmsg() to a service with no backend (EPERM),
//!   counted the same way.
//!
//! # Backend choice
//!
//! A new flow on the packet path takes slot `hash(5-tuple) % M` of its service's Maglev
//! table (`M` and the slots are computed by ingress-lb); with client-ip affinity the hash is
//! of the client address only and the pick is remembered in `vx_affinity`. The socket path
//! hashes a random number per connection (there is no source port at connect() time), or
//! the client's network namespace with affinity. An established flow stays on its backend
//! through the connection table while tables change, until its backend is deleted from
//! `vx_backend` (then it is picked again) or the LRU evicts it.
//!
//! # Maps (all pinned by name, shared by every object of a node)
//!
//! | map | type | key → value |
//! |---|---|---|
//! | `vx_svc` | hash | [`SvcKey`] (frontend) → [`Svc`] |
//! | `vx_maglev` | hash of maps | service id → array of u32: slot 0 = M, slots 1..=M = backend ids |
//! | `vx_backend` | hash | backend id → [`Backend`] |
//! | `vx_be_stats` | per-CPU hash | backend id → [`BeStats`] |
//! | `vx_svc_stats` | per-CPU hash | service id → [`SvcStats`] |
//! | `vx_ct` | LRU hash | [`CtKey`] → [`CtEntry`] (both directions of a flow) |
//! | `vx_affinity` | LRU hash | [`AffKey`] → [`AffEntry`] |
//! | `vx_sock_rev` | LRU hash | socket cookie → [`SockRev`] |
//! | `vx_frag` | LRU hash | [`FragKey`] → [`FragPorts`] |
//! | `vx_stats` | per-CPU array | [`Stat`] → u64 |
//! | `vx_vip` | hash | VIP (network order) → [`Vip`] (the MAC ARP replies give) |
//! | `vx_host` | array (1) | 0 → [`Host`] (underlay address, device, node MAC) |
//! | `vx_be_loc` | hash | backend id → [`BeLoc`] (where the routing mesh delivers it) |
//! | `vx_mesh_node` | hash | [`MacKey`] (an ingress node's MAC or DSR MAC) → [`MeshNode`] |
//! | `vx_mesh_be` | hash | [`MeshBeKey`] (backend addr:port/proto as frames carry it) → [`MeshBe`] |
//! | `vx_mesh_flow` | LRU hash | [`CtKey`] (reply tuple) → [`MeshFlow`] (flows from ingress nodes) |
//!
//! # Pin layout
//!
//! `<pin_root>/<node>/{maps,progs,links}/` with `pin_root` = `/sys/fs/bpf/vxmesh` by
//! default; see [`pins`]. [`Datapath::load`] mounts bpffs at `/sys/fs/bpf` when needed,
//! reuses pinned maps (the connection table survives an agent restart), and the attach
//! functions swap the program of an already pinned link. [`teardown`] removes every pin.
//!
//! # Use
//!
//! ```no_run
//! # fn main() -> vxmesh_ebpf::Result<()> {
//! use std::net::Ipv4Addr;
//! use vxmesh_ebpf::*;
//! let mut dp = Datapath::load(DatapathConfig::new("h1"))?;
//! dp.maps_mut().upsert_backend(1, Backend::new(Ipv4Addr::new(10, 0, 0, 2), 8080, 0))?;
//! dp.maps_mut().replace_maglev_table(7, &vec![1; 101])?;
//! dp.maps_mut().upsert_service(
//!     SvcKey::new(Ipv4Addr::new(10, 0, 0, 100), 80, IPPROTO_TCP),
//!     Svc { id: 7, flags: 0, affinity_timeout_s: 0 },
//! )?;
//! dp.attach_cgroup("/sys/fs/cgroup/unified/vxmesh-lab".as_ref())?;
//! # Ok(()) }
//! ```

mod attach;
pub use attach::{inode_of, Attachment, LinkOutcome};
mod config;
mod error;
pub mod fast;
mod loader;
pub mod maps;
mod objects;
pub mod pins;
mod sys;
mod testrun;

pub use config::{DatapathConfig, BPFFS, DEFAULT_PIN_ROOT};
pub use error::{Error, Result};
pub use loader::Datapath;
pub use maps::{types::*, CtFill, MaglevTableInfo, Maps, Purged, MAGLEV_MAX_SLOTS, MAP_NAMES};
pub use objects::{
    FAST_OBJ, FAST_PROGRAMS, HOST_OBJ, HOST_PROGRAMS, LXC_OBJ, LXC_PROGRAMS, PROG_FAST_FROM_LXC,
    PROG_FAST_FROM_VXLAN, PROG_FROM_LXC, PROG_FROM_OVERLAY, PROG_FROM_UNDERLAY, PROG_TO_LXC,
    SOCK_OBJ, SOCK_PROGRAMS,
};
pub use pins::{ensure_bpffs, teardown, NodePins};
pub use testrun::{TcRun, TCX_NEXT, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT};
