//! The `vxmesh` CLI on a store of its own in a temporary directory (no lab, no kernel
//! state): run commands, read their JSON, and take the store's exact state (revision and
//! every key) to show that a refused command changed nothing.

use std::path::PathBuf;
use std::process::Output;

use overlay_core::store::{KeyValue, Revision};
use overlay_core::{SqliteStore, Store};

use crate::{run, vxmesh_bin};

/// A temporary store; removed with its directory on drop.
pub struct StoreCli {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

/// Everything in a store: its revision and every key with its revisions.
#[derive(Debug, PartialEq, Eq)]
pub struct StoreState {
    pub revision: Revision,
    pub kvs: Vec<KeyValue>,
}

impl Default for StoreCli {
    fn default() -> Self {
        Self::new()
    }
}

impl StoreCli {
    pub fn new() -> StoreCli {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("store.db");
        StoreCli { _dir: dir, path }
    }

    /// `vxmesh --store PATH ARGS…`, whatever its exit status.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut all = vec!["--store", self.path.to_str().expect("UTF-8 path")];
        all.extend_from_slice(args);
        run(vxmesh_bin().to_str().expect("UTF-8 path"), &all)
    }

    /// Runs `args` and returns stdout; panics with the output when it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "vxmesh {args:?} failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Runs `--json ARGS…` and parses stdout; panics when it fails or is not JSON.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.ok(&all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
    }

    /// The store's revision and every key, read straight from the database.
    pub fn state(&self) -> StoreState {
        let store = SqliteStore::open(&self.path).expect("open the store");
        StoreState {
            revision: store.revision().expect("store revision"),
            kvs: store.range("/").expect("read every key").kvs,
        }
    }

    /// The keys under `prefix`.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let store = SqliteStore::open(&self.path).expect("open the store");
        let kvs = store.range(prefix).expect("read keys").kvs;
        kvs.into_iter().map(|kv| kv.key).collect()
    }
}
