//! The lab's cgroups: `/sys/fs/cgroup/unified/vxmesh-lab-PREFIX/` with one child per host
//! (`…/h1`, what the cgroup2 root is to a real host) and one per container below its host's
//! (`…/h1/h1-c1`). Each host's agent attaches its socket programs to its host's cgroup
//! (`--cgroup`), so a process that `lab exec` puts in a container's cgroup is balanced at
//! connect()/sendmsg() by its own host's datapath (cgroup bpf_links always stack: one
//! cgroup shared by all the agents would run every host's programs on every container, the
//! first attached doing the work); nothing outside these cgroups is balanced. `lab down`
//! kills what is still inside (`cgroup.kill`) and removes them.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::LabError;

/// The cgroup v2 hierarchy on this kind of machine (a v1/v2 hybrid: FIELD-NOTES).
pub const CGROUP2_ROOT: &str = "/sys/fs/cgroup/unified";

/// `CGROUP2_SUPER_MAGIC` (include/uapi/linux/magic.h).
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// The lab's cgroup.
pub fn lab_cgroup(prefix: &str) -> PathBuf {
    Path::new(CGROUP2_ROOT).join(format!("vxmesh-lab-{prefix}"))
}

/// A host's cgroup in the lab: its agent's `--cgroup`.
pub fn host_cgroup(prefix: &str, host: &str) -> PathBuf {
    lab_cgroup(prefix).join(host)
}

/// A container's cgroup in the lab, below its host's.
pub fn container_cgroup(prefix: &str, host: &str, container: &str) -> PathBuf {
    host_cgroup(prefix, host).join(container)
}

/// Every cgroup below `dir` (not `dir` itself), children after their parents.
fn below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.push(e.path());
            out.extend(below(&e.path()));
        }
    }
    out
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> LabError {
    move |source| LabError::Io { context, source }
}

fn is_cgroup2(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: c is a valid C string; st is written by statfs.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    r == 0 && st.f_type as i64 == CGROUP2_SUPER_MAGIC
}

/// Makes cgroup `path` (below [`CGROUP2_ROOT`], which must be a cgroup2 mount).
pub fn create(path: &Path) -> Result<(), LabError> {
    if !is_cgroup2(Path::new(CGROUP2_ROOT)) {
        return Err(LabError::step(
            "creating the lab's cgroups",
            format!("{CGROUP2_ROOT} is not a cgroup v2 mount"),
        ));
    }
    std::fs::create_dir(path).map_err(io(format!("creating cgroup {}", path.display())))
}

/// The open `cgroup.procs` of `path`, for a child to join with [`join_self`] between fork and
/// exec.
pub fn open_procs(path: &Path) -> Result<OwnedFd, LabError> {
    let procs = path.join("cgroup.procs");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&procs)
        .map(OwnedFd::from)
        .map_err(io(format!("opening {}", procs.display())))
}

/// Moves the calling process into the cgroup whose `cgroup.procs` is open as `procs`
/// (cgroup v2: writing "0" moves the writer). Only the async-signal-safe write(2): callable
/// between fork and exec.
pub fn join_self(procs: &OwnedFd) -> std::io::Result<()> {
    // SAFETY: writes one byte from a static buffer to an open descriptor.
    let r = unsafe { libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) };
    if r == 1 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Kills every process in the lab's cgroup tree and removes the tree. Returns what it removed;
/// nothing to do is not an error.
pub fn remove_all(prefix: &str) -> Result<Vec<String>, LabError> {
    let root = lab_cgroup(prefix);
    if !root.exists() {
        return Ok(Vec::new());
    }
    let kill = root.join("cgroup.kill");
    // cgroup.kill (Linux 5.14): SIGKILL to every process of the subtree.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&kill)
        .and_then(|mut f| f.write_all(b"1"))
        .map_err(io(format!("writing {}", kill.display())))?;
    // Deepest first: a cgroup with children cannot be removed.
    let mut dirs = below(&root);
    dirs.reverse();
    dirs.push(root.clone());
    let mut removed = Vec::new();
    for dir in dirs {
        // The killed processes leave their cgroup a moment later: EBUSY until then.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match std::fs::remove_dir(&dir) {
                Ok(()) => {
                    removed.push(format!("removed cgroup {}", dir.display()));
                    break;
                }
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(io(format!("removing cgroup {}", dir.display()))(e)),
            }
        }
    }
    Ok(removed)
}
