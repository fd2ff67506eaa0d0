//! Agent restarts on an encrypted network: the WireGuard interface `wg-vx` is persistent, so a
//! SIGKILL or SIGTERM of the agent leaves it (same index, addresses, routes) and the new agent
//! re-attaches to it. A rate-limited download, a held keep-alive session and a ping loop
//! between containers on two hosts run through restarts of both hosts' agents and carry on
//! (packets are lost only while no agent runs: TCP retransmits cover it), and the underlay
//! switch sees no VXLAN in clear meanwhile. Removing the network, and `lab down`, delete the
//! interface.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use vxmesh_tests::capture::Capture;
use vxmesh_tests::crypto::{self, udp_dst_port};
use vxmesh_tests::services::{lab_exec, Lines, Nginx};
use vxmesh_tests::{run, run_ok, wait_until, Lab};

const SETTLE: Duration = Duration::from_secs(30);
/// The download: 12 MiB, which nginx sends at 256 KiB/s ([`Nginx`]'s rate for `/files/`):
/// 48 s, longer than three agent restarts (given up after 240 s).
const BIG: usize = 12 << 20;

/// `ip -d -o link show wg-vx` in `host`'s namespace (empty when there is none).
fn wg_link(lab: &Lab, host: &str) -> String {
    let out = run(
        "ip",
        &[
            "-n",
            &lab.namespace(host),
            "-d",
            "-o",
            "link",
            "show",
            "wg-vx",
        ],
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What of `host`'s kernel the encrypted network needs from `wg-vx`: its addresses and the
/// routes through it.
fn wg_addresses_and_routes(lab: &Lab, host: &str) -> String {
    let ns = lab.namespace(host);
    let addrs = run_ok(
        "ip",
        &["-n", &ns, "-4", "-o", "addr", "show", "dev", "wg-vx"],
    );
    let addrs: Vec<&str> = addrs
        .lines()
        .map(|l| l.split(" valid_lft").next().unwrap_or(l))
        .collect();
    let routes = run_ok("ip", &["-n", &ns, "-4", "route", "show", "dev", "wg-vx"])
        // `linkdown` while no agent holds a queue.
        .replace(" linkdown", "");
    format!("{}\n{routes}", addrs.join("\n"))
}

fn reattached(lab: &Lab, host: &str) -> usize {
    lab.agent_log(host)
        .matches("re-attached to the interface a previous agent left")
        .count()
}

/// Ping replies (`icmp_seq=`) after `t`.
fn replies_after(lines: &[(Instant, String)], t: Instant) -> usize {
    lines
        .iter()
        .filter(|(at, l)| *at > t && l.contains("bytes from") && l.contains("icmp_seq="))
        .count()
}

fn answers_after(lines: &[(Instant, String)], t: Instant) -> usize {
    lines
        .iter()
        .filter(|(at, l)| *at > t && l.starts_with("ok "))
        .count()
}

#[test]
fn connections_over_an_encrypted_network_survive_agent_restarts() {
    let mut lab = crypto::lab_up(2, 1, 1, 1);
    let server = Nginx::start(&lab, "h2-c1", 8080);
    server.put_file("big", BIG);
    let to = lab.container("h2-c1").address;
    assert!(
        lab.ping_within("h1-c1", to, SETTLE),
        "no encrypted path h1-c1 -> h2-c1\n--- h1 agent:\n{}\n--- h2 agent:\n{}",
        lab.agent_log("h1"),
        lab.agent_log("h2")
    );
    let front = format!("{to}:8080");
    // Everything between the hosts, from before the first restart to after the last.
    let mut cap = Capture::start(&lab.state.switch_namespace, "sw0", "udp");

    let t_start = Instant::now();
    let stop = tempfile::tempdir().unwrap();
    let stop_file = stop.path().join("stop");
    let mut download = Lines::spawn(lab_exec(
        &lab,
        "h1-c1",
        false,
        &[
            "curl",
            "-sS",
            "-m",
            "240",
            "-o",
            "/dev/null",
            "-w",
            "code=%{http_code} size=%{size_download}\n",
            &format!("http://{front}/files/big"),
        ],
    ));
    // A request every 200 ms on one connection; an answer may take up to 60 s (the agent
    // restarts and TCP's retransmission backoff), a failed connection ends it.
    let keepalive = Lines::spawn(lab_exec(
        &lab,
        "h1-c1",
        false,
        &[
            env!("CARGO_BIN_EXE_svc_client"),
            "keepalive",
            &front,
            "100000",
            "200",
            stop_file.to_str().unwrap(),
            "60000",
        ],
    ));
    let mut ping_cmd = Command::new("ip");
    ping_cmd
        .args(["netns", "exec", &lab.namespace("h1-c1")])
        // -O: `no answer yet for icmp_seq=N` shows the outage while no agent runs.
        .args([
            "ping",
            "-n",
            "-O",
            "-i",
            "0.2",
            "-w",
            "300",
            &to.to_string(),
        ]);
    let ping = Lines::spawn(ping_cmd);
    assert!(
        wait_until(Duration::from_secs(10), || answers_after(
            &keepalive.so_far(),
            t_start
        ) > 0
            && replies_after(&ping.so_far(), t_start) > 0),
        "the sessions did not start: {:?} {:?}",
        keepalive.so_far(),
        download.so_far()
    );
    let t_first = Instant::now();

    for (host, signal, name) in [
        ("h2", libc::SIGKILL, "SIGKILL"),
        ("h2", libc::SIGTERM, "SIGTERM"),
        ("h1", libc::SIGKILL, "SIGKILL"),
    ] {
        let link = wg_link(&lab, host);
        let index = crypto::wg_index(&lab, host).expect("wg-vx exists");
        assert!(link.contains("persist on"), "{host}: {link}");
        let kernel = wg_addresses_and_routes(&lab, host);
        assert!(kernel.contains("100.88."), "{host}: {kernel}");
        let before = reattached(&lab, host);

        lab.signal_agent(host, signal);
        assert!(lab.wait_agent_exit(host, Duration::from_secs(10)));
        // No agent: the interface, its address and its routes stay, with no queue.
        let down = wg_link(&lab, host);
        assert_eq!(
            crypto::wg_index(&lab, host),
            Some(index),
            "{host}: wg-vx did not outlive its agent ({name}): {down}"
        );
        assert!(down.contains("numqueues 0"), "{host}: {down}");
        assert_eq!(wg_addresses_and_routes(&lab, host), kernel, "{host}");
        // Nothing crosses while no agent runs: the sessions really stall.
        let t_down = Instant::now();
        assert!(
            wait_until(Duration::from_secs(10), || ping
                .so_far()
                .iter()
                .any(|(at, l)| *at > t_down && l.contains("no answer yet"))),
            "{host}: pings answered while no agent ran: {:?}",
            ping.so_far().last()
        );

        lab.start_agent(host);
        let t_back = Instant::now();
        assert!(
            wait_until(Duration::from_secs(30), || reattached(&lab, host) > before),
            "{host}: the new agent did not re-attach to wg-vx:\n{}",
            lab.agent_log(host)
        );
        let up = wg_link(&lab, host);
        assert_eq!(
            crypto::wg_index(&lab, host),
            Some(index),
            "{host}: wg-vx changed after {name}: {link} -> {up}"
        );
        assert!(
            up.contains("persist on") && !up.contains("numqueues 0"),
            "{up}"
        );
        assert_eq!(wg_addresses_and_routes(&lab, host), kernel, "{host}");
        assert!(
            wait_until(Duration::from_secs(60), || answers_after(
                &keepalive.so_far(),
                t_back
            ) >= 5
                && replies_after(&ping.so_far(), t_back) >= 5),
            "{host} ({name}): the keep-alive session or the pings did not resume: {:?} {:?}\n{}",
            keepalive.so_far().last(),
            ping.so_far().last(),
            lab.agent_log(host)
        );
        assert!(
            !download.ended(),
            "the download ended before {host}'s agent was back ({name}): {:?}",
            download.so_far()
        );
        eprintln!(
            "{host} ({name}): the sessions answered again {:.1} s after the new agent \
             started ({:.1} s into the download)",
            t_back.elapsed().as_secs_f64(),
            t_start.elapsed().as_secs_f64()
        );
    }
    let t_last = Instant::now();
    std::fs::write(&stop_file, "").unwrap();
    let (code, lines) = keepalive.wait();
    let text: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    let (dl_code, dl_lines) = download.wait();
    let dl_last = dl_lines.last().map(|(_, l)| l.clone()).unwrap_or_default();
    let pings = ping.so_far();
    let frames = cap.stop();
    drop(ping);

    let answered = answers_after(&lines, t_start);
    let errors: Vec<&&str> = text.iter().filter(|l| l.starts_with("err")).collect();
    eprintln!(
        "keep-alive {}: {answered} answers ({} before the first restart); download {dl_last}; \
         {} ping replies ({} after the last restart), {} unanswered",
        text[0],
        answers_after(&lines, t_start) - answers_after(&lines, t_first),
        replies_after(&pings, t_start),
        replies_after(&pings, t_last),
        pings
            .iter()
            .filter(|(_, l)| l.contains("no answer yet"))
            .count(),
    );
    assert_eq!(
        code,
        Some(0),
        "the keep-alive connection failed: {errors:?} {:?}",
        text.last()
    );
    assert_eq!(text[0], format!("peer={front}"));
    assert_eq!(dl_code, Some(0), "the download failed: {dl_last}");
    assert_eq!(dl_last, format!("code=200 size={BIG}"));

    // On the underlay: WireGuard only, never the encrypted network's VXLAN (4790) or any
    // VXLAN (4789) in clear, before, during and after the restarts.
    let clear = frames
        .iter()
        .filter(|f| matches!(udp_dst_port(f), Some(4789 | 4790)))
        .count();
    let wg = frames
        .iter()
        .filter(|f| udp_dst_port(f) == Some(51820))
        .count();
    eprintln!(
        "underlay: {} UDP frames, {wg} to 51820, {clear} VXLAN",
        frames.len()
    );
    assert_eq!(clear, 0, "VXLAN in clear between the hosts");
    assert!(wg > 1000, "expected the traffic as WireGuard, saw {wg}");

    // Removing the network deletes the persistent interface on both hosts.
    assert!(lab
        .vxmesh(&["network", "rm", "net1", "--force"])
        .status
        .success());
    for host in ["h1", "h2"] {
        assert!(
            wait_until(SETTLE, || crypto::wg_index(&lab, host).is_none()),
            "{host}: wg-vx left after the network was removed: {}",
            wg_link(&lab, host)
        );
    }
}

#[test]
fn lab_down_deletes_the_persistent_wireguard_interfaces() {
    let lab = crypto::lab_up(2, 1, 1, 1);
    let hosts = ["h1", "h2"];
    for host in hosts {
        assert!(
            wait_until(SETTLE, || crypto::wg_index(&lab, host).is_some()),
            "{host} has no wg-vx:\n{}",
            lab.agent_log(host)
        );
    }
    // The hosts' namespaces, held open past `lab down` (which removes their names): whatever
    // it did not delete explicitly would still be in them.
    let held: Vec<File> = hosts
        .iter()
        .map(|h| File::open(format!("/run/netns/{}", lab.namespace(h))).unwrap())
        .collect();
    let prefix = lab.prefix().to_string();
    drop(lab);
    assert!(
        !std::path::Path::new(&format!("/run/vxmesh/lab/{prefix}")).exists(),
        "lab down did not finish"
    );
    for (host, ns) in hosts.iter().zip(&held) {
        let path = format!("/proc/{}/fd/{}", std::process::id(), ns.as_raw_fd());
        let links = run_ok(
            "nsenter",
            &[&format!("--net={path}"), "ip", "-o", "link", "show"],
        );
        assert!(
            !links.contains("wg-vx"),
            "{host}: lab down left wg-vx behind:\n{links}"
        );
    }
}
