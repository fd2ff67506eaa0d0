//! tcpdump as an outside witness: capture inside a namespace to a file, then read it back both
//! decoded by tcpdump itself and frame by frame.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::pcap;

pub struct Capture {
    child: Option<Child>,
    file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Capture {
    /// Starts `tcpdump -i IFACE -w FILE FILTER` inside `netns`; returns once it is listening.
    pub fn start(netns: &str, iface: &str, filter: &str) -> Capture {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("cap.pcap");
        let mut child = Command::new("ip")
            .args([
                // --immediate-mode: without it libpcap hands packets over in ring blocks
                // (up to 1 s late), and a capture stopped soon after short traffic is empty.
                "netns",
                "exec",
                netns,
                "tcpdump",
                "--immediate-mode",
                "-i",
                iface,
                "-U",
                "-n",
                "-s",
                "0",
                "-w",
            ])
            .arg(&file)
            .args(filter.split_whitespace())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump (install it with cargo xtask setup)");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stderr).lines();
            let mut told = false;
            for line in lines.by_ref().map_while(Result::ok) {
                if !told && line.contains("listening on") {
                    let _ = tx.send(());
                    told = true;
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("tcpdump did not start listening");
        Capture {
            child: Some(child),
            file,
            _dir: dir,
        }
    }

    /// Stops tcpdump (SIGINT, so it flushes) and returns the captured frames.
    pub fn stop(&mut self) -> Vec<Vec<u8>> {
        if let Some(mut child) = self.child.take() {
            // Let the last packets reach the file.
            std::thread::sleep(Duration::from_millis(300));
            unsafe {
                libc::kill(child.id() as i32, libc::SIGINT);
            }
            let _ = child.wait();
        }
        let bytes = std::fs::read(&self.file).expect("capture file");
        pcap::frames(&bytes)
    }

    /// tcpdump's own decoding of the capture (after `stop`), one line per packet.
    pub fn decoded(&self) -> String {
        crate::run_ok("tcpdump", &["-nn", "-r", self.file.to_str().unwrap()])
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
