//! Podman 4.3 (Debian, CNI backend) as a real container runtime on a lab host, with every bit
//! of its state in a temporary directory.
//!
//! Podman runs inside the lab host's network namespace (`nsenter --net=`), so the plugin's host
//! side lands there, and inside a private mount namespace held by a `sleep` process this
//! fixture starts: there `/run` and `/var/lib` are empty tmpfs (podman writes `/run/netns`,
//! `/run/runc`, `/run/libpod` and libcni's `/var/lib/cni`), with only the lab's state directory
//! (the store the netconf names) bound back in. Storage, run root, tmp dir, network configs and
//! the CNI plugin dir are in the temporary directory; containers get a cgroup parent of their
//! own (`/vxmesh-podman-…` in every hierarchy), removed on drop. No image: `--rootfs` holds
//! busybox-static. What it needs is in /work/shared/FIELD-NOTES.md, section "CNI".

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use crate::{unique, Lab};

/// The private mount namespace: empty /run and /var/lib, the lab's state dir bound back.
const HOLDER: &str = r#"set -e
T=$1; STATE=$2
mount -n --bind "$STATE" "$T/labstate"
mount -n -t tmpfs vxmesh-podman-run /run
mkdir -p "$STATE"
mount -n --bind "$T/labstate" "$STATE"
mount -n -t tmpfs vxmesh-podman-varlib /var/lib
echo ready
exec sleep infinity
"#;

/// True when podman, runc, conmon and busybox-static are installed (`cargo xtask setup`).
pub fn available() -> bool {
    [
        "/usr/bin/podman",
        "/usr/sbin/runc",
        "/usr/bin/conmon",
        "/bin/busybox",
    ]
    .iter()
    .all(|p| Path::new(p).exists())
}

/// Podman on one lab host. Dropping it removes its containers, its mount namespace, its
/// cgroups and its directory.
pub struct Podman {
    dir: tempfile::TempDir,
    holder: Child,
    host_ns: String,
    /// The cgroup parent of its containers (`/vxmesh-podman-…`).
    pub cgroup_parent: String,
}

impl Podman {
    /// Podman for lab host `host` of `lab`.
    pub fn new(lab: &Lab, host: &str) -> Podman {
        assert!(
            available(),
            "podman, runc, conmon or busybox-static missing: run `cargo xtask setup`"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let t = dir.path();
        for d in [
            "root",
            "runroot",
            "tmp",
            "bin",
            "net.d",
            "labstate",
            "rootfs/bin",
        ] {
            std::fs::create_dir_all(t.join(d)).expect("podman dirs");
        }
        std::fs::copy("/bin/busybox", t.join("rootfs/bin/busybox")).expect("copy busybox");
        for applet in ["sh", "sleep", "ip", "nc", "cat"] {
            std::os::unix::fs::symlink("busybox", t.join("rootfs/bin").join(applet))
                .expect("busybox applet");
        }
        let conf = format!(
            r#"[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[network]
network_backend = "cni"
cni_plugin_dirs = ["{bin}", "{reference}"]
network_config_dir = "{netd}"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"#,
            bin = t.join("bin").display(),
            reference = crate::cni::REFERENCE_PLUGINS,
            netd = t.join("net.d").display(),
        );
        std::fs::write(t.join("containers.conf"), conf).expect("containers.conf");

        let state = lab
            .state
            .store
            .parent()
            .expect("the lab store is in its state dir")
            .to_path_buf();
        let mut holder = Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                HOLDER,
            ])
            .arg("sh")
            .arg(t)
            .arg(&state)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run unshare");
        let mut line = String::new();
        let _ = BufReader::new(holder.stdout.take().expect("piped")).read_line(&mut line);
        let podman = Podman {
            dir,
            holder,
            host_ns: lab.namespace(host),
            cgroup_parent: format!("/{}", unique("vxmesh-podman-")),
        };
        assert_eq!(
            line.trim(),
            "ready",
            "the private mount namespace is not set up"
        );
        podman
    }

    /// Where `vxmesh cni install --bin-dir` should put the plugin.
    pub fn bin_dir(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    /// Where `vxmesh cni install --conf-dir` should put the conflist.
    pub fn conf_dir(&self) -> PathBuf {
        self.dir.path().join("net.d")
    }

    /// A busybox root filesystem for `podman run --rootfs`.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// Runs `podman ARGS` (at most 120 s) in the host's network namespace and the private
    /// mount namespace.
    pub fn run(&self, args: &[&str]) -> Output {
        let t = self.dir.path();
        let path = |d: &str| t.join(d).display().to_string();
        Command::new("timeout")
            .arg("120")
            .arg("nsenter")
            .arg(format!("--mount=/proc/{}/ns/mnt", self.holder.id()))
            .arg(format!("--net=/run/netns/{}", self.host_ns))
            .args(["--", "podman"])
            .args(["--root", &path("root"), "--runroot", &path("runroot")])
            .args([
                "--tmpdir",
                &path("tmp"),
                "--network-config-dir",
                &path("net.d"),
            ])
            .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"])
            .args(["--runtime", "runc"])
            .args(args)
            .env("CONTAINERS_CONF", t.join("containers.conf"))
            .stdin(Stdio::null())
            .output()
            .expect("run podman")
    }

    /// The host PID of a running container's first process.
    pub fn pid(&self, name: &str) -> u32 {
        let out = self.run(&["inspect", "--format", "{{.State.Pid}}", name]);
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("podman inspect {name}: {text}"))
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let out = self.run(&["rm", "--all", "--force", "--time", "0"]);
        if !out.status.success() {
            eprintln!("podman rm --all: {}", String::from_utf8_lossy(&out.stderr));
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        // The cgroups podman made under our parent, deepest first, in every hierarchy.
        let parent = self.cgroup_parent.trim_start_matches('/');
        if let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") {
            for h in hierarchies.flatten() {
                remove_cgroup_tree(&h.path().join(parent));
            }
        }
    }
}

fn remove_cgroup_tree(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup_tree(&e.path());
        }
    }
    if let Err(e) = std::fs::remove_dir(dir) {
        eprintln!("cannot remove cgroup {}: {e}", dir.display());
    }
}
