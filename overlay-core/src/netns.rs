//! Named network namespaces, the way `ip netns` keeps them: a file under [`NETNS_RUN_DIR`]
//! with the namespace bind-mounted onto it, so it outlives every process inside it.
//!
//! `setns(2)` moves only the calling thread, so everything here that does work inside a
//! namespace does it on a dedicated thread ([`run_in`], [`block_on_in`]) and never changes the
//! namespace of the caller's thread (except [`enter`], which exists to do exactly that).

use std::ffi::OsStr;
use std::fs::File;
use std::future::Future;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use crate::dataplane::{Dataplane, DataplaneError};

/// Where named network namespaces live (the directory `ip netns` uses).
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// The calling thread's own network namespace.
pub const THREAD_SELF_NET: &str = "/proc/thread-self/ns/net";

/// Why a namespace operation failed. Every variant names the namespace (or its path) and the
/// step that failed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("invalid network namespace name '{name}': {reason}")]
    InvalidName { name: String, reason: &'static str },

    #[error("network namespace '{name}' already exists")]
    AlreadyExists { name: String },

    #[error("cannot prepare {dir} as a shared mount ({step}): {source}")]
    RunDir {
        dir: &'static str,
        step: &'static str,
        #[source]
        source: io::Error,
    },

    #[error("cannot create network namespace '{name}' ({step}): {source}")]
    Create {
        name: String,
        step: &'static str,
        #[source]
        source: io::Error,
    },

    #[error("cannot bring lo up in new network namespace '{name}': {source}")]
    Loopback {
        name: String,
        #[source]
        source: Box<DataplaneError>,
    },

    #[error("cannot delete network namespace '{name}' ({step}): {source}")]
    Delete {
        name: String,
        step: &'static str,
        #[source]
        source: io::Error,
    },

    #[error("cannot list network namespaces in {dir}: {source}")]
    List {
        dir: &'static str,
        #[source]
        source: io::Error,
    },

    #[error("cannot open network namespace {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot enter network namespace {path} (setns): {source}")]
    Enter {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot start a thread for network namespace {path}: {source}")]
    Thread {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot build a tokio runtime inside network namespace {path}: {source}")]
    Runtime {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl NetnsError {
    /// True when the namespace (file) does not exist.
    pub fn is_not_found(&self) -> bool {
        match self {
            NetnsError::Open { source, .. } => source.kind() == io::ErrorKind::NotFound,
            _ => false,
        }
    }
}

/// `/run/netns/NAME`.
pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_RUN_DIR).join(name)
}

/// Whether a namespace file of that name exists.
pub fn exists(name: &str) -> bool {
    validate_name(name).is_ok() && path(name).exists()
}

/// The names of the namespaces under [`NETNS_RUN_DIR`], sorted. Empty when the directory does
/// not exist.
pub fn list() -> Result<Vec<String>, NetnsError> {
    let err = |source| NetnsError::List {
        dir: NETNS_RUN_DIR,
        source,
    };
    let entries = match std::fs::read_dir(NETNS_RUN_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(err(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(err)?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

fn validate_name(name: &str) -> Result<(), NetnsError> {
    let reason = if name.is_empty() {
        "empty"
    } else if name == "." || name == ".." {
        "reserved"
    } else if name.contains('/') || name.contains('\0') {
        "contains '/' or NUL"
    } else if name.len() > 255 {
        "longer than 255 bytes"
    } else {
        return Ok(());
    };
    Err(NetnsError::InvalidName {
        name: name.to_string(),
        reason,
    })
}

/// Serialises the one-time preparation of the run directory within this process.
static RUN_DIR_LOCK: Mutex<bool> = Mutex::new(false);

/// Makes [`NETNS_RUN_DIR`] exist and be a shared mount point, as iproute2 does: first try to make
/// it shared; if it is not a mount point yet (EINVAL), bind-mount it onto itself and try again.
fn prepare_run_dir() -> Result<(), NetnsError> {
    let mut done = RUN_DIR_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    if *done {
        return Ok(());
    }
    let err = |step, source: io::Error| NetnsError::RunDir {
        dir: NETNS_RUN_DIR,
        step,
        source,
    };
    std::fs::create_dir_all(NETNS_RUN_DIR).map_err(|e| err("mkdir", e))?;
    let make_shared = || {
        mount(
            Some(""),
            NETNS_RUN_DIR,
            Some("none"),
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match make_shared() {
        Ok(()) => {}
        Err(Errno::EINVAL) => {
            mount(
                Some(NETNS_RUN_DIR),
                NETNS_RUN_DIR,
                Some("none"),
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| err("bind-mount onto itself", e.into()))?;
            make_shared().map_err(|e| err("mount --make-rshared", e.into()))?;
            tracing::debug!(
                dir = NETNS_RUN_DIR,
                "made the netns run directory a shared mount"
            );
        }
        Err(e) => return Err(err("mount --make-rshared", e.into())),
    }
    *done = true;
    Ok(())
}

/// Creates the named network namespace, like `ip netns add NAME`, and brings `lo` up inside
/// it. Fails with [`NetnsError::AlreadyExists`] if the name is taken.
pub fn create(name: &str) -> Result<PathBuf, NetnsError> {
    validate_name(name)?;
    prepare_run_dir()?;
    let ns_path = path(name);
    let cerr = |step, source| NetnsError::Create {
        name: name.to_string(),
        step,
        source,
    };

    // The mount point: an empty file, created exclusively so two creators cannot share it.
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o000)
        .open(&ns_path)
    {
        Ok(file) => drop(file),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(NetnsError::AlreadyExists {
                name: name.to_string(),
            })
        }
        Err(e) => return Err(cerr("create mount point file", e)),
    }

    // A fresh thread unshares its network namespace and pins it on the file. The thread ends
    // afterwards, so no thread of ours is left inside the namespace.
    let target = ns_path.clone();
    let pinned = std::thread::Builder::new()
        .name(format!("netns-add-{name}"))
        .spawn(move || -> Result<(), (&'static str, io::Error)> {
            unshare(CloneFlags::CLONE_NEWNET).map_err(|e| ("unshare(CLONE_NEWNET)", e.into()))?;
            mount(
                Some(THREAD_SELF_NET),
                &target,
                Some("none"),
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| ("bind-mount the namespace", e.into()))
        })
        .map_err(|e| cerr("spawn thread", e))
        .and_then(|handle| {
            handle
                .join()
                .unwrap_or_else(|_| Err(("thread", io::Error::other("thread panicked"))))
                .map_err(|(step, e)| cerr(step, e))
        });
    if let Err(e) = pinned {
        let _ = std::fs::remove_file(&ns_path);
        return Err(e);
    }

    // Bring lo up inside, as most users of a fresh namespace expect.
    let lo = block_on_in(&ns_path, || async {
        let dp = Dataplane::connect()?;
        match dp.link("lo").await? {
            Some(lo) => dp.set_up(lo.index).await,
            None => Ok(()),
        }
    });
    let lo_result = match lo {
        Ok(r) => r.map_err(|e| NetnsError::Loopback {
            name: name.to_string(),
            source: Box::new(e),
        }),
        Err(e) => Err(e),
    };
    if let Err(e) = lo_result {
        if let Err(del) = delete(name) {
            tracing::warn!(netns = name, error = %del, "cleanup after failed create");
        }
        return Err(e);
    }
    tracing::debug!(netns = name, "created network namespace");
    Ok(ns_path)
}

/// Deletes the named namespace, like `ip netns delete NAME`: detaches the bind mount and removes
/// the file. Ok when it does not exist. The namespace itself lives on while processes use it.
pub fn delete(name: &str) -> Result<(), NetnsError> {
    validate_name(name)?;
    let ns_path = path(name);
    let derr = |step, source| NetnsError::Delete {
        name: name.to_string(),
        step,
        source,
    };
    match umount2(&ns_path, MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point (e.g. a half-created namespace); ENOENT: absent.
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(derr("umount", e.into())),
    }
    match std::fs::remove_file(&ns_path) {
        Ok(()) => {
            tracing::debug!(netns = name, "deleted network namespace");
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(derr("unlink", e)),
    }
}

/// Opens a namespace file (read-only, close-on-exec).
pub(crate) fn open(path: &Path) -> Result<OwnedFd, NetnsError> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map(|f: File| OwnedFd::from(f))
        .map_err(|source| NetnsError::Open {
            path: path.to_path_buf(),
            source,
        })
}

fn setns_fd(fd: impl AsFd, path: &Path) -> Result<(), NetnsError> {
    setns(fd, CloneFlags::CLONE_NEWNET).map_err(|e| NetnsError::Enter {
        path: path.to_path_buf(),
        source: e.into(),
    })
}

/// Moves the calling thread into the network namespace at `path` (for use at process start,
/// before any runtime or extra thread exists).
pub fn enter(path: &Path) -> Result<(), NetnsError> {
    let fd = open(path)?;
    setns_fd(&fd, path)?;
    tracing::debug!(netns = %path.display(), "entered network namespace");
    Ok(())
}

fn thread_name(path: &Path) -> String {
    let base = path.file_name().and_then(OsStr::to_str).unwrap_or("netns");
    // Thread names are truncated to 15 bytes by the kernel anyway.
    format!("ns-{}", base.chars().take(24).collect::<String>())
}

/// Runs `f` on a new thread inside the network namespace opened from `fd`, and waits for it.
/// A panic in `f` is resumed on the caller's thread.
pub(crate) fn run_in_fd<T: Send + 'static>(
    fd: OwnedFd,
    path: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, NetnsError> {
    let owned_path = path.to_path_buf();
    let handle = std::thread::Builder::new()
        .name(thread_name(path))
        .spawn(move || -> Result<T, NetnsError> {
            setns_fd(&fd, &owned_path)?;
            drop(fd);
            Ok(f())
        })
        .map_err(|source| NetnsError::Thread {
            path: path.to_path_buf(),
            source,
        })?;
    match handle.join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Runs `f` on a new thread inside the network namespace at `path` and returns its result.
/// The path is opened on the caller's thread (so `/proc/thread-self/ns/net` means the caller's
/// namespace). A panic in `f` is resumed on the caller's thread.
pub fn run_in<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, NetnsError> {
    let fd = open(path)?;
    run_in_fd(fd, path, f)
}

/// Like [`block_on_in`] but with an already opened namespace file.
pub(crate) fn block_on_in_fd<F, Fut, T>(fd: OwnedFd, path: &Path, f: F) -> Result<T, NetnsError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let owned_path = path.to_path_buf();
    run_in_fd(fd, path, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| NetnsError::Runtime {
                path: owned_path,
                source,
            })?;
        Ok(rt.block_on(f()))
    })?
}

/// Runs the future made by `f` to completion on a new thread inside the network namespace at
/// `path`, on a current-thread tokio runtime (all drivers enabled) that lives as long as the
/// call. Safe to call from inside another runtime: the caller's thread only waits.
pub fn block_on_in<F, Fut, T>(path: &Path, f: F) -> Result<T, NetnsError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let fd = open(path)?;
    block_on_in_fd(fd, path, f)
}

/// A named network namespace that is deleted when the guard is dropped.
#[derive(Debug)]
pub struct NetnsGuard {
    name: String,
    path: PathBuf,
}

impl NetnsGuard {
    /// Creates the namespace (see [`create`]).
    pub fn new(name: &str) -> Result<Self, NetnsError> {
        let path = create(name)?;
        Ok(NetnsGuard {
            name: name.to_string(),
            path,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if let Err(e) = delete(&self.name) {
            tracing::warn!(netns = %self.name, error = %e, "cannot delete network namespace");
        }
    }
}

/// The index of interface `name` in the calling thread's network namespace, `None` if there
/// is none (`if_nametoindex(3)`).
pub fn ifindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: a NUL-terminated string; the call only reads it.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_names() {
        assert_eq!(path("a"), PathBuf::from("/run/netns/a"));
        assert!(validate_name("vxt-1-2").is_ok());
        for bad in ["", ".", "..", "a/b"] {
            assert!(
                matches!(validate_name(bad), Err(NetnsError::InvalidName { .. })),
                "{bad}"
            );
        }
        assert!(!exists("a/b"));
    }
}
