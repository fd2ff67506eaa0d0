//! A network namespace of a test's own (`ip netns add`), for test runs whose programs look
//! devices or routes up: BPF_PROG_TEST_RUN runs the program in the namespace of the calling
//! thread. Removed on drop, with everything in it.
#![allow(dead_code)]

use std::{fs::File, os::fd::AsRawFd, process::Command};

use super::unique;

pub struct TestNs {
    pub name: String,
}

impl TestNs {
    /// A new namespace named `prefix-pid-n`.
    pub fn new(prefix: &str) -> Self {
        let name = unique(prefix);
        ip(&["netns", "add", &name]);
        Self { name }
    }

    /// `ip -n NAME ARGS`; panics with ip's error when it fails.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// `sysctl -qw SETTING` inside the namespace.
    pub fn sysctl(&self, setting: &str) {
        ip(&["netns", "exec", &self.name, "sysctl", "-qw", setting]);
    }

    /// The index of device `dev` in the namespace.
    pub fn ifindex(&self, dev: &str) -> u32 {
        let out = Command::new("ip")
            .args(["-n", &self.name, "-o", "link", "show", dev])
            .output()
            .expect("ip");
        let text = String::from_utf8_lossy(&out.stdout);
        text.split(':')
            .next()
            .and_then(|i| i.trim().parse().ok())
            .unwrap_or_else(|| panic!("no device {dev} in {}: {text}", self.name))
    }

    /// Runs `f` on a thread inside the namespace (test runs look devices and routes up
    /// there).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let ns = File::open(format!("/run/netns/{}", self.name)).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: ns is an open nsfs file; setns changes only this thread.
                assert_eq!(
                    unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
                    0
                );
                f()
            })
            .join()
            .unwrap()
        })
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// `ip ARGS`; panics with ip's error when it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
