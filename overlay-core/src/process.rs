//! Stopping a process without ever signalling the wrong one.
//!
//! A PID is only a name, and the kernel hands it to a new process once the old one is gone and
//! reaped. A PID written in a state file is therefore proof of nothing: the agent it named may
//! have died and an unrelated process may have its number now. The rule here: a process is
//! signalled only through a pidfd (pidfd_open(2), Linux 5.3), which pins one process, and only
//! after the process that pidfd refers to has been shown to be the one expected: the same start
//! time (field 22 of /proc/PID/stat, clock ticks since boot, recorded when it was started) and
//! a command line the caller recognises. Checking after the pidfd is open closes the window
//! between the check and the signal.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// Who a process is: its PID and when it started. Two processes with the same PID never have
/// the same start time, so the pair names one process for the life of the machine's boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessIdentity {
    pub pid: u32,
    /// Start time after boot, in clock ticks (`/proc/PID/stat` field 22).
    pub start_time: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// No such process (or it has exited and been reaped).
    #[error("no process {0}")]
    Gone(u32),
    #[error("process {pid}: {context}: {source}")]
    Io {
        pid: u32,
        context: &'static str,
        source: io::Error,
    },
    #[error("process {pid}: cannot parse /proc/{pid}/stat")]
    BadStat { pid: u32 },
}

impl ProcessIdentity {
    /// Reads the identity of the process that now has `pid`. Errors: `Gone` when there is none.
    pub fn of(pid: u32) -> Result<ProcessIdentity, ProcessError> {
        let stat = read_proc(pid, "stat")?;
        let stat = String::from_utf8_lossy(&stat);
        // The command name (field 2) is in parentheses and may hold spaces or ')': the fields
        // after it start after the last ')'. Field 3 is then the first of `rest`.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, r)| r)
            .ok_or(ProcessError::BadStat { pid })?;
        let start_time = rest
            .split_whitespace()
            .nth(22 - 3)
            .and_then(|f| f.parse().ok())
            .ok_or(ProcessError::BadStat { pid })?;
        Ok(ProcessIdentity { pid, start_time })
    }
}

/// True when no process has `pid`, or it has exited and waits to be reaped (a zombie: state
/// `Z` or `X` in `/proc/PID/stat`).
pub fn is_exited(pid: u32) -> bool {
    match read_proc(pid, "stat") {
        Ok(stat) => {
            let stat = String::from_utf8_lossy(&stat);
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next());
            matches!(state, Some("Z" | "X"))
        }
        Err(_) => true,
    }
}

/// The command line of process `pid`, one string per argument (lossy UTF-8).
pub fn cmdline(pid: u32) -> Result<Vec<String>, ProcessError> {
    let raw = read_proc(pid, "cmdline")?;
    Ok(raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect())
}

fn read_proc(pid: u32, file: &'static str) -> Result<Vec<u8>, ProcessError> {
    std::fs::read(format!("/proc/{pid}/{file}")).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            ProcessError::Gone(pid)
        } else {
            ProcessError::Io {
                pid,
                context: file,
                source,
            }
        }
    })
}

/// A handle on one process (pidfd_open(2)): signals through it reach that process or none.
#[derive(Debug)]
pub struct Pidfd {
    pid: u32,
    fd: OwnedFd,
}

impl Pidfd {
    /// Opens a pidfd for the process that now has `pid`. Errors: `Gone` when there is none.
    pub fn open(pid: u32) -> Result<Pidfd, ProcessError> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::ESRCH) => ProcessError::Gone(pid),
                _ => ProcessError::Io {
                    pid,
                    context: "pidfd_open",
                    source: e,
                },
            });
        }
        // SAFETY: the syscall returned a new file descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        Ok(Pidfd { pid, fd })
    }

    /// Opens a pidfd for `expected.pid` and keeps it only if the process behind it is the
    /// expected one: same start time (when `expected.start_time` is known, i.e. not 0) and a
    /// command line `cmdline_ok` accepts. `Ok(None)` when it is another process, or none.
    pub fn open_if(
        expected: ProcessIdentity,
        cmdline_ok: impl Fn(&[String]) -> bool,
    ) -> Result<Option<Pidfd>, ProcessError> {
        let pidfd = match Pidfd::open(expected.pid) {
            Ok(p) => p,
            Err(ProcessError::Gone(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        // The pidfd now pins one process; these reads describe that process (or, if it has
        // exited since, fail or describe a process the pidfd no longer matches — then the
        // signal below fails with ESRCH instead of reaching anyone).
        let same = match (ProcessIdentity::of(expected.pid), cmdline(expected.pid)) {
            (Ok(now), Ok(args)) => {
                (expected.start_time == 0 || now.start_time == expected.start_time)
                    && cmdline_ok(&args)
            }
            (Err(ProcessError::Gone(_)), _) | (_, Err(ProcessError::Gone(_))) => false,
            (Err(e), _) | (_, Err(e)) => return Err(e),
        };
        Ok(same.then_some(pidfd))
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to this process (pidfd_send_signal(2)). A process
    /// that has already exited is not an error.
    pub fn signal(&self, signal: i32) -> Result<(), ProcessError> {
        // SAFETY: pidfd_send_signal(pidfd, sig, info = NULL, flags = 0).
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ESRCH) {
                return Err(ProcessError::Io {
                    pid: self.pid,
                    context: "pidfd_send_signal",
                    source: e,
                });
            }
        }
        Ok(())
    }

    /// Has the process exited? (A pidfd polls readable once it has, reaped or not.)
    pub fn exited(&self) -> bool {
        let mut fds = [libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd, timeout 0.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) };
        n > 0 && fds[0].revents & (libc::POLLIN | libc::POLLHUP) != 0
    }

    /// Waits up to `limit` for the process to exit; returns whether it did.
    pub fn wait_exit(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.exited() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Stops processes gracefully: SIGTERM to each, up to `grace` for all to exit, then SIGKILL to
/// those still there. Every pidfd must come from [`Pidfd::open_if`]. Returns the errors met
/// (every process is tried even when one fails).
pub fn terminate_all(pidfds: &[Pidfd], grace: Duration) -> Vec<ProcessError> {
    let mut errors = Vec::new();
    for p in pidfds {
        if let Err(e) = p.signal(libc::SIGTERM) {
            errors.push(e);
        }
    }
    let deadline = Instant::now() + grace;
    while pidfds.iter().any(|p| !p.exited()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for p in pidfds.iter().filter(|p| !p.exited()) {
        if let Err(e) = p.signal(libc::SIGKILL) {
            errors.push(e);
        }
        p.wait_exit(Duration::from_secs(2));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn identity_and_signal_reach_only_the_expected_process() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        let me = ProcessIdentity::of(pid).unwrap();
        assert!(me.start_time > 0);
        // A vfork parent resumes before exec has set up the new command line: wait for it.
        let deadline = Instant::now() + Duration::from_secs(5);
        while cmdline(pid).unwrap().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(cmdline(pid).unwrap(), ["sleep", "30"]);
        // Another start time: not the process we mean, nothing is signalled.
        let other = ProcessIdentity {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(Pidfd::open_if(other, |_| true).unwrap().is_none());
        // The right start time but a command line we do not recognise: not signalled either.
        assert!(Pidfd::open_if(me, |a| a[0] == "agent").unwrap().is_none());
        assert!(child.try_wait().unwrap().is_none(), "sleep must still run");
        let p = Pidfd::open_if(me, |a| a[0] == "sleep").unwrap().unwrap();
        assert!(!p.exited());
        assert!(terminate_all(&[p], Duration::from_secs(5)).is_empty());
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGTERM));
    }

    #[test]
    fn a_gone_process_is_none_not_an_error() {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(matches!(
            ProcessIdentity::of(pid),
            Err(ProcessError::Gone(_))
        ));
        let expected = ProcessIdentity { pid, start_time: 1 };
        assert!(Pidfd::open_if(expected, |_| true).unwrap().is_none());
    }
}
