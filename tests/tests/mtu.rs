//! The overlay's MTU is the underlay's less the 50 bytes VXLAN adds (or a network's lower
//! `--mtu`), on every device of the path, so a full-size packet crosses without fragmenting
//! and a larger one is refused instead of being fragmented on the underlay.

use std::time::Duration;

use vxmesh_tests::{run_ok, wait_until, Lab};

fn mtu_of(netns: &str, dev: &str) -> u32 {
    let out = run_ok("ip", &["-n", netns, "-o", "link", "show", dev]);
    let mut words = out.split_whitespace();
    words.find(|w| *w == "mtu");
    words
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("no mtu in {out}"))
}

/// A ping of exactly `size` bytes of IP packet with Don't Fragment set.
fn df_ping(lab: &Lab, from: &str, to: &str, size: u32) -> bool {
    let payload = (size - 28).to_string();
    lab.exec(
        from,
        &["ping", "-c", "1", "-W", "1", "-M", "do", "-s", &payload, to],
    )
    .status
    .success()
}

#[test]
fn overlay_mtu_is_underlay_less_fifty_end_to_end() {
    let lab = Lab::up_with(&[
        "--hosts",
        "2",
        "--containers-per-host",
        "1",
        "--networks",
        "1",
        "--mtu",
        "1400",
    ]);
    let (h1, c1, c2) = (
        lab.namespace("h1"),
        lab.namespace("h1-c1"),
        lab.container("h2-c1").clone(),
    );
    assert_eq!(mtu_of(&h1, "eth0"), 1400);
    for dev in ["vx-net1", "vb-net1"] {
        assert_eq!(mtu_of(&h1, dev), 1350, "{dev}");
    }
    assert_eq!(mtu_of(&c1, "eth0"), 1350, "container eth0");
    let to = c2.address.to_string();
    assert!(wait_until(Duration::from_secs(20), || lab.ping("h1-c1", c2.address)));
    assert!(
        df_ping(&lab, "h1-c1", &to, 1350),
        "a full-size packet did not cross"
    );
    assert!(
        !df_ping(&lab, "h1-c1", &to, 1351),
        "a packet larger than the MTU left the container"
    );

    // A network that asks for less gets less, on every host.
    let out = lab.vxmesh(&[
        "network",
        "create",
        "small",
        "--subnet",
        "10.30.0.0/24",
        "--mtu",
        "1300",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for h in ["h1", "h2"] {
        let ns = lab.namespace(h);
        assert!(
            wait_until(Duration::from_secs(10), || {
                vxmesh_tests::witness::links(&ns).contains(&"vx-small".to_string())
                    && mtu_of(&ns, "vx-small") == 1300
                    && mtu_of(&ns, "vb-small") == 1300
            }),
            "{h}: vx-small/vb-small should have MTU 1300"
        );
    }
}
