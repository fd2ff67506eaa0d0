//! `cargo xtask setup`: install the Debian packages the project needs.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::util::{self, heading, say};

/// Every Debian package the project needs, and who needs it. Add new ones
/// here (clang, libbpf-dev, etcd-server, wireguard-go, ...), with a comment.
pub const PACKAGES: &[&str] = &[
    // `ip`, `bridge`: tests' outside witnesses (ip -d link, bridge fdb),
    // `ip netns exec` for the demo and bench, the by-hand VXLAN in the bench.
    "iproute2",
    // tests assert on what is on the wire; the demo shows decoded VXLAN.
    "tcpdump",
    // `cargo xtask bench overlay`: TCP throughput.
    "iperf3",
    // `ps`, `pgrep`, `sysctl`: tests look at agent processes and sysctls.
    "procps",
    // `ping`: tests and demo check reachability across the overlay.
    "iputils-ping",
    // `fuser`, `killall`: tests and people look for leftover processes.
    "psmisc",
    // `nsenter`, `unshare`: tests enter namespaces without `ip netns exec`
    // (which remounts /sys).
    "util-linux",
    // `nc`: tests send TCP/UDP probes through the overlay and to services.
    "netcat-openbsd",
    // The reference CNI plugins (/usr/lib/cni: bridge, host-local, portmap, tuning,
    // bandwidth): chained after vxmesh-cni and delegated to in the CNI tests, the
    // baseline of `cargo xtask bench cni`.
    "containernetworking-plugins",
    // `wireguard-go` and `wg`: a real WireGuard peer for the encryption interop test and the
    // baseline of `cargo xtask bench crypto`.
    "wireguard-go",
    "wireguard-tools",
    // A real container runtime driving vxmesh-cni (tests/tests/cni_podman.rs): podman 4.3 with
    // its CNI backend, runc as its OCI runtime (crun, podman's default alternative, refuses
    // this machine's hybrid cgroup setup), conmon (its container monitor), and busybox-static
    // for a container rootfs without images (`podman run --rootfs DIR`).
    "podman",
    "runc",
    "conmon",
    "busybox-static",
    // The eBPF datapath (ebpf/build.rs): clang compiles the C programs with `-target bpf`
    // (clang-22: BTF and the CO-RE relocations aya 0.14 reads; Debian 12's default clang-14 is
    // too old for some of them), llvm-22 gives llvm-objdump/llvm-strip to inspect the objects,
    // libbpf-dev the headers (bpf_helpers.h, bpf_endian.h), bpftool the tests' witness
    // (`bpftool prog/map/link show`).
    "clang-22",
    "llvm-22",
    "libbpf-dev",
    "bpftool",
    // Services (tests/tests/service_*.rs): nginx is the real HTTP backend (one process per
    // backend, a config of its own answering with its name and the client address it saw);
    // curl the real HTTP client making new connections to a VIP from lab containers.
    "nginx-light",
    "curl",
    // `cargo xtask bench lb`: wrk is the HTTP load generator in a lab container (keep-alive
    // and one connection per request, a Lua script for the direct baseline); nginx-light
    // (above) the backends; nft builds the kube-proxy-style nftables DNAT VIP it compares
    // with, inside a lab host's namespace.
    "wrk",
    "nftables",
    // DNS for service names (tests/tests/dns.rs): dig is the second witness beside getent
    // (TCP queries, the truncated UDP answer, the response codes).
    "bind9-dnsutils",
    // `cargo xtask bench mesh`: haproxy (TCP mode) in front of the lab's replicas, one of the
    // baselines of the routing mesh (wrk and nftables above are the others' tools).
    "haproxy",
    // The etcd store (overlay-core/src/store/etcd): the etcd-client crate's build script
    // compiles etcd's .proto files with tonic/prost, which needs `protoc` (protobuf-compiler)
    // and the well-known types' .proto files (libprotobuf-dev, google/protobuf/*.proto).
    "protobuf-compiler",
    "libprotobuf-dev",
    // etcd itself for the store suite's 3-member cluster and `vxmesh lab up --store etcd`
    // (etcd-server), etcdctl as the tests' witness of what is in etcd (etcd-client).
    "etcd-server",
    "etcd-client",
    // `openssl`: the store suite makes a CA and certificates for its TLS test of the etcd
    // store (overlay-core/tests/store.rs).
    "openssl",
];

pub fn setup() -> Result<()> {
    heading("setup: checking the Debian packages vxmesh needs");
    util::require_root("setup")?;
    if which("apt-get").is_none() {
        bail!(
            "`cargo xtask setup` supports Debian-like systems only (apt-get and dpkg not found); \
             install these packages by hand: {}",
            PACKAGES.join(" ")
        );
    }
    if which("dpkg-query").is_none() {
        bail!("dpkg-query not found: is this really a Debian-like system?");
    }

    let mut missing = Vec::new();
    for &pkg in PACKAGES {
        if installed(pkg)? {
            say(&format!("{pkg:<16} already installed"));
        } else {
            say(&format!("{pkg:<16} missing"));
            missing.push(pkg);
        }
    }
    if missing.is_empty() {
        say("nothing to install");
        return Ok(());
    }

    heading(&format!("setup: installing {}", missing.join(" ")));
    util::run(apt().arg("update"))?;
    util::run(
        apt()
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing),
    )?;
    for &pkg in &missing {
        if !installed(pkg)? {
            bail!("{pkg} still not installed after apt-get install");
        }
        say(&format!("{pkg:<16} installed"));
    }
    Ok(())
}

fn apt() -> Command {
    let mut c = Command::new("apt-get");
    c.env("DEBIAN_FRONTEND", "noninteractive");
    c
}

/// `dpkg-query -W -f='${Status}' PKG` says "install ok installed" when it is.
fn installed(pkg: &str) -> Result<bool> {
    let out = util::capture(
        Command::new("dpkg-query")
            .args(["-W", "-f=${Status}", pkg])
            .env("LC_ALL", "C"),
    )
    .context("running dpkg-query")?;
    if !out.status.success() {
        // "dpkg-query: no packages found matching PKG"
        return Ok(false);
    }
    let status = String::from_utf8_lossy(&out.stdout);
    Ok(status.split_whitespace().last() == Some("installed")
        && status.split_whitespace().next() == Some("install"))
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}
