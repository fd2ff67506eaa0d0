//! The servers and the client of the bench: nginx from Debian in lab containers (one process,
//! a tiny configuration that answers every request with the container's name), and wrk from
//! Debian run in a container through `vxmesh lab exec`, so it runs in the container's cgroup
//! where the agent's socket programs balance its connections.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::lab::Vxmesh;
use crate::util::{self, KillOnDrop};

/// The port of the throughput service (no access log).
pub const WEB_PORT: u16 = 80;
/// The port of the add-backend delay service: every request is logged with its time
/// (`$msec`, seconds since the epoch with milliseconds).
pub const DELAY_PORT: u16 = 8080;
/// The access log of [`DELAY_PORT`], in the server's directory.
pub const DELAY_LOG: &str = "delay.log";

/// nginx in a lab container, answering `NAME\n` on [`WEB_PORT`] and [`DELAY_PORT`]. Stopped on
/// drop (through its pid file, once its command line is seen to be this configuration's).
pub struct Nginx {
    pub dir: PathBuf,
    conf: PathBuf,
    wrapper: Option<KillOnDrop>,
}

fn config(name: &str, dir: &Path) -> String {
    let d = dir.display();
    format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log;\n\
         events {{ worker_connections 8192; }}\n\
         http {{\n  access_log off;\n  keepalive_requests 10000000;\n  keepalive_timeout 300s;\n\
         \x20 client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
         \x20 fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
         \x20 log_format ms '$msec';\n\
         \x20 server {{ listen {WEB_PORT} backlog=4096; location / {{ default_type text/plain; \
         return 200 \"{name}\\n\"; }} }}\n\
         \x20 server {{ listen {DELAY_PORT} backlog=4096; access_log {d}/{DELAY_LOG} ms; \
         location / {{ default_type text/plain; return 200 \"{name}\\n\"; }} }}\n}}\n"
    )
}

impl Nginx {
    /// Starts nginx in container `name` (`namespace`) with its files in `dir` (made here);
    /// returns once both ports listen.
    pub fn start(vx: &Vxmesh, name: &str, namespace: &str, dir: &Path) -> Result<Nginx> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config(name, dir))?;
        let conf_s = conf.to_string_lossy().into_owned();
        let dir_s = dir.to_string_lossy().into_owned();
        let mut c = vx.exec(name, &["nginx", "-c", &conf_s, "-p", &dir_s]);
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut n = Nginx {
            dir: dir.to_path_buf(),
            conf,
            wrapper: Some(KillOnDrop::spawn(&mut c)?),
        };
        let start = Instant::now();
        while !(listens(namespace, WEB_PORT)? && listens(namespace, DELAY_PORT)?) {
            if let Some(w) = n.wrapper.as_mut() {
                if let Some(status) = w.child.try_wait()? {
                    bail!(
                        "nginx in {name} exited ({status}): {}",
                        std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
                    );
                }
            }
            if start.elapsed() > Duration::from_secs(10) {
                bail!("nginx in {name} does not listen after 10 s");
            }
            util::check_interrupted()?;
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(n)
    }

    /// The access log of the delay port.
    pub fn delay_log(&self) -> PathBuf {
        self.dir.join(DELAY_LOG)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // `lab exec` waits for nginx: signal nginx itself, then the wrapper exits.
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("nginx.pid")) {
            if let Ok(pid) = pid.trim().parse::<u32>() {
                let conf = self.conf.to_string_lossy().into_owned();
                if util::cmdline(pid).is_some_and(|args| args.contains(&conf)) {
                    util::signal(pid, libc::SIGTERM);
                }
            }
        }
        if let Some(mut w) = self.wrapper.take() {
            let _ = util::wait_timeout(&mut w.child, Duration::from_secs(5));
        }
    }
}

/// Whether something in network namespace `ns` listens on TCP `port`.
pub(crate) fn listens(ns: &str, port: u16) -> Result<bool> {
    let out = util::output(&mut util::cmd(
        "ss",
        ["-N", ns, "-H", "-ltn", "sport", "=", &format!(":{port}")],
    ))?;
    Ok(!out.trim().is_empty())
}

/// What one wrk run reported.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WrkRun {
    /// `Requests/sec:`.
    pub rps: f64,
    /// `N requests in …`.
    pub requests: u64,
    /// `Socket errors:` connect + read + write + timeout.
    pub errors: u64,
    /// `Non-2xx or 3xx responses:`.
    pub bad_status: u64,
}

/// Parses wrk 4's summary.
pub fn parse_wrk(out: &str) -> Result<WrkRun> {
    let mut r = WrkRun::default();
    let mut seen_rps = false;
    for line in out.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            r.rps = v.trim().parse().context("Requests/sec")?;
            seen_rps = true;
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            r.errors = v
                .split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum();
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            r.bad_status = v.trim().parse().context("Non-2xx")?;
        } else if line.contains(" requests in ") {
            r.requests = line
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .context("requests")?;
        }
    }
    if !seen_rps {
        bail!("wrk printed no Requests/sec: {out}");
    }
    Ok(r)
}

/// Runs `wrk ARGS` in container `client` (in its cgroup) and parses its summary.
pub fn wrk(vx: &Vxmesh, client: &str, args: &[String]) -> Result<WrkRun> {
    let mut argv = vec!["wrk"];
    argv.extend(args.iter().map(String::as_str));
    let mut c = vx.exec(client, &argv);
    util::say(&format!("$ {}", util::display(&c)));
    let out = util::output(&mut c)?;
    parse_wrk(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "Running 2s test @ http://10.10.1.9/
  4 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.55ms    1.01ms  22.01ms   87.50%
    Req/Sec    10.52k     1.43k   13.25k    71.25%
  83775 requests in 2.00s, 13.02MB read
  Socket errors: connect 0, read 3, write 1, timeout 2
  Non-2xx or 3xx responses: 4
Requests/sec:  41842.11
Transfer/sec:      6.50MB
";

    #[test]
    fn parses_the_summary_of_wrk_4() {
        assert_eq!(
            parse_wrk(OUT).unwrap(),
            WrkRun {
                rps: 41842.11,
                requests: 83775,
                errors: 6,
                bad_status: 4
            }
        );
        assert!(parse_wrk("unable to connect to 10.0.0.1:80").is_err());
    }

    #[test]
    fn the_configuration_names_the_server_and_both_ports() {
        let c = config("h2-c1", Path::new("/tmp/x"));
        assert!(c.contains("listen 80 backlog=4096"));
        assert!(c.contains("listen 8080 backlog=4096; access_log /tmp/x/delay.log ms"));
        assert!(c.contains("return 200 \"h2-c1\\n\""));
        assert!(c.contains("log_format ms '$msec'"));
    }
}
