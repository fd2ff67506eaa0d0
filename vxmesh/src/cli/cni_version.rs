//! The `cniVersion` of the conflist `vxmesh cni install` writes.
//!
//! A runtime refuses a network whose conflist version it cannot handle (podman 4.3, with
//! libcni 1.1, rejects 1.1.0: "unsupported CNI result version"), and every plugin of the chain
//! must speak the version too (CNI spec 1.1.0, section "Section 1: Network configuration
//! format": the list's `cniVersion` is passed to every plugin). The default is chosen the same
//! way whatever is installed: the newest version at most [`RUNTIME_CEILING`] that every plugin
//! of the chain reports with `CNI_COMMAND=VERSION`; `--cni-version` overrides it and must be
//! spoken by every plugin of the chain.

use std::cmp::Ordering;

/// The newest `cniVersion` the runtimes tried accept: podman 4.3.1 (Debian 12, CNI backend,
/// libcni 1.1) takes 0.1.0 ... 1.0.0 and refuses 1.1.0. Runtimes built with libcni 1.2 or
/// later also take 1.1.0 (GC and STATUS): choose it with `--cni-version 1.1.0`.
pub const RUNTIME_CEILING: &str = "1.0.0";

/// One plugin of the chain and the versions it reports (its `supportedVersions`).
#[derive(Debug, Clone)]
pub struct Speaker {
    /// How the plugin is named in messages, e.g. `portmap (/usr/lib/cni/portmap)`.
    pub name: String,
    pub versions: Vec<String>,
}

/// Why no version could be chosen, or why the one asked for cannot be used. The messages name
/// the value and the plugin that does not speak it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VersionError {
    #[error("invalid --cni-version '{asked}': {plugin} speaks {spoken}, not {asked}")]
    NotSpoken {
        asked: String,
        plugin: String,
        spoken: String,
    },
    #[error("no cniVersion up to {RUNTIME_CEILING} is spoken by every plugin of the chain ({chain}); pass --cni-version or --no-portmap")]
    NoCommonVersion { chain: String },
}

/// "1.0.0" as (1, 0, 0); `None` when it is not three dot-separated numbers.
fn parse(v: &str) -> Option<(u32, u32, u32)> {
    let mut it = v.split('.').map(|p| p.parse::<u32>().ok());
    let t = (it.next()??, it.next()??, it.next()??);
    it.next().is_none().then_some(t)
}

fn cmp(a: &str, b: &str) -> Ordering {
    parse(a).cmp(&parse(b))
}

fn spoken(s: &Speaker) -> String {
    if s.versions.is_empty() {
        "no version".into()
    } else {
        s.versions.join(", ")
    }
}

/// The conflist version for a chain whose plugins (in order, vxmesh first) speak what
/// `chain` says: `asked` when every plugin speaks it, else the newest version at most
/// [`RUNTIME_CEILING`] they all speak.
pub fn choose(chain: &[Speaker], asked: Option<&str>) -> Result<String, VersionError> {
    if let Some(asked) = asked {
        return match chain
            .iter()
            .find(|s| !s.versions.iter().any(|v| v == asked))
        {
            Some(s) => Err(VersionError::NotSpoken {
                asked: asked.chars().take(32).collect(),
                plugin: s.name.clone(),
                spoken: spoken(s),
            }),
            None => Ok(asked.to_string()),
        };
    }
    let first = chain
        .first()
        .map(|s| s.versions.clone())
        .unwrap_or_default();
    first
        .into_iter()
        .filter(|v| parse(v).is_some() && cmp(v, RUNTIME_CEILING) != Ordering::Greater)
        .filter(|v| chain.iter().all(|s| s.versions.contains(v)))
        .max_by(|a, b| cmp(a, b))
        .ok_or_else(|| VersionError::NoCommonVersion {
            chain: chain
                .iter()
                .map(|s| format!("{} speaks {}", s.name, spoken(s)))
                .collect::<Vec<_>>()
                .join("; "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn speaker(name: &str, versions: &[&str]) -> Speaker {
        Speaker {
            name: name.into(),
            versions: versions.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn default_is_the_same_with_or_without_a_chained_plugin() {
        let vx = speaker("vxmesh", &["0.4.0", "1.0.0", "1.1.0"]);
        let pm = speaker("portmap", &["0.1.0", "0.3.1", "0.4.0", "1.0.0"]);
        assert_eq!(choose(std::slice::from_ref(&vx), None).unwrap(), "1.0.0");
        assert_eq!(choose(&[vx.clone(), pm.clone()], None).unwrap(), "1.0.0");
        let old = speaker("old", &["0.3.1", "0.4.0"]);
        assert_eq!(choose(&[vx.clone(), old], None).unwrap(), "0.4.0");
        let none = speaker("none", &["0.2.0"]);
        assert!(matches!(
            choose(&[vx.clone(), none], None),
            Err(VersionError::NoCommonVersion { .. })
        ));
        // Asked for.
        assert_eq!(
            choose(std::slice::from_ref(&vx), Some("1.1.0")).unwrap(),
            "1.1.0"
        );
        let e = choose(&[vx.clone(), pm], Some("1.1.0")).unwrap_err();
        assert!(
            e.to_string().contains("portmap") && e.to_string().contains("'1.1.0'"),
            "{e}"
        );
        let e = choose(&[vx], Some("0.3.1")).unwrap_err();
        assert!(
            e.to_string().contains("vxmesh speaks 0.4.0, 1.0.0, 1.1.0"),
            "{e}"
        );
    }

    #[test]
    fn versions_compare_as_numbers() {
        assert_eq!(cmp("0.10.0", "0.9.0"), Ordering::Greater);
        assert_eq!(parse("1.0"), None);
        assert_eq!(parse("1.0.0.0"), None);
        assert_eq!(parse("1.0.0"), Some((1, 0, 0)));
    }
}
