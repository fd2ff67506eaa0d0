//! How to reach an etcd cluster: its client endpoints, TLS files, credentials and the timeout
//! of every operation.

use std::path::PathBuf;
use std::time::Duration;

use crate::store::StoreError;

/// The scheme of an etcd store specification.
pub const SCHEME: &str = "etcd://";

/// Default time limit of one store operation (a read, a transaction, a lease call; a watch
/// gets this on top of the time it was asked to wait).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// TLS towards etcd, from PEM files, as etcdctl's `--cacert`, `--cert` and `--key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA that signed the members' server certificates.
    pub ca: PathBuf,
    /// A client certificate and its key, for members run with `--client-cert-auth`.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// An etcd v3 cluster and how to talk to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Client URLs' `HOST:PORT`, one per member (the client balances over them).
    pub endpoints: Vec<String>,
    /// `None`: plain HTTP/2.
    pub tls: Option<TlsFiles>,
    /// User name and password (etcd's authentication; `None` when auth is off).
    pub user: Option<(String, String)>,
    /// Reach the members from this network namespace (a name under /run/netns), not the
    /// caller's: the client's threads enter it. The lab runs its members in a namespace of
    /// its own and names it so (`?netns=NAME` in the specification).
    pub netns: Option<String>,
    /// Time limit of each operation.
    pub timeout: Duration,
}

fn bad(field: &str, value: &str, reason: impl Into<String>) -> StoreError {
    StoreError::Config {
        field: field.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

impl EtcdConfig {
    /// Parses `etcd://HOST:PORT[,HOST:PORT…][?netns=NAME]` (no TLS, no credentials, the
    /// default timeout).
    ///
    /// Errors: [`StoreError::Config`] naming `store` when the scheme is not `etcd://`, the list
    /// is empty, or an endpoint lacks a host or a port in 1-65535, or has a path or user info,
    /// or a query parameter is not `netns=NAME`.
    pub fn parse(spec: &str) -> Result<EtcdConfig, StoreError> {
        let rest = spec
            .strip_prefix(SCHEME)
            .ok_or_else(|| bad("store", spec, format!("does not start with {SCHEME}")))?;
        let (list, query) = match rest.split_once('?') {
            Some((l, q)) => (l, Some(q)),
            None => (rest, None),
        };
        let mut endpoints = Vec::new();
        for ep in list.split(',') {
            endpoints.push(endpoint(spec, ep)?);
        }
        let mut netns = None;
        for param in query.into_iter().flat_map(|q| q.split('&')) {
            match param.split_once('=') {
                Some(("netns", name))
                    if !name.is_empty()
                        && !name.contains('/')
                        && !name.starts_with('.')
                        && netns.is_none() =>
                {
                    netns = Some(name.to_string())
                }
                _ => {
                    return Err(bad(
                        "store",
                        spec,
                        format!(
                            "unknown or bad parameter '{param}' (the only one is netns=NAME, \
                             once, a name under /run/netns)"
                        ),
                    ))
                }
            }
        }
        Ok(EtcdConfig {
            endpoints,
            tls: None,
            user: None,
            netns,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// The specification this configuration is written as (`etcd://HOST:PORT,…[?netns=…]`).
    pub fn url(&self) -> String {
        let query = self
            .netns
            .as_ref()
            .map(|n| format!("?netns={n}"))
            .unwrap_or_default();
        format!("{SCHEME}{}{query}", self.endpoints.join(","))
    }

    /// The endpoints as the client takes them (`https://` when TLS is on).
    pub(crate) fn client_urls(&self) -> Vec<String> {
        let scheme = if self.tls.is_some() {
            "https://"
        } else {
            "http://"
        };
        self.endpoints
            .iter()
            .map(|e| format!("{scheme}{e}"))
            .collect()
    }
}

fn endpoint(spec: &str, ep: &str) -> Result<String, StoreError> {
    let reason = |r: &str| bad("store", spec, format!("endpoint '{ep}' {r}"));
    if ep.is_empty() {
        return Err(reason("is empty (expected HOST:PORT)"));
    }
    if ep.contains(['/', '@', '?', '#']) || ep.chars().any(char::is_whitespace) {
        return Err(reason("must be HOST:PORT (no path, user or query)"));
    }
    let (host, port) = ep
        .rsplit_once(':')
        .ok_or_else(|| reason("has no port (expected HOST:PORT)"))?;
    if host.is_empty() || host == "[]" {
        return Err(reason("has no host"));
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(reason("has an IPv6 address without brackets ([ADDR]:PORT)"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(ep.to_string()),
        _ => Err(reason("has no port in 1-65535")),
    }
}

/// Parses a user given as etcdctl takes it: `USER[:PASSWORD]`, the password from `password`
/// when not in the string (etcdctl's `--password`). Errors name `field`.
pub fn parse_user(
    field: &str,
    user: &str,
    password: Option<&str>,
) -> Result<(String, String), StoreError> {
    let (name, pass) = match (user.split_once(':'), password) {
        (Some(_), Some(_)) => {
            return Err(bad(
                field,
                user,
                "gives a password, and a password was given separately too",
            ))
        }
        (Some((n, p)), None) => (n, p),
        (None, Some(p)) => (user, p),
        (None, None) => {
            return Err(bad(
                field,
                user,
                "has no password (USER:PASSWORD, or the password option)",
            ))
        }
    };
    if name.is_empty() {
        return Err(bad(field, user, "has an empty user name"));
    }
    Ok((name.to_string(), pass.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_endpoints() {
        let c = EtcdConfig::parse("etcd://127.0.0.1:2379,[::1]:2381,etcd-a:1").unwrap();
        assert_eq!(c.endpoints, ["127.0.0.1:2379", "[::1]:2381", "etcd-a:1"]);
        assert_eq!(c.url(), "etcd://127.0.0.1:2379,[::1]:2381,etcd-a:1");
        assert_eq!(c.client_urls()[0], "http://127.0.0.1:2379");
        let c = EtcdConfig::parse("etcd://10.0.0.1:2379?netns=lab-etcd").unwrap();
        assert_eq!(c.netns.as_deref(), Some("lab-etcd"));
        assert_eq!(c.url(), "etcd://10.0.0.1:2379?netns=lab-etcd");
    }

    #[test]
    fn refuses_bad_endpoints() {
        for bad in [
            "etcd://",
            "etcd://h",
            "etcd://h:0",
            "etcd://h:65536",
            "etcd://:1",
            "etcd://h:1,",
            "etcd://u:p@h:1",
            "etcd://h:1/x",
            "etcd://::1:2379",
            "http://h:1",
            "etcd://h:1?netns=",
            "etcd://h:1?netns=a/b",
            "etcd://h:1?x=1",
            "etcd://h:1?netns=a&netns=b",
        ] {
            let e = EtcdConfig::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid store '"), "{bad}: {e}");
        }
    }

    #[test]
    fn users_as_etcdctl_takes_them() {
        assert_eq!(
            parse_user("store-user", "root:pw", None).unwrap(),
            ("root".to_string(), "pw".to_string())
        );
        assert_eq!(
            parse_user("store-user", "root", Some("a:b")).unwrap(),
            ("root".to_string(), "a:b".to_string())
        );
        assert!(parse_user("store-user", "root", None).is_err());
        assert!(parse_user("store-user", ":pw", None).is_err());
        assert!(parse_user("store-user", "r:p", Some("q")).is_err());
    }
}
