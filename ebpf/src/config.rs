//! What the loader needs to know: the node (its pin directory) and the map sizes.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// Where bpffs is mounted (and mounted by the loader when it is not).
pub const BPFFS: &str = "/sys/fs/bpf";
/// Default pin root: one directory per node below it.
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/vxmesh";

/// Load-time configuration of a node's datapath. Sizes are `max_entries` of the maps; they
/// apply when a map is created. A map found pinned keeps the size it was made with (its
/// entries survive the reload), so changing a size takes a [`crate::teardown`] first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatapathConfig {
    /// Node name: the pin directory `<pin_root>/<node>`. 1-64 of `[A-Za-z0-9_.-]`, not `.`/`..`.
    pub node: String,
    /// Pin root, below a bpffs mount (default [`DEFAULT_PIN_ROOT`]).
    pub pin_root: PathBuf,
    /// Frontends (`vx_svc`), Maglev tables (`vx_maglev`), `vx_svc_stats` and VIPs (`vx_vip`).
    /// Default 65,536.
    pub max_services: u32,
    /// Backends (`vx_backend`, `vx_be_stats`). Default 262,144.
    pub max_backends: u32,
    /// Connection-table entries (`vx_ct`, LRU); a translated flow takes two. Default 262,144.
    pub conntrack_entries: u32,
    /// Client-affinity entries (`vx_affinity`, LRU). Default 65,536.
    pub affinity_entries: u32,
    /// Socket reverse entries (`vx_sock_rev`, LRU), one per socket that used a frontend.
    /// Default 65,536.
    pub sock_rev_entries: u32,
    /// Fragmented datagrams in flight (`vx_frag`, LRU). Default 8,192.
    pub frag_entries: u32,
}

impl DatapathConfig {
    /// The defaults for `node`.
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            pin_root: PathBuf::from(DEFAULT_PIN_ROOT),
            max_services: 65_536,
            max_backends: 262_144,
            conntrack_entries: 262_144,
            affinity_entries: 65_536,
            sock_rev_entries: 65_536,
            frag_entries: 8_192,
        }
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<()> {
        validate_node(&self.node)?;
        if !self.pin_root.is_absolute() {
            return Err(Error::invalid("pin_root", "must be an absolute path"));
        }
        for (field, v) in [
            ("max_services", self.max_services),
            ("max_backends", self.max_backends),
            ("conntrack_entries", self.conntrack_entries),
            ("affinity_entries", self.affinity_entries),
            ("sock_rev_entries", self.sock_rev_entries),
            ("frag_entries", self.frag_entries),
        ] {
            if v == 0 || v > 1 << 26 {
                return Err(Error::invalid(field, format!("{v} not in 1..=67108864")));
            }
        }
        Ok(())
    }

    /// `max_entries` per map name, as the loader applies them.
    pub(crate) fn map_sizes(&self) -> [(&'static str, u32); 10] {
        [
            ("vx_svc", self.max_services),
            ("vx_maglev", self.max_services),
            ("vx_svc_stats", self.max_services),
            ("vx_vip", self.max_services),
            ("vx_backend", self.max_backends),
            ("vx_be_stats", self.max_backends),
            ("vx_ct", self.conntrack_entries),
            ("vx_affinity", self.affinity_entries),
            ("vx_sock_rev", self.sock_rev_entries),
            ("vx_frag", self.frag_entries),
        ]
    }
}

pub(crate) fn validate_node(node: &str) -> Result<()> {
    let ok = !node.is_empty()
        && node.len() <= 64
        && node != "."
        && node != ".."
        && node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "node",
            format!("{node:?}: 1-64 of [A-Za-z0-9_.-], not . or .."),
        ))
    }
}
