//! Naming a store: an SQLite file or an etcd cluster, and opening it.

use std::path::PathBuf;
use std::sync::Arc;

use super::etcd::{parse_user, EtcdConfig, EtcdStore, TlsFiles, SCHEME};
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

    /// Applies TLS files, credentials and a time limit to an etcd store.
    ///
    /// Errors: [`StoreError::Config`] naming the option: any of them given for an SQLite
    /// store, a certificate without its key (or the reverse), a certificate without a CA, a
    /// user without a password, a zero timeout.
    pub fn with_options(self, o: &StoreOptions) -> Result<StoreSpec, StoreError> {
        let bad = |field: &str, value: &str, reason: &str| StoreError::Config {
            field: field.into(),
            value: value.into(),
            reason: reason.into(),
        };
        let mut config = match self {
            StoreSpec::Etcd(c) => c,
            StoreSpec::Sqlite(p) => {
                return match o.first_given() {
                    Some((field, value)) => Err(bad(
                        field,
                        &value,
                        &format!("applies to an etcd store only, not {}", p.display()),
                    )),
                    None => Ok(StoreSpec::Sqlite(p)),
                }
            }
        };
        let shown = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        let identity = match (&o.cert, &o.key) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            (None, None) => None,
            (Some(c), None) => {
                return Err(bad(
                    "store-cert",
                    &c.display().to_string(),
                    "needs --store-key",
                ))
            }
            (None, Some(k)) => {
                return Err(bad(
                    "store-key",
                    &k.display().to_string(),
                    "needs --store-cert",
                ))
            }
        };
        config.tls = match (&o.ca, identity) {
            (Some(ca), identity) => Some(TlsFiles {
                ca: ca.clone(),
                identity,
            }),
            (None, None) => None,
            (None, Some(_)) => {
                return Err(bad(
                    "store-cert",
                    &shown(&o.cert).unwrap_or_default(),
                    "needs --store-ca (the CA of the members' certificates)",
                ))
            }
        };
        config.user = match (&o.user, &o.password) {
            (Some(u), p) => Some(parse_user("store-user", u, p.as_deref())?),
            (None, Some(_)) => return Err(bad("store-password", "***", "needs --store-user")),
            (None, None) => None,
        };
        if let Some(t) = o.timeout {
            if t.is_zero() {
                return Err(bad("store-timeout", "0", "must be more than 0"));
            }
            config.timeout = t;
        }
        Ok(StoreSpec::Etcd(config))
    }
}

/// How to reach an etcd store beyond its endpoints, as etcdctl takes it (`--cacert`,
/// `--cert`, `--key`, `--user USER[:PASSWORD]`, `--password`); the CLI's `--store-ca`,
/// `--store-cert`, `--store-key`, `--store-user`, `--store-password`, `--store-timeout`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreOptions {
    /// PEM file of the CA that signed the members' certificates; turns TLS on.
    pub ca: Option<PathBuf>,
    /// PEM files of a client certificate and its key.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// `USER` or `USER:PASSWORD`.
    pub user: Option<String>,
    pub password: Option<String>,
    /// Time limit of each operation (default 5 s).
    pub timeout: Option<std::time::Duration>,
}

impl StoreOptions {
    fn first_given(&self) -> Option<(&'static str, String)> {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        [
            ("store-ca", path(&self.ca)),
            ("store-cert", path(&self.cert)),
            ("store-key", path(&self.key)),
            ("store-user", self.user.clone()),
            (
                "store-password",
                self.password.as_ref().map(|_| "***".into()),
            ),
            ("store-timeout", self.timeout.map(|t| format!("{t:?}"))),
        ]
        .into_iter()
        .find_map(|(f, v)| v.map(|v| (f, v)))
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

    #[test]
    fn options_apply_to_etcd_only() {
        let etcd = StoreSpec::parse("etcd://h:1").unwrap();
        let o = StoreOptions {
            ca: Some("/ca.pem".into()),
            cert: Some("/c.pem".into()),
            key: Some("/k.pem".into()),
            user: Some("root:pw".into()),
            ..Default::default()
        };
        let StoreSpec::Etcd(c) = etcd.clone().with_options(&o).unwrap() else {
            panic!()
        };
        assert_eq!(c.tls.unwrap().identity.unwrap().1, PathBuf::from("/k.pem"));
        assert_eq!(c.user.unwrap(), ("root".into(), "pw".into()));
        let e = StoreSpec::parse("/x.db")
            .unwrap()
            .with_options(&o)
            .unwrap_err();
        assert!(
            e.to_string().starts_with("invalid store-ca '/ca.pem'"),
            "{e}"
        );
        for (o, field) in [
            (
                StoreOptions {
                    cert: Some("/c".into()),
                    ..Default::default()
                },
                "store-cert",
            ),
            (
                StoreOptions {
                    cert: Some("/c".into()),
                    key: Some("/k".into()),
                    ..Default::default()
                },
                "store-cert",
            ),
            (
                StoreOptions {
                    user: Some("root".into()),
                    ..Default::default()
                },
                "store-user",
            ),
            (
                StoreOptions {
                    password: Some("x".into()),
                    ..Default::default()
                },
                "store-password",
            ),
        ] {
            let e = etcd.clone().with_options(&o).unwrap_err().to_string();
            assert!(e.starts_with(&format!("invalid {field} ")), "{e}");
        }
    }
}
