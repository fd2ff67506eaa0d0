//! Makes a SQLite store unreachable for a while: `store_lock STORE_DB SECONDS`.
//!
//! It takes, as a write lock held by this process, every lock byte of the store's WAL index
//! (`STORE_DB-shm`, bytes 120..128: the write, checkpoint and recovery locks and the five read
//! marks; SQLite's wal.c, WALINDEX_LOCK_OFFSET and SQLITE_SHM_NLOCK), so no other process can
//! begin a read or a write transaction: each waits in SQLite's busy handler until the bytes
//! are free. Prints `locked` once it holds them (it waits for a moment between two other
//! transactions), holds them SECONDS, prints `released` and exits (closing the file releases
//! the locks). The store's contents are never touched.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Where the lock bytes start in the WAL index, and how many there are.
const LOCK_OFFSET: i64 = 120;
const LOCKS: i64 = 8;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(db), Some(secs)) = (args.get(1), args.get(2).and_then(|s| s.parse::<f64>().ok()))
    else {
        eprintln!("usage: store_lock STORE_DB SECONDS");
        std::process::exit(2);
    };
    let shm = format!("{db}-shm");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&shm)
        .unwrap_or_else(|e| panic!("open {shm}: {e}"));
    let lock = libc::flock {
        l_type: libc::F_WRLCK as i16,
        l_whence: libc::SEEK_SET as i16,
        l_start: LOCK_OFFSET,
        l_len: LOCKS,
        l_pid: 0,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // SAFETY: F_SETLK with a valid flock on an open file descriptor.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &lock) } == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "could not lock {shm} in 30 s");
        std::thread::sleep(Duration::from_micros(200));
    }
    println!("locked");
    std::io::stdout().flush().expect("stdout");
    std::thread::sleep(Duration::from_secs_f64(secs));
    drop(file);
    println!("released");
}
