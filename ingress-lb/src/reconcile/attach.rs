//! Where the programs are attached: the socket programs on one cgroup, the tc programs on the
//! host-side veth of every local attachment of a network with services. Reads the node's
//! link pins and changes only the differences; a link pinned by an earlier process is taken
//! over once (pointed at the programs this process loaded), then left alone.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use overlay_core::reconcile::Change;
use vxmesh_ebpf::{inode_of, Attachment, Datapath};

use super::maps::err;
use super::LbReport;

/// What to attach to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachTargets {
    /// The cgroup v2 directory of the socket programs (`--cgroup`); `None`: none.
    pub cgroup: Option<PathBuf>,
    /// The network namespace the veths are in (the agent's: `/proc/self/ns/net`).
    pub netns: PathBuf,
    /// Host-side veths by (name, ifindex).
    pub lxc: BTreeSet<(String, u32)>,
    /// The host's underlay device (name, ifindex), when a service publishes a port.
    pub underlay: Option<(String, u32)>,
    /// VXLAN devices of networks with published ports (name, ifindex).
    pub overlay: BTreeSet<(String, u32)>,
}

/// Attaches and detaches, remembering which attachments this process has made or taken over
/// since it loaded the datapath.
#[derive(Debug, Default)]
pub struct Attacher {
    taken: BTreeSet<Attachment>,
}

impl Attacher {
    /// A fresh attacher: the next [`Attacher::apply`] takes over every wanted link.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the node's attachments exactly `targets`.
    pub fn apply(&mut self, dp: &mut Datapath, targets: &AttachTargets) -> LbReport {
        let mut r = LbReport::default();
        let present = match dp.attachments() {
            Ok(p) => p,
            Err(e) => {
                r.errors.push(err("reading the link pins", e));
                return r;
            }
        };
        let mut wanted = BTreeSet::new();
        if let Some(cg) = &targets.cgroup {
            match inode_of(cg) {
                Ok(ino) => {
                    let a = Attachment::Cgroup { ino };
                    wanted.insert(a);
                    if !(self.taken.contains(&a) && present.contains(&a)) {
                        let what = format!("socket programs on cgroup {}", cg.display());
                        match dp.attach_cgroup(cg) {
                            Ok(_) => {
                                self.taken.insert(a);
                                r.changes.push(Change {
                                    action: verb(present.contains(&a)),
                                    object: what,
                                });
                            }
                            Err(e) => r.errors.push(err(format!("attaching {what}"), e)),
                        }
                    }
                }
                Err(e) => r
                    .errors
                    .push(err(format!("opening cgroup {}", cg.display()), e)),
            }
        }
        match inode_of(&targets.netns) {
            Ok(netns_ino) => {
                type AttachFn = fn(&mut Datapath, &Path, u32) -> vxmesh_ebpf::Result<Vec<PathBuf>>;
                let lxc: AttachFn = Datapath::attach_lxc;
                let underlay: AttachFn = Datapath::attach_underlay;
                let overlay: AttachFn = Datapath::attach_overlay;
                let all = targets
                    .lxc
                    .iter()
                    .map(|t| (t, lxc, "tc programs"))
                    .chain(
                        targets
                            .underlay
                            .iter()
                            .map(|t| (t, underlay, "routing mesh (underlay)")),
                    )
                    .chain(
                        targets
                            .overlay
                            .iter()
                            .map(|t| (t, overlay, "routing mesh (overlay)")),
                    );
                for ((name, ifindex), attach, kind) in all {
                    let a = Attachment::Lxc {
                        netns_ino,
                        ifindex: *ifindex,
                    };
                    wanted.insert(a);
                    if self.taken.contains(&a) && present.contains(&a) {
                        continue;
                    }
                    let what = format!("{kind} on {name} (ifindex {ifindex})");
                    match attach(dp, &targets.netns, *ifindex) {
                        Ok(_) => {
                            self.taken.insert(a);
                            r.changes.push(Change {
                                action: verb(present.contains(&a)),
                                object: what,
                            });
                        }
                        Err(e) => r.errors.push(err(format!("attaching {what}"), e)),
                    }
                }
            }
            Err(e) => r.errors.push(err(
                format!("opening network namespace {}", targets.netns.display()),
                e,
            )),
        }
        for a in present.difference(&wanted) {
            match dp.detach(a) {
                Ok(_) => {
                    self.taken.remove(a);
                    r.changes.push(Change {
                        action: "detach",
                        object: describe(a),
                    });
                }
                Err(e) => r.errors.push(err(format!("detaching {}", describe(a)), e)),
            }
        }
        r
    }
}

fn verb(pinned_before: bool) -> &'static str {
    if pinned_before {
        "take over"
    } else {
        "attach"
    }
}

fn describe(a: &Attachment) -> String {
    match a {
        Attachment::Cgroup { ino } => format!("socket programs on cgroup inode {ino}"),
        Attachment::Lxc { netns_ino, ifindex } => {
            format!("tc programs on ifindex {ifindex} of netns inode {netns_ino}")
        }
    }
}
