//! Attaching the programs: cgroup socket programs to a cgroup, tc programs to a container's
//! host-side veth through tcx, every attachment a pinned bpf_link (it keeps working after
//! the loading process exits). Attaching where a link of this node is already pinned swaps
//! the link's program for the one just loaded (BPF_LINK_UPDATE, atomic), which is how a
//! restarted agent takes over without a moment unattached.

use std::{
    ffi::CStr,
    fs::File,
    os::{
        fd::{AsFd, AsRawFd},
        unix::fs::MetadataExt,
    },
    path::{Path, PathBuf},
};

use aya::programs::{
    links::FdLink, tc::TcAttachOptions, CgroupAttachMode, LinkOrder, Program, SchedClassifier,
    TcAttachType,
};

use crate::{
    error::{Error, Result},
    loader::Datapath,
    objects::{PROG_FROM_LXC, PROG_FROM_OVERLAY, PROG_FROM_UNDERLAY, PROG_TO_LXC, SOCK_PROGRAMS},
    pins::{unpin, NodePins},
    sys,
};

fn cgroup_link(pins: &NodePins, ino: u64, prog: &str) -> PathBuf {
    pins.links.join(format!("cg{ino}_{prog}"))
}

fn tcx_link(pins: &NodePins, netns_ino: u64, ifindex: u32, prog: &str) -> PathBuf {
    pins.links
        .join(format!("tcx{netns_ino}_if{ifindex}_{prog}"))
}

fn open(op: &'static str, path: &Path) -> Result<(File, u64)> {
    let f = File::open(path).map_err(|e| Error::sys(op, path.display(), e))?;
    let ino = f
        .metadata()
        .map_err(|e| Error::sys(op, path.display(), e))?
        .ino();
    Ok((f, ino))
}

/// What [`attach_tcx`] did to one link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkOutcome {
    /// No link was pinned: a new one was made and pinned.
    Attached,
    /// A pinned link now runs the program just loaded (BPF_LINK_UPDATE).
    Updated,
    /// A pinned link already ran a program with the same instructions (same tag) and the
    /// same maps (pinned by name): left as it was.
    Unchanged,
}

/// The tag (hash of the instructions) of the loaded program with kernel id `id`, if any.
fn tag_of_program(id: u32) -> Option<u64> {
    aya::programs::loaded_programs()
        .filter_map(|p| p.ok())
        .find(|p| p.id() == id)
        .map(|p| p.tag())
}

/// Whether the link pinned at `path` runs a program with the same tag as `prog`.
fn runs_same_code(path: &Path, prog: &Program) -> bool {
    let Ok(link) = aya::programs::links::PinnedLink::from_pin(path) else {
        return false;
    };
    let Ok(info) = FdLink::from(link).info() else {
        return false;
    };
    let Ok(mine) = prog.info() else {
        return false;
    };
    tag_of_program(info.program_id()) == Some(mine.tag())
}

/// When a link is pinned at `path`, points it at `prog` (unless `keep_same_code` and it
/// already runs the same instructions) and says what it did; None when no link is pinned.
fn take_over(path: &Path, prog: &Program, keep_same_code: bool) -> Result<Option<LinkOutcome>> {
    let link = match sys::obj_get(path) {
        Ok(fd) => fd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::sys("BPF_OBJ_GET", path.display(), e)),
    };
    if keep_same_code && runs_same_code(path, prog) {
        return Ok(Some(LinkOutcome::Unchanged));
    }
    let prog_fd = prog.fd().map_err(|e| Error::program("?", "fd", e))?.as_fd();
    match sys::link_update(link.as_fd(), prog_fd) {
        Ok(()) => Ok(Some(LinkOutcome::Updated)),
        Err(e) => {
            // A defunct link (its cgroup or device is gone) cannot be updated: replace it.
            tracing::warn!(link = %path.display(), error = %e, "pinned link not updatable; re-attaching");
            unpin(path)?;
            Ok(None)
        }
    }
}

fn pin_link(link: FdLink, path: &Path, prog: &str) -> Result<()> {
    link.pin(path).map(drop).map_err(|e| Error::Pin {
        what: format!("link of {prog}"),
        path: path.to_path_buf(),
        source: e,
    })
}

fn link_err(program: &'static str, e: aya::programs::links::LinkError) -> Error {
    Error::Link {
        program,
        source: Box::new(e),
    }
}

/// Runs `f` on a thread that has entered the network namespace `ns`.
fn in_netns<T: Send>(ns: &File, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: ns is an open nsfs file; setns only changes this thread's namespace.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(Error::sys(
                    "setns",
                    "network namespace",
                    std::io::Error::last_os_error(),
                ));
            }
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

fn ifname(ifindex: u32) -> Result<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return Err(Error::sys(
            "if_indextoname",
            format!("ifindex {ifindex}"),
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name into buf.
    Ok(unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned())
}

/// One attachment of a node, as its link pins name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Attachment {
    /// The socket programs on the cgroup with this inode.
    Cgroup {
        /// Inode of the cgroup v2 directory.
        ino: u64,
    },
    /// The tc programs on interface `ifindex` of the network namespace with inode `netns_ino`.
    Lxc {
        /// Inode of the network namespace (nsfs).
        netns_ino: u64,
        /// Interface index in that namespace.
        ifindex: u32,
    },
}

impl Attachment {
    /// The attachment a link pin's file name belongs to (`cg<ino>_<prog>`,
    /// `tcx<ino>_if<ifindex>_<prog>`), or None for another name.
    pub fn of_pin_name(name: &str) -> Option<Attachment> {
        if let Some(rest) = name.strip_prefix("tcx") {
            let (ino, rest) = rest.split_once("_if")?;
            let (ifindex, _) = rest.split_once('_')?;
            return Some(Attachment::Lxc {
                netns_ino: ino.parse().ok()?,
                ifindex: ifindex.parse().ok()?,
            });
        }
        let (ino, _) = name.strip_prefix("cg")?.split_once('_')?;
        Some(Attachment::Cgroup {
            ino: ino.parse().ok()?,
        })
    }

    /// The prefix of its link pins' names.
    fn pin_prefix(&self) -> String {
        match self {
            Attachment::Cgroup { ino } => format!("cg{ino}_"),
            Attachment::Lxc { netns_ino, ifindex } => format!("tcx{netns_ino}_if{ifindex}_"),
        }
    }
}

/// Inode of a file (a cgroup directory, a network namespace), as attachments name it.
pub fn inode_of(path: &Path) -> Result<u64> {
    open("stat", path).map(|(_, ino)| ino)
}

fn remove_links(pins: &NodePins, prefix: &str) -> Result<usize> {
    let mut n = 0;
    let entries = match std::fs::read_dir(&pins.links) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::pin_path(&pins.links, e)),
    };
    for e in entries {
        let path = e.map_err(|e| Error::pin_path(&pins.links, e))?.path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
            && unpin(&path)?
        {
            n += 1;
        }
    }
    Ok(n)
}

impl Datapath {
    /// Attaches the socket programs (connect4, sendmsg4, recvmsg4, getpeername4,
    /// sock_release) to the cgroup v2 directory `cgroup`, each as a bpf_link
    /// (CgroupAttachMode::Single) pinned at `links/cg<cgroup inode>_<prog>`. Every socket of
    /// a process in that cgroup or below is then balanced at connect()/sendmsg().
    /// Returns the link pins.
    ///
    /// Errors: [`Error::Sys`] when the cgroup cannot be opened, [`Error::Program`] when the
    /// kernel refuses the attachment (e.g. another program holds it exclusively).
    pub fn attach_cgroup(&mut self, cgroup: &Path) -> Result<Vec<PathBuf>> {
        let (file, ino) = open("open cgroup", cgroup)?;
        let mut links = Vec::new();
        for name in SOCK_PROGRAMS {
            let path = cgroup_link(&self.pins, ino, name);
            let prog = self.sock.program_mut(name).ok_or(Error::Missing {
                object: "sock",
                kind: "program",
                name,
            })?;
            if take_over(&path, prog, false)?.is_none() {
                // Both program types attach and hand over their link the same way.
                macro_rules! attach {
                    ($p:expr) => {{
                        let id = $p
                            .attach(&file, CgroupAttachMode::Single)
                            .map_err(|e| Error::program(name, "attach to cgroup", e))?;
                        let l = $p
                            .take_link(id)
                            .map_err(|e| Error::program(name, "take link", e))?;
                        FdLink::try_from(l).map_err(|e| link_err(name, e))?
                    }};
                }
                let link = match prog {
                    Program::CgroupSockAddr(p) => attach!(p),
                    Program::CgroupSock(p) => attach!(p),
                    _ => unreachable!("sock.o programs are cgroup programs (checked at load)"),
                };
                pin_link(link, &path, name)?;
            }
            links.push(path);
        }
        tracing::info!(cgroup = %cgroup.display(), "socket programs attached");
        Ok(links)
    }

    /// Detaches the socket programs from `cgroup` by removing its link pins. Returns how
    /// many were removed (0 when none were attached).
    pub fn detach_cgroup(&self, cgroup: &Path) -> Result<usize> {
        let (_, ino) = open("open cgroup", cgroup)?;
        remove_links(&self.pins, &format!("cg{ino}_"))
    }

    /// Attaches `vx_from_lxc` (tcx ingress) and `vx_to_lxc` (tcx egress) to interface
    /// `ifindex` of the network namespace `netns` (a path such as /run/netns/NAME or
    /// /proc/PID/ns/net): a container's host-side veth. Links are pinned at
    /// `links/tcx<netns inode>_if<ifindex>_<prog>`. Returns the link pins.
    ///
    /// Errors: [`Error::Sys`] when the namespace or interface is not there,
    /// [`Error::Program`] when the kernel refuses the attachment.
    pub fn attach_lxc(&mut self, netns: &Path, ifindex: u32) -> Result<Vec<PathBuf>> {
        self.attach_tc(
            "lxc",
            netns,
            ifindex,
            &[
                (PROG_FROM_LXC, TcAttachType::Ingress),
                (PROG_TO_LXC, TcAttachType::Egress),
            ],
        )
    }

    /// Attaches `vx_from_underlay` (tcx ingress) to interface `ifindex` of `netns`: the host's
    /// underlay device, where clients reach published ports. Pinned like
    /// [`Datapath::attach_lxc`]'s links (the same [`Attachment::Lxc`] kind; detach with
    /// [`Datapath::detach_lxc`]). Errors: as [`Datapath::attach_lxc`].
    pub fn attach_underlay(&mut self, netns: &Path, ifindex: u32) -> Result<Vec<PathBuf>> {
        self.attach_tc(
            "host",
            netns,
            ifindex,
            &[(PROG_FROM_UNDERLAY, TcAttachType::Ingress)],
        )
    }

    /// Attaches `vx_from_overlay` (tcx ingress) to interface `ifindex` of `netns`: a
    /// network's VXLAN device, where routing-mesh flows arrive from ingress nodes and their
    /// replies come back. Errors: as [`Datapath::attach_lxc`].
    pub fn attach_overlay(&mut self, netns: &Path, ifindex: u32) -> Result<Vec<PathBuf>> {
        self.attach_tc(
            "host",
            netns,
            ifindex,
            &[(PROG_FROM_OVERLAY, TcAttachType::Ingress)],
        )
    }

    fn attach_tc(
        &mut self,
        object: &'static str,
        netns: &Path,
        ifindex: u32,
        progs: &[(&'static str, TcAttachType)],
    ) -> Result<Vec<PathBuf>> {
        let ebpf = if object == "host" {
            &mut self.host
        } else {
            &mut self.lxc
        };
        let target = TcxTarget {
            object,
            pins: &self.pins,
            netns,
            ifindex,
        };
        let links = attach_tcx(ebpf, &target, progs, LinkOrder::default, false)?;
        Ok(links.into_iter().map(|(p, _)| p).collect())
    }

    /// Every attachment that has a link pin of this node (also those made by an earlier
    /// load, and those whose cgroup or interface is gone).
    pub fn attachments(&self) -> Result<std::collections::BTreeSet<Attachment>> {
        attachments(&self.pins)
    }

    /// Removes the link pins of `attachment` (its programs detach). Returns how many.
    pub fn detach(&self, attachment: &Attachment) -> Result<usize> {
        detach(&self.pins, attachment)
    }

    /// Detaches the tc programs from interface `ifindex` of `netns` by removing their link
    /// pins. Returns how many were removed.
    pub fn detach_lxc(&self, netns: &Path, ifindex: u32) -> Result<usize> {
        let (_, ns_ino) = open("open network namespace", netns)?;
        remove_links(&self.pins, &format!("tcx{ns_ino}_if{ifindex}_"))
    }
}

/// Where [`attach_tcx`] attaches: interface `ifindex` of network namespace `netns`, with the
/// link pins under `pins`.
pub(crate) struct TcxTarget<'a> {
    /// The object the programs come from (for errors and logs).
    pub object: &'static str,
    pub pins: &'a NodePins,
    pub netns: &'a Path,
    pub ifindex: u32,
}

/// Attaches each of `progs` of `ebpf` (tcx, at its hook in `order`) to `target`, a link
/// pinned at `links/tcx<netns inode>_if<ifindex>_<prog>`; a link already pinned there is
/// taken over ([`take_over`]). Returns each link pin with what was done to it.
pub(crate) fn attach_tcx(
    ebpf: &mut aya::Ebpf,
    target: &TcxTarget<'_>,
    progs: &[(&'static str, TcAttachType)],
    order: fn() -> LinkOrder,
    keep_same_code: bool,
) -> Result<Vec<(PathBuf, LinkOutcome)>> {
    let (object, ifindex) = (target.object, target.ifindex);
    let (ns, ns_ino) = open("open network namespace", target.netns)?;
    let mut links = Vec::new();
    for &(name, at) in progs {
        let path = tcx_link(target.pins, ns_ino, ifindex, name);
        let prog = ebpf.program_mut(name).ok_or(Error::Missing {
            object,
            kind: "program",
            name,
        })?;
        let outcome = match take_over(&path, prog, keep_same_code)? {
            Some(o) => o,
            None => {
                let prog: &mut SchedClassifier = prog
                    .try_into()
                    .map_err(|e| Error::program(name, "as classifier", e))?;
                let link = in_netns(&ns, || {
                    let ifname = ifname(ifindex)?;
                    let id = prog
                        .attach_with_options(&ifname, at, TcAttachOptions::TcxOrder(order()))
                        .map_err(|e| Error::program(name, "attach (tcx)", e))?;
                    prog.take_link(id)
                        .map_err(|e| Error::program(name, "take link", e))
                })?;
                let link: FdLink = link.try_into().map_err(|e| link_err(name, e))?;
                pin_link(link, &path, name)?;
                LinkOutcome::Attached
            }
        };
        links.push((path, outcome));
    }
    tracing::info!(netns = %target.netns.display(), ifindex, object, "tc programs attached");
    Ok(links)
}

/// Every attachment that has a link pin under `pins`.
pub(crate) fn attachments(pins: &NodePins) -> Result<std::collections::BTreeSet<Attachment>> {
    let entries = match std::fs::read_dir(&pins.links) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(e) => return Err(Error::pin_path(&pins.links, e)),
    };
    let mut out = std::collections::BTreeSet::new();
    for e in entries {
        let e = e.map_err(|e| Error::pin_path(&pins.links, e))?;
        if let Some(a) = Attachment::of_pin_name(&e.file_name().to_string_lossy()) {
            out.insert(a);
        }
    }
    Ok(out)
}

/// Removes the link pins of `attachment` under `pins`. Returns how many.
pub(crate) fn detach(pins: &NodePins, attachment: &Attachment) -> Result<usize> {
    remove_links(pins, &attachment.pin_prefix())
}
