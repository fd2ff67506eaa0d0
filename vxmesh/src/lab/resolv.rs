//! Each lab container's resolv.conf: `/etc/netns/NAMESPACE/resolv.conf`, naming its network's
//! gateway, where its host's agent answers DNS. That is iproute2's place for a namespace's
//! files: `ip netns exec NAMESPACE …` bind-mounts it over /etc/resolv.conf, and so does
//! `vxmesh lab exec` for a container ([`Bind`]), so `getent hosts web` resolves through the
//! agent either way. `lab down` removes them.

use std::ffi::CString;
use std::net::Ipv4Addr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::LabError;

/// iproute2's directory of per-namespace files (ip-netns(8)).
pub const ETC_NETNS: &str = "/etc/netns";
/// The file a command in the container sees as its resolv.conf.
const RESOLV_CONF: &str = "/etc/resolv.conf";

/// `/etc/netns/NAMESPACE/resolv.conf`.
pub fn path(namespace: &str) -> PathBuf {
    Path::new(ETC_NETNS).join(namespace).join("resolv.conf")
}

/// Writes container namespace `namespace`'s resolv.conf: one nameserver, `gateway`.
pub fn write(namespace: &str, network: &str, gateway: Ipv4Addr) -> Result<(), LabError> {
    let file = path(namespace);
    let io = |source| LabError::Io {
        context: format!("writing {}", file.display()),
        source,
    };
    std::fs::create_dir_all(file.parent().expect("a directory")).map_err(io)?;
    std::fs::write(
        &file,
        format!(
            "# vxmesh lab: {namespace} is on network {network}; its host's agent answers DNS \
             on the gateway\nnameserver {gateway}\n"
        ),
    )
    .map_err(io)
}

/// Removes `/etc/netns/NAME/` of every namespace `is_ours` accepts (its resolv.conf and
/// nothing else: a directory holding other files is left with them). Returns what it removed.
pub fn remove_all(is_ours: impl Fn(&str) -> bool) -> Result<Vec<String>, LabError> {
    let dir = match std::fs::read_dir(ETC_NETNS) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(source) => {
            return Err(LabError::Io {
                context: format!("reading {ETC_NETNS}"),
                source,
            })
        }
    };
    let mut done = Vec::new();
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str().filter(|n| is_ours(n)) else {
            continue;
        };
        let file = path(name);
        let io = |what: &Path, source| LabError::Io {
            context: format!("removing {}", what.display()),
            source,
        };
        match std::fs::remove_file(&file) {
            Ok(()) => done.push(format!("removed {}", file.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&file, e)),
        }
        let dir = entry.path();
        match std::fs::remove_dir(&dir) {
            Ok(()) => {}
            // Not empty: someone else's files; they stay.
            Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&dir, e)),
        }
    }
    Ok(done)
}

/// What a command started by `lab exec` in a container does before exec: a mount namespace of
/// its own (the caller's mounts reach it, its own reach no one), with the container's
/// resolv.conf bound over /etc/resolv.conf, as `ip netns exec` does. Made before the fork, so
/// the child allocates nothing.
pub struct Bind {
    source: CString,
    target: CString,
}

impl Bind {
    /// For container namespace `namespace`, when it has a resolv.conf and the machine has a
    /// /etc/resolv.conf to cover.
    pub fn for_namespace(namespace: &str) -> Option<Bind> {
        let source = path(namespace);
        if !source.is_file() || !Path::new(RESOLV_CONF).exists() {
            return None;
        }
        Some(Bind {
            source: CString::new(source.as_os_str().as_bytes()).ok()?,
            target: CString::new(RESOLV_CONF).ok()?,
        })
    }

    /// In the child, between fork and exec: unshare(2) the mount namespace, make every mount a
    /// slave (nothing propagates back), bind the file. Only system calls.
    pub fn apply(&self) -> std::io::Result<()> {
        use nix::mount::{mount, MsFlags};
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
        mount(
            None::<&str>,
            c"/",
            None::<&str>,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None::<&str>,
        )?;
        mount(
            Some(self.source.as_c_str()),
            self.target.as_c_str(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )?;
        Ok(())
    }
}
