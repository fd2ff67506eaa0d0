//! bpffs and the pin layout of a node:
//!
//! ```text
//! <pin_root>/<node>/maps/<map>     every map, pinned by name (LIBBPF_PIN_BY_NAME), reused on reload
//! <pin_root>/<node>/progs/<prog>   every program of the last load
//! <pin_root>/<node>/links/<link>   every attachment (bpf_link):
//!        cg<cgroup inode>_<prog>                 cgroup programs
//!        tcx<netns inode>_if<ifindex>_<prog>     tc programs (tcx ingress/egress)
//! ```
//!
//! A pinned link keeps its program attached after the loading process exits; removing the
//! pin detaches it (no process holds the link open). [`teardown`] removes the node's
//! directory and everything in it, and `<pin_root>` when it is left empty.

use std::{
    ffi::CString,
    fs, io,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use crate::{
    config::{validate_node, BPFFS},
    error::{Error, Result},
};

/// `BPF_FS_MAGIC` from include/uapi/linux/magic.h.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// The directories of one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodePins {
    /// `<pin_root>/<node>`.
    pub node_dir: PathBuf,
    /// `<node_dir>/maps`.
    pub maps: PathBuf,
    /// `<node_dir>/progs`.
    pub progs: PathBuf,
    /// `<node_dir>/links`.
    pub links: PathBuf,
}

impl NodePins {
    /// The layout of `node` under `pin_root` (nothing is created).
    pub fn new(pin_root: &Path, node: &str) -> Result<Self> {
        validate_node(node)?;
        let node_dir = pin_root.join(node);
        Ok(Self {
            maps: node_dir.join("maps"),
            progs: node_dir.join("progs"),
            links: node_dir.join("links"),
            node_dir,
        })
    }

    pub(crate) fn create(&self) -> Result<()> {
        for d in [&self.maps, &self.progs, &self.links] {
            fs::create_dir_all(d).map_err(|e| Error::pin_path(d, e))?;
        }
        Ok(())
    }
}

/// Whether `path` is on a bpffs.
pub fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: c is a valid C string; st is written by statfs.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    r == 0 && st.f_type as i64 == BPF_FS_MAGIC
}

/// Mounts bpffs at [`BPFFS`] when `pin_root` is below it and nothing is mounted there yet.
///
/// Mounts in the calling process's mount namespace: the pins must outlive the process, so
/// call it from the host mount namespace (a bpffs mounted in a private mount namespace
/// vanishes with it, and its links detach; FIELD-NOTES "eBPF datapath").
pub fn ensure_bpffs(pin_root: &Path) -> Result<()> {
    let bpffs = Path::new(BPFFS);
    if !pin_root.starts_with(bpffs) || is_bpffs(bpffs) {
        return Ok(());
    }
    if !same_mount_ns_as_init() {
        tracing::warn!(
            "mounting bpffs at {BPFFS} from a mount namespace other than init's: \
             pins made here vanish with this namespace"
        );
    }
    fs::create_dir_all(bpffs).map_err(|e| Error::Bpffs {
        path: bpffs.into(),
        source: e,
    })?;
    let src = CString::new("bpf").expect("no NUL");
    let dst = CString::new(BPFFS).expect("no NUL");
    // SAFETY: all arguments are valid C strings; data may be NULL for bpffs.
    let r = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            src.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if r != 0 {
        let e = io::Error::last_os_error();
        // Another process may have mounted it meanwhile.
        if !is_bpffs(bpffs) {
            return Err(Error::Bpffs {
                path: bpffs.into(),
                source: e,
            });
        }
    }
    tracing::info!("mounted bpffs at {BPFFS}");
    Ok(())
}

fn same_mount_ns_as_init() -> bool {
    match (
        fs::read_link("/proc/self/ns/mnt"),
        fs::read_link("/proc/1/ns/mnt"),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => true,
    }
}

/// Removes every pin of `node` under `pin_root` (links first, so programs detach; then
/// programs and maps), its directories, and `pin_root` if that leaves it empty. Returns the
/// pins removed. A node with nothing pinned is not an error.
pub fn teardown(pin_root: &Path, node: &str) -> Result<Vec<PathBuf>> {
    teardown_pins(pin_root, &NodePins::new(pin_root, node)?)
}

/// Removes every pin of the layout `pins` (links, programs, maps), its directories, and
/// `pin_root` if that leaves it empty. Returns the pins removed.
pub(crate) fn teardown_pins(pin_root: &Path, pins: &NodePins) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for dir in [&pins.links, &pins.progs, &pins.maps] {
        remove_pins(dir, &mut removed)?;
    }
    remove_dir(&pins.node_dir)?;
    if fs::read_dir(pin_root).is_ok_and(|mut d| d.next().is_none()) {
        remove_dir(pin_root)?;
    }
    Ok(removed)
}

fn remove_pins(dir: &Path, removed: &mut Vec<PathBuf>) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::pin_path(dir, e)),
    };
    for e in entries {
        let path = e.map_err(|e| Error::pin_path(dir, e))?.path();
        fs::remove_file(&path).map_err(|e| Error::pin_path(&path, e))?;
        removed.push(path);
    }
    remove_dir(dir)
}

fn remove_dir(dir: &Path) -> Result<()> {
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::pin_path(dir, e)),
    }
}

/// Removes one pin; a missing pin is not an error. Returns whether it existed.
pub(crate) fn unpin(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::pin_path(path, e)),
    }
}
