//! Small helpers: running commands with an echo, timeouts, Ctrl-C, paths.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Catch SIGINT/SIGTERM so that a Ctrl-C kills the running child (it shares
/// our process group) but lets us run our clean-up (`lab down`, namespace
/// removal) before exiting. A handler, not SIG_IGN: handlers are reset on
/// exec, so children still die from the signal.
pub fn install_interrupt_handler() {
    let handler = on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores into an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

pub fn check_interrupted() -> Result<()> {
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

pub fn require_root(what: &str) -> Result<()> {
    if !is_root() {
        bail!(
            "`cargo xtask {what}` must run as root (it installs packages and creates network \
             namespaces); try `sudo -E cargo xtask {what}`"
        );
    }
    Ok(())
}

/// The workspace root (the parent of xtask/).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                repo_root().join(dir)
            }
        }
        None => repo_root().join("target"),
    }
}

/// The cargo that started us (cargo sets $CARGO), or the one on $PATH.
pub fn cargo() -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut c = Command::new(program);
    c.current_dir(repo_root());
    c
}

pub fn cmd<I, S>(program: &str, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut c = Command::new(program);
    c.args(args);
    c
}

/// `ip netns exec NS PROGRAM ARGS...`
pub fn in_netns<I, S>(ns: &str, program: &str, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, program]).args(args);
    c
}

/// A shell-like rendering of a command line, for echoing.
pub fn display(c: &Command) -> String {
    let mut parts = vec![c.get_program().to_string_lossy().into_owned()];
    parts.extend(c.get_args().map(|a| {
        let a = a.to_string_lossy();
        if a.is_empty()
            || a.contains(|ch: char| ch.is_whitespace() || "'\"$`\\*?;&|<>()".contains(ch))
        {
            format!("'{}'", a.replace('\'', "'\\''"))
        } else {
            a.into_owned()
        }
    }));
    parts.join(" ")
}

pub fn heading(text: &str) {
    println!("\n==> {text}");
    flush();
}

pub fn say(text: &str) {
    println!("    {text}");
    flush();
}

pub fn flush() {
    let _ = std::io::stdout().flush();
}

fn echo(c: &Command) {
    println!("    $ {}", display(c));
    flush();
}

fn status_error(c: &Command, status: ExitStatus) -> anyhow::Error {
    anyhow::anyhow!("`{}` failed ({status})", display(c))
}

/// Echo, run with inherited stdio, fail on non-zero exit.
pub fn run(c: &mut Command) -> Result<()> {
    check_interrupted()?;
    echo(c);
    let status = c
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("cannot start `{}`", display(c)))?;
    check_interrupted()?;
    if !status.success() {
        return Err(status_error(c, status));
    }
    Ok(())
}

/// Echo, run with inherited stdio, return whether it succeeded.
pub fn run_ok(c: &mut Command) -> Result<bool> {
    check_interrupted()?;
    echo(c);
    let status = c
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("cannot start `{}`", display(c)))?;
    check_interrupted()?;
    Ok(status.success())
}

/// Run quietly and capture everything, whatever the exit status.
pub fn capture(c: &mut Command) -> Result<Output> {
    check_interrupted()?;
    let out = c
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{}`", display(c)))?;
    check_interrupted()?;
    Ok(out)
}

/// Run quietly, return stdout; on failure the error carries stderr.
pub fn output(c: &mut Command) -> Result<String> {
    let out = capture(c)?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!(
            "`{}` failed ({}): {}",
            display(c),
            out.status,
            stderr.trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Run quietly (echoing only on failure), fail on non-zero exit.
pub fn run_quiet(c: &mut Command) -> Result<()> {
    output(c).map(|_| ())
}

/// Wait for a child at most `limit`; kill it if it is still running then.
/// Returns None when it had to be killed.
pub fn wait_timeout(child: &mut Child, limit: Duration) -> Result<Option<ExitStatus>> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if start.elapsed() >= limit || interrupted() {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A background child that is killed and reaped when dropped.
pub struct KillOnDrop {
    pub child: Child,
}

impl KillOnDrop {
    pub fn spawn(c: &mut Command) -> Result<Self> {
        check_interrupted()?;
        echo(c);
        let child = c
            .spawn()
            .with_context(|| format!("cannot start `{}`", display(c)))?;
        Ok(Self { child })
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The median of `values` (the upper one of the two middle values for an even count), or
/// None when there is none.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// The median, lowest and highest of `values`, or None when there is none.
pub fn median_range(values: &[f64]) -> Option<(f64, f64, f64)> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    Some((median(&v)?, v[0], v[v.len() - 1]))
}

/// The command line of process `pid`, or None when it is gone (or unreadable).
pub fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// Sends `sig` to process `pid` (callers check first that it is the process they started).
pub fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(3.0));
        assert_eq!(median(&[]), None);
        assert_eq!(median_range(&[3.0, 1.0, 2.0]), Some((2.0, 1.0, 3.0)));
        assert_eq!(median_range(&[]), None);
    }

    #[test]
    fn cmdline_of_this_process() {
        let me = cmdline(std::process::id()).unwrap();
        assert!(!me.is_empty());
        assert!(cmdline(u32::MAX).is_none());
    }
}
