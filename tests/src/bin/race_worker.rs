//! A helper process for the race tests: runs one contended catalog operation
//! (`vxmesh_tests::race::RaceOp`) as soon as the start file exists, so that many processes
//! released together race for the same allocation.
//!
//! ```text
//! race_worker STORE OP N GO_FILE
//! ```
//!
//! Prints one JSON line: `{"n":3,"ok":true,"value":"100.88.0.4"}` or
//! `{"n":3,"ok":false,"error":"..."}`. Exit status 0 either way; 2 on bad arguments or when the
//! store cannot be opened.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use overlay_core::{Catalog, SqliteStore};
use vxmesh_tests::race::{wait_for, RaceOp};

const USAGE: &str = "usage: race_worker STORE tunnel|vni|subnet|underlay|mac N GO_FILE";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [store, op, n, go] = args.as_slice() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let (Some(op), Ok(n)) = (RaceOp::parse(op), n.parse::<u32>()) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let store = match SqliteStore::open(store) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("race_worker: {e}");
            return ExitCode::from(2);
        }
    };
    let catalog = Catalog::new(Arc::new(store));
    wait_for(Path::new(go));
    let line = match op.run(&catalog, n) {
        Ok(value) => serde_json::json!({ "n": n, "ok": true, "value": value }),
        Err(error) => serde_json::json!({ "n": n, "ok": false, "error": error }),
    };
    println!("{line}");
    ExitCode::SUCCESS
}
