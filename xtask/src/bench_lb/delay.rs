//! Part (c), second figure: the delay from `vxmesh service update NAME --add-backend E`
//! returning to the first request the new backend serves, in the lab of part (b).
//!
//! Service `probe` (port 8080) starts on three backends; a client loop in h1-c1 (wrk, one
//! new connection per request, in the container's cgroup) hits its VIP without pause; the
//! fourth backend is added with the CLI. Every backend's nginx logs each request on 8080
//! with its time (`$msec`: wall clock, milliseconds); the delay is the first time in the new
//! backend's log minus the wall-clock time at which the CLI returned (same clock, same
//! machine). At a few thousand connections per second and a 1/4 share, the new backend's
//! first request comes well under a millisecond after its first table slot, so the figure
//! is the agent's: its store watch (a 50 ms poll of the SQLite store), a pass, the map
//! writes. The backend is removed again between rounds.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use super::nginx::{parse_wrk, Nginx, DELAY_PORT};
use super::web::{service, vip_of, wait_answers, CLIENT};
use super::{at_most, row, GOAL_ADD_BACKEND_MS};
use crate::bench::Options;
use crate::lab::{LabStatus, Vxmesh};
use crate::util::{self, heading, say, KillOnDrop};

/// How long each round's client loop runs, and when the backend is added in it.
const LOOP_S: u64 = 4;
const ADD_AFTER: Duration = Duration::from_millis(1500);

pub struct DelayFigures {
    /// Per round: ms from the CLI returning to the new backend's first request.
    delays_ms: Vec<f64>,
    /// Per round: ms the CLI took.
    update_ms: Vec<f64>,
    /// Per round: new connections per second of the client loop.
    rate: Vec<f64>,
    added: String,
}

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The first `$msec` logged after byte `offset` of `log`.
fn first_request_after(log: &std::path::Path, offset: u64) -> Result<Option<f64>> {
    let text = std::fs::read(log).unwrap_or_default();
    let tail = text.get(offset as usize..).unwrap_or_default();
    let first = String::from_utf8_lossy(tail)
        .lines()
        .find_map(|l| l.trim().parse::<f64>().ok());
    Ok(first)
}

fn log_len(log: &std::path::Path) -> u64 {
    std::fs::metadata(log).map_or(0, |m| m.len())
}

/// `backends`: the servers of part (b), the last of them is the one added.
pub fn run(
    vx: &Vxmesh,
    status: &LabStatus,
    opts: &Options,
    backends: &[(&str, &Nginx)],
) -> Result<DelayFigures> {
    let Some(((added, new_server), first)) = backends.split_last() else {
        bail!("no backends");
    };
    heading(&format!(
        "(c) delay from `service update --add-backend {added}` returning to its first request"
    ));
    let client = status.container(CLIENT)?;
    let port = format!("{DELAY_PORT}");
    let mut args = vec![
        "create",
        "probe",
        "--network",
        &client.network,
        "--port",
        &port,
    ];
    for (b, _) in first {
        args.extend(["--backend", *b]);
    }
    let vip = vip_of(&service(vx, &status.store, &args)?)?;
    let url = format!("http://{vip}:{DELAY_PORT}/");
    let names: Vec<&str> = first.iter().map(|(b, _)| *b).collect();
    wait_answers(vx, CLIENT, &url, &names)?;
    say(&format!(
        "service probe: VIP {vip}:{DELAY_PORT} on {}; {added} is added and removed each round",
        names.join(", ")
    ));
    let log = new_server.delay_log();
    let mut f = DelayFigures {
        delays_ms: Vec::new(),
        update_ms: Vec::new(),
        rate: Vec::new(),
        added: added.to_string(),
    };
    for round in 1..=opts.rounds {
        let offset = log_len(&log);
        let mut c = vx.exec(
            CLIENT,
            &[
                "wrk",
                "-t1",
                "-c4",
                "-d",
                &format!("{LOOP_S}s"),
                "--timeout",
                "2s",
                "-H",
                "Connection: close",
                &url,
            ],
        );
        c.stdout(Stdio::piped()).stderr(Stdio::null());
        let mut client_loop = KillOnDrop::spawn(&mut c)?;
        std::thread::sleep(ADD_AFTER);
        util::check_interrupted()?;
        let before = log_len(&log);
        let called = now_s();
        service(
            vx,
            &status.store,
            &["update", "probe", "--add-backend", added],
        )?;
        let returned = now_s();
        if util::wait_timeout(&mut client_loop.child, Duration::from_secs(LOOP_S + 10))?.is_none() {
            bail!("the client loop did not end");
        }
        let mut out = String::new();
        if let Some(mut s) = client_loop.child.stdout.take() {
            s.read_to_string(&mut out)?;
        }
        let rate = parse_wrk(&out).map(|r| r.rps).unwrap_or(0.0);
        let first_at = first_request_after(&log, offset)?
            .with_context(|| format!("{added} served no request in round {round}"))?;
        let delay_ms = (first_at - returned) * 1e3;
        say(&format!(
            "  round {round}: the CLI took {:.1} ms; first request on {added} {delay_ms:.1} ms \
             after it returned (client loop {rate:.0} connections/s{})",
            (returned - called) * 1e3,
            if before > offset {
                "; NOTE: it had requests before the update"
            } else {
                ""
            }
        ));
        f.delays_ms.push(delay_ms);
        f.update_ms.push((returned - called) * 1e3);
        f.rate.push(rate);
        service(
            vx,
            &status.store,
            &["update", "probe", "--rm-backend", added],
        )?;
        // Out of every table before the next round's client loop starts.
        std::thread::sleep(Duration::from_secs(1));
    }
    Ok(f)
}

pub fn report(f: &DelayFigures) {
    heading(&format!(
        "(c) results: `service update --add-backend {}` returned -> its first request, {} round(s)",
        f.added,
        f.delays_ms.len()
    ));
    let Some((d, lo, hi)) = util::median_range(&f.delays_ms) else {
        return;
    };
    row(
        "  delay (median)",
        format!(
            "{d:7.1} ms  [{lo:.1}..{hi:.1}]  goal <= {GOAL_ADD_BACKEND_MS:.0} ms: {}",
            at_most(d, GOAL_ADD_BACKEND_MS)
        ),
    );
    row(
        "  the CLI call itself (median)",
        format!("{:7.1} ms", util::median(&f.update_ms).unwrap_or(0.0)),
    );
    row(
        "  client loop (median)",
        format!(
            "{:7.0} new connections/s",
            util::median(&f.rate).unwrap_or(0.0)
        ),
    );
}
