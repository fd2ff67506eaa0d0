//! Encryption acceptance 2 and 3 (first half): a peer run by Debian's wireguard-go, configured
//! only with `wg` and `ip` and registered in the store as a node, exchanges traffic with a lab
//! host through the tunnel (ping of the host's tunnel address, then VXLAN made by hand on top
//! of the tunnel to a container of the encrypted network); a forged peer with the right
//! endpoint but a key the store does not know gets nothing through.

use std::net::Ipv4Addr;
use std::time::Duration;

use vxmesh_tests::crypto::{self, WgGoPeer};
use vxmesh_tests::{run_ok, wait_until};

#[test]
fn wireguard_go_peer_interoperates_and_a_forged_peer_gets_nothing() {
    let lab = crypto::lab_up(2, 1, 1, 1);
    let h1 = crypto::identity(&lab, "h1").expect("h1 published its identity");
    let h1_tunnel = crypto::tunnel_ip(&lab, "h1");
    let h1_endpoint = format!("{}:{}", lab.host("h1").address, h1.port);

    // The real peer: registered in the store as node `wgp`.
    let peer = WgGoPeer::start(&lab, Ipv4Addr::new(10, 99, 0, 200), 51820);
    let out = lab.vxmesh(&["node", "add", "wgp", "--underlay", "10.99.0.200"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = lab.vxmesh(&["node", "wireguard", "wgp", "--public-key", &peer.public_key]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tunnel = crypto::tunnel_ip(&lab, "wgp");
    peer.address(tunnel);
    peer.add_peer(&h1.public_key, &h1_endpoint, &format!("{h1_tunnel}/32"));
    assert!(
        wait_until(Duration::from_secs(30), || peer.ping(h1_tunnel)),
        "wireguard-go cannot ping h1's tunnel address {h1_tunnel}"
    );
    assert!(peer.latest_handshakes().iter().any(|t| *t > 0));

    // VXLAN by hand on top of the tunnel, into the encrypted network net1.
    let net1 = lab.network("net1").clone();
    let c1 = lab.container("h1-c1").clone();
    let ns = peer.ns().to_string();
    let mac = "0a:58:0a:0a:01:c8";
    let vni = net1.vni.to_string();
    run_ok(
        "ip",
        &[
            "-n",
            &ns,
            "link",
            "add",
            "vxi",
            "address",
            mac,
            "mtu",
            "1390",
            "type",
            "vxlan",
            "id",
            &vni,
            "local",
            &tunnel.to_string(),
            // Encrypted networks' VXLAN port (4789 is for plain networks only).
            "dstport",
            "4790",
            "nolearning",
        ],
    );
    run_ok(
        "ip",
        &["-n", &ns, "addr", "add", "10.10.1.200/24", "dev", "vxi"],
    );
    run_ok("ip", &["-n", &ns, "link", "set", "vxi", "up"]);
    for m in ["00:00:00:00:00:00", c1.mac.as_str()] {
        run_ok(
            "bridge",
            &[
                "-n",
                &ns,
                "fdb",
                "append",
                m,
                "dev",
                "vxi",
                "dst",
                &h1_tunnel.to_string(),
            ],
        );
    }
    run_ok(
        "ip",
        &[
            "-n",
            &ns,
            "neigh",
            "replace",
            &c1.address.to_string(),
            "lladdr",
            &c1.mac,
            "dev",
            "vxi",
        ],
    );
    let out = lab.vxmesh(&[
        "endpoint",
        "add",
        "--network",
        "net1",
        "--node",
        "wgp",
        "--ip",
        "10.10.1.200",
        "--mac",
        mac,
        "--name",
        "wgp-vx",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ping_c1 = || {
        vxmesh_tests::run(
            "ip",
            &[
                "netns",
                "exec",
                &ns,
                "ping",
                "-c",
                "1",
                "-W",
                "1",
                &c1.address.to_string(),
            ],
        )
        .status
        .success()
    };
    assert!(
        wait_until(Duration::from_secs(30), ping_c1),
        "VXLAN over wireguard-go cannot reach h1-c1"
    );

    // The forged peer: h1's right endpoint and key, but its own key is in no store.
    let forged = WgGoPeer::start(&lab, Ipv4Addr::new(10, 99, 0, 201), 51820);
    forged.address(Ipv4Addr::new(100, 88, 255, 1));
    forged.add_peer(&h1.public_key, &h1_endpoint, &format!("{h1_tunnel}/32"));
    std::thread::sleep(Duration::from_secs(1));
    for _ in 0..8 {
        assert!(
            !forged.ping(h1_tunnel),
            "a forged peer reached h1 through the tunnel"
        );
    }
    assert!(
        forged.latest_handshakes().iter().all(|t| *t == 0),
        "h1 completed a handshake with a key it does not know"
    );
    // The real peer still works.
    assert!(peer.ping(h1_tunnel));
}
