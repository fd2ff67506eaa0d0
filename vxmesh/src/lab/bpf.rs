//! The lab's BPF pins: every host's agent pins under `/sys/fs/bpf/vxmesh-lab-PREFIX/<host>/`
//! (`--bpf-pin-root`), so labs never share maps with each other or with a real agent.
//!
//! bpffs: when nothing is mounted at /sys/fs/bpf, `lab up` mounts it (in the host mount
//! namespace, so the pins outlive the agents) and records that it did; `lab down` unmounts it
//! again only when it is then empty (nothing pinned by anyone else, e.g. another lab), and
//! leaves it otherwise: a bpffs that others use is not the lab's to take away.

use std::path::{Path, PathBuf};

use super::LabError;

/// The lab's pin root.
pub fn pin_root(prefix: &str) -> PathBuf {
    Path::new(vxmesh_ebpf::BPFFS).join(format!("vxmesh-lab-{prefix}"))
}

/// Mounts bpffs at /sys/fs/bpf when nothing is mounted there. Returns whether it mounted it.
pub fn mount_if_missing(prefix: &str) -> Result<bool, LabError> {
    let bpffs = Path::new(vxmesh_ebpf::BPFFS);
    if vxmesh_ebpf::pins::is_bpffs(bpffs) {
        return Ok(false);
    }
    vxmesh_ebpf::ensure_bpffs(&pin_root(prefix))
        .map_err(|e| LabError::step("mounting bpffs", e))?;
    Ok(true)
}

/// Removes every host's pins (links first, so every program detaches; then programs and
/// maps) and the lab's pin root. Returns what it removed.
pub fn teardown(prefix: &str) -> Result<Vec<String>, LabError> {
    let root = pin_root(prefix);
    let hosts: Vec<String> = match std::fs::read_dir(&root) {
        Ok(d) => d
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(LabError::Io {
                context: format!("reading {}", root.display()),
                source,
            })
        }
    };
    let mut done = Vec::new();
    for host in hosts {
        let removed = vxmesh_ebpf::teardown(&root, &host)
            .map_err(|e| LabError::step(format!("removing the BPF pins of {host}"), e))?;
        done.push(format!(
            "removed {} BPF pins of {host} under {}",
            removed.len(),
            root.display()
        ));
    }
    // teardown removes the root once it is empty; an empty root left by a failed up too.
    let _ = std::fs::remove_dir(&root);
    Ok(done)
}

/// Unmounts /sys/fs/bpf when it is empty. Returns whether it did.
pub fn unmount_if_empty() -> Result<bool, LabError> {
    let bpffs = Path::new(vxmesh_ebpf::BPFFS);
    if !vxmesh_ebpf::pins::is_bpffs(bpffs) {
        return Ok(false);
    }
    let empty = std::fs::read_dir(bpffs).is_ok_and(|mut d| d.next().is_none());
    if !empty {
        return Ok(false);
    }
    nix::mount::umount(bpffs).map_err(|e| LabError::step("unmounting bpffs", e))?;
    Ok(true)
}
