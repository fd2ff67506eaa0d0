//! A helper process for the concurrency tests: allocates endpoints through the catalog, from
//! several threads at once, the way several CNI plugin calls on one host would.
//!
//! ```text
//! alloc_worker STORE NETWORK NODE COUNT THREADS PREFIX
//! ```
//!
//! Opens the SQLite store at STORE and adds COUNT endpoints named `PREFIX-<n>` (n = 0..COUNT)
//! to NETWORK on NODE, each with an address chosen by IPAM, spread over THREADS threads that
//! start together (a barrier). For every allocation it prints one JSON line on stdout, as soon
//! as it is done:
//!
//! ```text
//! {"id":"p-3","ok":true,"ip":"10.1.0.5","mac":"0a:58:0a:01:00:05"}
//! {"id":"p-4","ok":false,"error":"network 'n' has no free address: ..."}
//! ```
//!
//! When the environment variable `ALLOC_WORKER_GO` names a file, the threads wait for that
//! file to exist before they start, so that several worker processes can be released at the
//! same moment. Exit status: 0 when every allocation succeeded, 1 when some failed, 2 on bad
//! arguments or when the store cannot be opened.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use overlay_core::{Catalog, EndpointSpec, SqliteStore};
use vxmesh_tests::race::wait_for;

const USAGE: &str = "usage: alloc_worker STORE NETWORK NODE COUNT THREADS PREFIX";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [store, network, node, count, threads, prefix] = args.as_slice() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let (Ok(count), Ok(threads)) = (count.parse::<usize>(), threads.parse::<usize>()) else {
        eprintln!("COUNT and THREADS must be numbers\n{USAGE}");
        return ExitCode::from(2);
    };
    if threads == 0 {
        eprintln!("THREADS must be at least 1\n{USAGE}");
        return ExitCode::from(2);
    }
    let store = match SqliteStore::open(store) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("alloc_worker: {e}");
            return ExitCode::from(2);
        }
    };
    let catalog = Catalog::new(Arc::new(store));
    let go = std::env::var_os("ALLOC_WORKER_GO").map(PathBuf::from);
    let barrier = Arc::new(Barrier::new(threads));
    let failures = Arc::new(AtomicUsize::new(0));

    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let catalog = catalog.clone();
            let barrier = barrier.clone();
            let failures = failures.clone();
            let (network, node, prefix, go) =
                (network.clone(), node.clone(), prefix.clone(), go.clone());
            std::thread::spawn(move || {
                if let Some(go) = &go {
                    wait_for(go);
                }
                barrier.wait();
                // Thread t takes allocations t, t + THREADS, t + 2 * THREADS, ...
                for n in (t..count).step_by(threads) {
                    let id = format!("{prefix}-{n}");
                    let line = match catalog.add_endpoint(&EndpointSpec {
                        network: network.clone(),
                        node: node.clone(),
                        id: Some(id.clone()),
                        ip: None,
                        mac: None,
                        attach: false,
                        cni: None,
                        mtu: None,
                    }) {
                        Ok(e) => serde_json::json!({
                            "id": e.id,
                            "ok": true,
                            "ip": e.ip.to_string(),
                            "mac": e.mac.to_string(),
                        }),
                        Err(e) => {
                            failures.fetch_add(1, Ordering::Relaxed);
                            serde_json::json!({ "id": id, "ok": false, "error": e.to_string() })
                        }
                    };
                    // One write per line, under stdout's lock: lines never interleave.
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{line}");
                    let _ = out.flush();
                }
            })
        })
        .collect();
    for h in handles {
        if h.join().is_err() {
            failures.fetch_add(1, Ordering::Relaxed);
        }
    }
    if failures.load(Ordering::Relaxed) == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
