//! The kernel state of a namespace as iproute2 reports it, normalised so that two readings of
//! an unchanged kernel compare equal (timers and learned entries left out).

use crate::run_ok;

/// Links (with indexes, MTUs, masters and MACs), VXLAN details, static FDB entries, permanent
/// neighbours, addresses and routes of `netns`.
pub fn kernel_state(netns: &str) -> String {
    let mut out = String::new();
    out += "## links\n";
    out += &run_ok("ip", &["-n", netns, "-o", "link", "show"]);
    out += "## vxlan\n";
    for line in run_ok(
        "ip",
        &["-n", netns, "-d", "-o", "link", "show", "type", "vxlan"],
    )
    .lines()
    {
        // Keep the device and its vxlan parameters, not the bridge port's timers.
        let kept = line.split(" bridge_slave ").next().unwrap_or(line);
        out += kept;
        out += "\n";
    }
    out += "## fdb (static)\n";
    for line in run_ok("bridge", &["-n", netns, "fdb", "show"]).lines() {
        if line.contains(" self ") || line.contains("permanent") {
            out += line;
            out += "\n";
        }
    }
    out += "## neighbours (permanent)\n";
    out += &run_ok("ip", &["-n", netns, "neigh", "show", "nud", "permanent"]);
    out += "## addresses\n";
    for line in run_ok("ip", &["-n", netns, "-o", "addr", "show"]).lines() {
        // valid_lft/preferred_lft count down for dynamic addresses.
        // valid_lft counts down; "tentative" goes away when duplicate address detection ends.
        let kept = line
            .split(" valid_lft")
            .next()
            .unwrap_or(line)
            .replace(" tentative", "");
        out += &kept;
        out += "\n";
    }
    out += "## routes\n";
    out += &run_ok("ip", &["-n", netns, "route", "show"]);
    out
}

/// Names of the links in `netns`.
pub fn links(netns: &str) -> Vec<String> {
    run_ok("ip", &["-n", netns, "-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

/// `bridge fdb show dev DEV` lines that are static VXLAN entries (`self`, with a `dst`); empty
/// when the device does not exist.
pub fn vxlan_fdb(netns: &str, dev: &str) -> Vec<String> {
    let out = crate::run("bridge", &["-n", netns, "fdb", "show", "dev", dev]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(" dst ") && l.contains(" self"))
        .map(str::to_string)
        .collect()
}

/// Waits until two readings of `kernel_state(netns)` a second apart agree (the agents have
/// converged) and returns that state; panics after `timeout`.
pub fn settled_state(netns: &str, timeout: std::time::Duration) -> String {
    let deadline = std::time::Instant::now() + timeout;
    let mut last = kernel_state(netns);
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
        let now = kernel_state(netns);
        if now == last {
            return now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{netns} did not settle"
        );
        last = now;
    }
}
