//! `cargo xtask bench cni`: ADD and DEL latency of the vxmesh CNI plugin and of the reference
//! bridge + host-local plugins, side by side in one run (interleaved, 200 runs each), as a
//! runtime sees them: process start to exit, environment and stdin, a real container netns,
//! the host side in a lab host's namespace. Prints medians, p99s and ratios; asserts nothing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::bench::Options;
use crate::lab::{Vxmesh, ONE_EMPTY_HOST};
use crate::util::{self, heading, say};

const PREFIX: &str = "vxbcni";
const RUNS: usize = 200;
const REFERENCE_DIR: &str = "/usr/lib/cni";

/// Network namespaces made for the bench, deleted on drop.
struct Netns(Vec<String>);

impl Netns {
    fn add(&mut self, name: &str) -> Result<()> {
        let _ = util::capture(&mut util::cmd("ip", ["netns", "del", name]));
        util::run_quiet(&mut util::cmd("ip", ["netns", "add", name]))?;
        self.0.push(name.to_string());
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

/// One plugin call as a runtime makes it; returns how long it took.
fn call(
    host_ns: &str,
    plugin: &Path,
    command: &str,
    env: &[(&str, &str)],
    conf: &Value,
) -> Result<Duration> {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/run/netns/{host_ns}"))
        .arg("--")
        .arg(plugin)
        .env("CNI_COMMAND", command)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = c
        .spawn()
        .with_context(|| format!("cannot run {}", plugin.display()))?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(conf.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    let took = start.elapsed();
    if !out.status.success() {
        bail!(
            "{} {command} failed: {}{}",
            plugin.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(took)
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:7.2} ms", d.as_secs_f64() * 1e3)
}

struct Series {
    label: &'static str,
    times: Vec<Duration>,
}

impl Series {
    fn stats(&self) -> (Duration, Duration) {
        let mut v = self.times.clone();
        v.sort();
        (percentile(&v, 0.5), percentile(&v, 0.99))
    }
}

pub fn bench(_opts: &Options) -> Result<()> {
    util::require_root("bench cni")?;
    crate::setup::setup()?;
    for p in ["bridge", "host-local"] {
        if !Path::new(REFERENCE_DIR).join(p).is_file() {
            bail!("{REFERENCE_DIR}/{p} is missing: apt-get install containernetworking-plugins");
        }
    }
    let vx = Vxmesh::build(PREFIX)?;
    heading("building the CNI plugin (cargo build --release -p vxmesh-cni)");
    util::run(util::cargo().args(["build", "--release", "-p", "vxmesh-cni"]))?;
    let plugin: PathBuf = util::target_dir().join("release").join("vxmesh-cni");
    let lab = vx.up(&ONE_EMPTY_HOST)?;
    let status = vx.status()?;
    let host = status.host("h1")?.namespace.clone();
    let data = std::env::temp_dir().join(format!("vxbcni-{}", std::process::id()));
    let result = measure(&host, &plugin, &status.store, &data);
    let _ = std::fs::remove_dir_all(&data);
    let series = result?;
    report(&series);
    lab.finish()
}

fn measure(host: &str, plugin: &Path, store: &str, data: &Path) -> Result<Vec<Series>> {
    let mut netns = Netns(Vec::new());
    let (vx_ns, ref_ns) = (format!("{PREFIX}-cv"), format!("{PREFIX}-cr"));
    netns.add(&vx_ns)?;
    netns.add(&ref_ns)?;
    let vx_conf = json!({
        "cniVersion": "1.1.0", "name": "bench-vxmesh", "type": "vxmesh",
        "network": "net1", "node": "h1", "store": store,
    });
    let ref_conf = json!({
        "cniVersion": "1.0.0", "name": "bench-bridge", "type": "bridge",
        "bridge": "cnibr0", "isGateway": true, "mtu": 1450,
        "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.201.0.0/24"}]], "dataDir": data},
    });
    let reference = Path::new(REFERENCE_DIR);
    let mut s = [
        Series {
            label: "ADD  vxmesh",
            times: vec![],
        },
        Series {
            label: "ADD  bridge+host-local (reference)",
            times: vec![],
        },
        Series {
            label: "DEL  vxmesh",
            times: vec![],
        },
        Series {
            label: "DEL  bridge+host-local (reference)",
            times: vec![],
        },
    ];
    heading(&format!(
        "{RUNS} ADD+DEL rounds each, interleaved: vxmesh-cni (release) and bridge+host-local ({REFERENCE_DIR})"
    ));
    let vx_path = format!("/run/netns/{vx_ns}");
    let ref_path = format!("/run/netns/{ref_ns}");
    let cni_path = REFERENCE_DIR.to_string();
    for i in 0..RUNS {
        util::check_interrupted()?;
        let id = format!("bench{i:04}");
        let vx_env = [
            ("CNI_CONTAINERID", id.as_str()),
            ("CNI_NETNS", vx_path.as_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", cni_path.as_str()),
        ];
        let ref_env = [
            ("CNI_CONTAINERID", id.as_str()),
            ("CNI_NETNS", ref_path.as_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", cni_path.as_str()),
        ];
        // Alternate which goes first, so neither always runs on a warmer machine.
        if i % 2 == 0 {
            s[0].times
                .push(call(host, plugin, "ADD", &vx_env, &vx_conf)?);
            s[1].times.push(call(
                host,
                &reference.join("bridge"),
                "ADD",
                &ref_env,
                &ref_conf,
            )?);
        } else {
            s[1].times.push(call(
                host,
                &reference.join("bridge"),
                "ADD",
                &ref_env,
                &ref_conf,
            )?);
            s[0].times
                .push(call(host, plugin, "ADD", &vx_env, &vx_conf)?);
        }
        s[2].times
            .push(call(host, plugin, "DEL", &vx_env, &vx_conf)?);
        s[3].times.push(call(
            host,
            &reference.join("bridge"),
            "DEL",
            &ref_env,
            &ref_conf,
        )?);
        if (i + 1) % 50 == 0 {
            say(&format!("{} rounds", i + 1));
        }
    }
    Ok(s.into())
}

fn report(s: &[Series]) {
    heading(&format!(
        "results: CNI latency, process start to exit, {RUNS} runs each (noisy: compare only within a run)"
    ));
    for x in s {
        let (med, p99) = x.stats();
        say(&format!(
            "{:<40} median {}   p99 {}",
            x.label,
            ms(med),
            ms(p99)
        ));
    }
    for (op, a, b) in [("ADD", 0, 1), ("DEL", 2, 3)] {
        let (ma, pa) = s[a].stats();
        let (mb, pb) = s[b].stats();
        say(&format!(
            "{op} vxmesh / reference{:<21} median {:6.2}x    p99 {:6.2}x",
            "",
            ma.as_secs_f64() / mb.as_secs_f64(),
            pa.as_secs_f64() / pb.as_secs_f64()
        ));
    }
}
