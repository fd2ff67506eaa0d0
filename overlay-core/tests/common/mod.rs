//! Helpers shared by overlay-core's root-only tests: unique namespace names, outside witnesses
//! (`ip`, `bridge`), and running dataplane code inside a test namespace.
#![allow(dead_code)] // each test binary uses its own subset

pub mod etcd_cluster;

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use overlay_core::dataplane::Dataplane;
use overlay_core::netns::{self, NetnsGuard};

pub fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "vxt-{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run witness");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

pub fn witness(args: &[&str]) -> String {
    let (ok, out) = run(args);
    assert!(ok, "{args:?}: {out}");
    out
}

pub fn in_ns<T: Send + 'static, Fut: std::future::Future<Output = T>>(
    ns: &NetnsGuard,
    f: impl FnOnce(Dataplane) -> Fut + Send + 'static,
) -> T {
    netns::block_on_in(ns.path(), move || async move {
        let dp = Dataplane::connect().expect("connect");
        f(dp).await
    })
    .expect("enter namespace")
}
