//! Naming a store: an SQLite file or an etcd cluster, and opening it.

use std::path::PathBuf;
use std::sync::Arc;

use super::etcd::{EtcdConfig, EtcdStore, SCHEME};
use super::{SqliteStore, Store, StoreError};

/// Where the desired state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// The embedded store: an SQLite database file.
    Sqlite(PathBuf),
    /// An etcd v3 cluster.
    Etcd(EtcdConfig),
}

impl StoreSpec {
    /// Parses `etcd://HOST:PORT[,HOST:PORT…]`, `sqlite:PATH`, or a plain `PATH` (SQLite).
    ///
    /// Errors: [`StoreError::Config`] naming `store` (an empty value, a bad etcd endpoint).
    pub fn parse(spec: &str) -> Result<StoreSpec, StoreError> {
        let bad = |reason: &str| StoreError::Config {
            field: "store".into(),
            value: spec.into(),
            reason: reason.into(),
        };
        if spec.starts_with(SCHEME) {
            return Ok(StoreSpec::Etcd(EtcdConfig::parse(spec)?));
        }
        let path = spec.strip_prefix("sqlite:").unwrap_or(spec);
        if path.is_empty() {
            return Err(bad("is empty"));
        }
        if path.contains('\0') {
            return Err(bad("contains NUL"));
        }
        if spec.contains("://") {
            return Err(bad(&format!(
                "unknown scheme (expected {SCHEME}HOST:PORT[,HOST:PORT…], sqlite:PATH or a path)"
            )));
        }
        Ok(StoreSpec::Sqlite(PathBuf::from(path)))
    }

    /// True for an etcd cluster.
    pub fn is_etcd(&self) -> bool {
        matches!(self, StoreSpec::Etcd(_))
    }
}

impl std::fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreSpec::Sqlite(p) => write!(f, "{}", p.display()),
            StoreSpec::Etcd(c) => write!(f, "{}", c.url()),
        }
    }
}

/// Opens the store `spec` names (creating an SQLite file and its directory if needed).
pub fn open(spec: &StoreSpec) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match spec {
        StoreSpec::Sqlite(path) => Arc::new(SqliteStore::open(path)?),
        StoreSpec::Etcd(config) => Arc::new(EtcdStore::connect(config.clone())?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_kinds() {
        assert_eq!(
            StoreSpec::parse("/var/lib/x.db").unwrap(),
            StoreSpec::Sqlite("/var/lib/x.db".into())
        );
        assert_eq!(
            StoreSpec::parse("sqlite:rel.db").unwrap(),
            StoreSpec::Sqlite("rel.db".into())
        );
        let e = StoreSpec::parse("etcd://127.0.0.1:2379").unwrap();
        assert!(e.is_etcd());
        assert_eq!(e.to_string(), "etcd://127.0.0.1:2379");
        for bad in ["", "sqlite:", "http://x:1", "etcd://x"] {
            assert!(StoreSpec::parse(bad).is_err(), "{bad}");
        }
    }
}
