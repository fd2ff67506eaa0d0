//! The network configuration a runtime passes on stdin, parsed and validated.
//!
//! Parsing never panics and never trusts a type: a field of the wrong JSON type is a decode error
//! (code 6), a missing or bad value an invalid configuration (code 7), an unsupported
//! `cniVersion` code 1, a value vxmesh cannot honour (an IPv6 or second address) code 2.
//! Unknown keys are kept untouched in [`NetConf::raw`] (they are passed on to a delegated IPAM
//! plugin as they came).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use ipnet::IpNet;
use overlay_core::dataplane::DefaultRoute;
use overlay_core::mac::MacAddr;
use overlay_core::store::{StoreError, StoreOptions, StoreSpec};
use overlay_core::validate;
use serde_json::{Map, Value};

use crate::error::*;

/// The versions of the specification this plugin accepts, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.4.0", "1.0.0", "1.1.0"];
/// The newest version, used for errors when the configuration gives none we support.
pub const LATEST_VERSION: &str = "1.1.0";
/// The netconf `type` of this plugin (and so its file name in CNI_PATH).
pub const PLUGIN_TYPE: &str = "vxmesh";
/// The store unless the netconf names another (`"store"`).
pub const DEFAULT_STORE: &str = "/var/lib/vxmesh/store.db";
/// Largest stdin accepted (a netconf with a big prevResult is a few KB).
pub const MAX_INPUT: usize = 1 << 20;

/// `dns` of the netconf (and of the result).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dns {
    pub nameservers: Vec<String>,
    pub domain: Option<String>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_none()
            && self.search.is_empty()
            && self.options.is_empty()
    }

    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        if !self.nameservers.is_empty() {
            m.insert("nameservers".into(), self.nameservers.clone().into());
        }
        if let Some(d) = &self.domain {
            m.insert("domain".into(), d.clone().into());
        }
        if !self.search.is_empty() {
            m.insert("search".into(), self.search.clone().into());
        }
        if !self.options.is_empty() {
            m.insert("options".into(), self.options.clone().into());
        }
        Value::Object(m)
    }
}

/// One entry of `cni.dev/valid-attachments` (GC).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ValidAttachment {
    pub container_id: String,
    pub ifname: String,
}

/// A parsed, validated network configuration.
#[derive(Debug, Clone)]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    /// The vxmesh network to attach to.
    pub network: String,
    /// The MTU asked for; `None`: the network's on this host.
    pub mtu: Option<u32>,
    /// `defaultRoute`: `"auto"` (default, [`DefaultRoute::IfNone`]), `true`
    /// ([`DefaultRoute::Replace`]) or `false` ([`DefaultRoute::Never`]).
    pub default_route: DefaultRoute,
    /// The delegated IPAM plugin (`ipam.type`); `None`: vxmesh's own IPAM.
    pub ipam_type: Option<String>,
    pub dns: Option<Dns>,
    /// An address asked for through `runtimeConfig.ips` or `args.cni.ips`.
    pub requested_ip: Option<Ipv4Addr>,
    /// A MAC asked for through `runtimeConfig.mac` or `args.cni.mac`.
    pub requested_mac: Option<MacAddr>,
    /// `store`: an SQLite file or `etcd://…`, with `storeCA`, `storeCert`, `storeKey`,
    /// `storeUser` (`USER` or `USER:PASSWORD`) and `storePassword` applied to an etcd one.
    pub store: StoreSpec,
    /// This host's node name; `None`: the hostname.
    pub node: Option<String>,
    pub prev_result: Option<Value>,
    /// GC: the attachments the runtime still uses (`None` when the key is absent).
    pub valid_attachments: Option<Vec<ValidAttachment>>,
    /// The whole configuration as received.
    pub raw: Value,
}

fn decode_err(field: &str, expected: &str, got: &Value) -> CniError {
    CniError::new(
        DECODE,
        format!(
            "field {field}: expected {expected}, got {}",
            json_type_name(got)
        ),
    )
}

fn invalid(field: &str, msg: impl std::fmt::Display) -> CniError {
    CniError::new(INVALID_CONFIG, format!("field {field}: {msg}"))
}

fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn opt_str<'a>(obj: &'a Map<String, Value>, field: &str, path: &str) -> CniResult<Option<&'a str>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(decode_err(path, "a string", other)),
    }
}

fn req_str<'a>(obj: &'a Map<String, Value>, field: &str) -> CniResult<&'a str> {
    opt_str(obj, field, field)?
        .ok_or_else(|| CniError::new(INVALID_CONFIG, format!("field {field} is missing")))
}

fn opt_obj<'a>(
    obj: &'a Map<String, Value>,
    field: &str,
    path: &str,
) -> CniResult<Option<&'a Map<String, Value>>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(other) => Err(decode_err(path, "an object", other)),
    }
}

fn str_list(obj: &Map<String, Value>, field: &str, path: &str) -> CniResult<Vec<String>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(decode_err(&format!("{path}[{i}]"), "a string", other)),
            })
            .collect(),
        Some(other) => Err(decode_err(path, "an array of strings", other)),
    }
}

/// Checks the `cniVersion` string: one of [`SUPPORTED_VERSIONS`] or error 1.
pub fn check_version(v: &str) -> CniResult<()> {
    if SUPPORTED_VERSIONS.contains(&v) {
        Ok(())
    } else {
        Err(CniError::new(
            INCOMPATIBLE_VERSION,
            format!(
                "incompatible CNI version '{}': this plugin supports {}",
                v.chars().take(64).collect::<String>(),
                SUPPORTED_VERSIONS.join(", ")
            ),
        ))
    }
}

/// The version to answer in: the configuration's when it is a supported one, else the latest.
/// Works on anything (used for errors before the configuration is known to be valid).
pub fn answer_version(input: &[u8]) -> String {
    serde_json::from_slice::<Value>(input)
        .ok()
        .and_then(|v| {
            v.get("cniVersion")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| LATEST_VERSION.to_string())
}

fn parse_dns(obj: &Map<String, Value>) -> CniResult<Option<Dns>> {
    let Some(d) = opt_obj(obj, "dns", "dns")? else {
        return Ok(None);
    };
    let dns = Dns {
        nameservers: str_list(d, "nameservers", "dns.nameservers")?,
        domain: opt_str(d, "domain", "dns.domain")?.map(str::to_string),
        search: str_list(d, "search", "dns.search")?,
        options: str_list(d, "options", "dns.options")?,
    };
    for (i, ns) in dns.nameservers.iter().enumerate() {
        if ns.parse::<IpAddr>().is_err() {
            return Err(invalid(
                &format!("dns.nameservers[{i}]"),
                format_args!("'{ns}' is not an IP address"),
            ));
        }
    }
    Ok(Some(dns))
}

/// An IPv4 address from `10.0.0.5` or `10.0.0.5/24`; IPv6 is unsupported (code 2).
fn parse_requested_ip(field: &str, text: &str) -> CniResult<Ipv4Addr> {
    let ip: IpAddr = match text.parse::<IpNet>() {
        Ok(net) => net.addr(),
        Err(_) => text
            .parse()
            .map_err(|_| invalid(field, format_args!("'{text}' is not an IP address or CIDR")))?,
    };
    match ip {
        IpAddr::V4(v4) => Ok(v4),
        IpAddr::V6(_) => Err(CniError::new(
            UNSUPPORTED_FIELD,
            format!("field {field}: '{text}' is IPv6; vxmesh networks are IPv4 only"),
        )),
    }
}

/// `ips` and `mac` of `runtimeConfig` or `args.cni`.
fn parse_requests(
    obj: &Map<String, Value>,
    path: &str,
) -> CniResult<(Option<Ipv4Addr>, Option<MacAddr>)> {
    let ips = str_list(obj, "ips", &format!("{path}.ips"))?;
    if ips.len() > 1 {
        return Err(CniError::new(
            UNSUPPORTED_FIELD,
            format!(
                "field {path}.ips: {} addresses asked for; vxmesh gives one IPv4 address per interface",
                ips.len()
            ),
        ));
    }
    let ip = match ips.first() {
        Some(t) => Some(parse_requested_ip(&format!("{path}.ips[0]"), t)?),
        None => None,
    };
    let mac = match opt_str(obj, "mac", &format!("{path}.mac"))? {
        Some(t) => Some(parse_mac(&format!("{path}.mac"), t)?),
        None => None,
    };
    Ok((ip, mac))
}

pub(crate) fn parse_mac(field: &str, text: &str) -> CniResult<MacAddr> {
    let mac: MacAddr = text.parse().map_err(|e| invalid(field, e))?;
    validate::endpoint_mac(mac).map_err(|e| invalid(field, e))?;
    Ok(mac)
}

fn parse_valid_attachments(obj: &Map<String, Value>) -> CniResult<Option<Vec<ValidAttachment>>> {
    const KEY: &str = "cni.dev/valid-attachments";
    let items = match obj.get(KEY) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(decode_err(KEY, "an array", other)),
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("{KEY}[{i}]");
        let Value::Object(m) = item else {
            return Err(decode_err(&path, "an object", item));
        };
        let cid = opt_str(m, "containerID", &format!("{path}.containerID"))?
            .ok_or_else(|| invalid(&path, "containerID is missing"))?;
        let ifname = opt_str(m, "ifname", &format!("{path}.ifname"))?
            .ok_or_else(|| invalid(&path, "ifname is missing"))?;
        out.push(ValidAttachment {
            container_id: cid.to_string(),
            ifname: ifname.to_string(),
        });
    }
    Ok(Some(out))
}

/// `defaultRoute`: `"auto"` or absent (a default route via the gateway only when the container
/// has no IPv4 default route yet), `true` (replace any default route), `false` (never one).
fn parse_default_route(obj: &Map<String, Value>) -> CniResult<DefaultRoute> {
    match obj.get("defaultRoute") {
        None | Some(Value::Null) => Ok(DefaultRoute::IfNone),
        Some(Value::String(s)) if s == "auto" => Ok(DefaultRoute::IfNone),
        Some(Value::Bool(true)) => Ok(DefaultRoute::Replace),
        Some(Value::Bool(false)) => Ok(DefaultRoute::Never),
        Some(Value::String(s)) => Err(invalid(
            "defaultRoute",
            format_args!(
                "'{}' is not \"auto\", true or false",
                s.chars().take(64).collect::<String>()
            ),
        )),
        Some(other) => Err(decode_err("defaultRoute", "\"auto\", true or false", other)),
    }
}

/// Parses and validates a network configuration. Never panics.
pub fn parse(input: &[u8]) -> CniResult<NetConf> {
    if input.len() > MAX_INPUT {
        return Err(CniError::new(
            DECODE,
            format!(
                "network configuration is {} bytes; at most {MAX_INPUT} accepted",
                input.len()
            ),
        ));
    }
    let raw: Value = serde_json::from_slice(input).map_err(|e| {
        CniError::new(DECODE, "cannot decode the network configuration as JSON")
            .with_details(e.to_string())
    })?;
    let Value::Object(obj) = &raw else {
        return Err(decode_err("(top level)", "an object", &raw));
    };
    let cni_version = req_str(obj, "cniVersion")?.to_string();
    check_version(&cni_version)?;
    let name = req_str(obj, "name")?.to_string();
    validate_cni_name("name", &name)?;
    let ty = req_str(obj, "type")?;
    if ty != PLUGIN_TYPE {
        return Err(invalid(
            "type",
            format_args!("'{ty}': this plugin is '{PLUGIN_TYPE}'"),
        ));
    }
    let network = req_str(obj, "network")?.to_string();
    validate::network_name(&network).map_err(|e| invalid("network", e))?;

    let mtu = match obj.get("mtu") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(m) if (68..=65535).contains(&m) => Some(m as u32),
            _ => return Err(invalid("mtu", format_args!("{n} is not 68..=65535"))),
        },
        Some(other) => return Err(decode_err("mtu", "a number", other)),
    };

    let default_route = parse_default_route(obj)?;

    let store = parse_store(obj)?;
    let node = match opt_str(obj, "node", "node")? {
        Some(n) => {
            validate::node_name(n).map_err(|e| invalid("node", e))?;
            Some(n.to_string())
        }
        None => None,
    };

    let ipam_type = match opt_obj(obj, "ipam", "ipam")? {
        Some(ipam) => match opt_str(ipam, "type", "ipam.type")? {
            None | Some("") => None,
            Some(t) => {
                if t.contains('/') || t.starts_with('.') || t.contains('\0') {
                    return Err(invalid(
                        "ipam.type",
                        format_args!("'{t}' is not a plugin name"),
                    ));
                }
                Some(t.to_string())
            }
        },
        None => None,
    };

    let dns = parse_dns(obj)?;

    let (mut requested_ip, mut requested_mac) = (None, None);
    if let Some(args) = opt_obj(obj, "args", "args")? {
        if let Some(cni) = opt_obj(args, "cni", "args.cni")? {
            (requested_ip, requested_mac) = parse_requests(cni, "args.cni")?;
        }
    }
    // runtimeConfig (capabilities) wins over args.
    if let Some(rc) = opt_obj(obj, "runtimeConfig", "runtimeConfig")? {
        let (ip, mac) = parse_requests(rc, "runtimeConfig")?;
        requested_ip = ip.or(requested_ip);
        requested_mac = mac.or(requested_mac);
    }
    if requested_ip.is_some() && ipam_type.is_some() {
        return Err(CniError::new(
            UNSUPPORTED_FIELD,
            "field ips: a fixed address cannot be combined with a delegated ipam plugin; pass it to the IPAM plugin instead",
        ));
    }

    let prev_result = match obj.get("prevResult") {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => Some(v.clone()),
        Some(other) => return Err(decode_err("prevResult", "an object", other)),
    };
    let valid_attachments = parse_valid_attachments(obj)?;

    Ok(NetConf {
        cni_version,
        name,
        network,
        mtu,
        default_route,
        ipam_type,
        dns,
        requested_ip,
        requested_mac,
        store,
        node,
        prev_result,
        valid_attachments,
        raw,
    })
}

/// The CNI plugin's time limit on each store operation: ADD answers "try again" (11) well
/// within a runtime's patience when the store is unreachable.
pub const STORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// `store` and the etcd options (`storeCA`, `storeCert`, `storeKey`, `storeUser`,
/// `storePassword`); an error names the field.
fn parse_store(obj: &Map<String, Value>) -> CniResult<StoreSpec> {
    let store = match opt_str(obj, "store", "store")? {
        Some("") => return Err(invalid("store", "is empty")),
        Some(s) if s.contains('\0') => return Err(invalid("store", "contains NUL")),
        Some(s) => s,
        None => DEFAULT_STORE,
    };
    let path =
        |f: &str| -> CniResult<Option<PathBuf>> { Ok(opt_str(obj, f, f)?.map(PathBuf::from)) };
    let options = StoreOptions {
        ca: path("storeCA")?,
        cert: path("storeCert")?,
        key: path("storeKey")?,
        user: opt_str(obj, "storeUser", "storeUser")?.map(str::to_string),
        password: opt_str(obj, "storePassword", "storePassword")?.map(str::to_string),
        timeout: None,
    };
    let field = |e: StoreError| match e {
        StoreError::Config { field, reason, .. } => {
            let field = match field.as_str() {
                "store-ca" => "storeCA",
                "store-cert" => "storeCert",
                "store-key" => "storeKey",
                "store-user" => "storeUser",
                "store-password" => "storePassword",
                _ => "store",
            };
            invalid(field, reason)
        }
        other => invalid("store", other),
    };
    let spec = StoreSpec::parse(store).map_err(field)?;
    let spec = match spec {
        StoreSpec::Etcd(mut c) => {
            c.timeout = STORE_TIMEOUT;
            StoreSpec::Etcd(c)
        }
        s => s,
    };
    spec.with_options(&options).map_err(field)
}

/// Names the spec restricts (network name, container id): `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`.
pub fn validate_cni_name(field: &str, s: &str) -> CniResult<()> {
    let ok = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            format_args!(
                "'{}' must start with a letter or digit and hold only letters, digits, '_', '.', '-'",
                s.chars().take(64).collect::<String>()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(extra: &str) -> Vec<u8> {
        format!(r#"{{"cniVersion":"1.1.0","name":"n1","type":"vxmesh","network":"net1"{extra}}}"#)
            .into_bytes()
    }

    #[test]
    fn minimal_and_full() {
        let c = parse(&conf("")).unwrap();
        assert_eq!(c.network, "net1");
        assert_eq!(c.store, StoreSpec::Sqlite(PathBuf::from(DEFAULT_STORE)));
        let c = parse(&conf(
            r#","mtu":1400,"node":"h1","store":"/tmp/s.db","dns":{"nameservers":["10.0.0.53"],"search":["x"]},
            "runtimeConfig":{"ips":["10.10.1.9/24"],"mac":"0a:58:0a:0a:01:09"},"foo":{"bar":1}"#,
        ))
        .unwrap();
        assert_eq!(c.mtu, Some(1400));
        assert_eq!(c.requested_ip, Some("10.10.1.9".parse().unwrap()));
        assert_eq!(c.raw["foo"]["bar"], 1);
        assert_eq!(c.default_route, DefaultRoute::IfNone);
    }

    #[test]
    fn default_route() {
        let dr = |extra: &str| parse(&conf(extra)).map(|c| c.default_route);
        assert_eq!(
            dr(r#","defaultRoute":"auto""#).unwrap(),
            DefaultRoute::IfNone
        );
        assert_eq!(
            dr(r#","defaultRoute":true"#).unwrap(),
            DefaultRoute::Replace
        );
        assert_eq!(dr(r#","defaultRoute":false"#).unwrap(), DefaultRoute::Never);
        let e = dr(r#","defaultRoute":"yes""#).unwrap_err();
        assert_eq!(e.code, INVALID_CONFIG);
        assert!(
            e.msg.contains("defaultRoute") && e.msg.contains("yes"),
            "{}",
            e.msg
        );
        assert_eq!(dr(r#","defaultRoute":1"#).unwrap_err().code, DECODE);
    }

    #[test]
    fn codes() {
        let code = |b: &[u8]| parse(b).unwrap_err().code;
        assert_eq!(code(b"{"), DECODE);
        assert_eq!(code(b"[]"), DECODE);
        assert_eq!(code(&conf(r#","mtu":"x""#)), DECODE);
        assert_eq!(code(&conf(r#","mtu":10"#)), INVALID_CONFIG);
        assert_eq!(
            code(br#"{"cniVersion":"0.3.1","name":"n","type":"vxmesh","network":"a"}"#),
            INCOMPATIBLE_VERSION
        );
        assert_eq!(
            code(br#"{"name":"n","type":"vxmesh","network":"a"}"#),
            INVALID_CONFIG
        );
        assert_eq!(
            code(&conf(r#","runtimeConfig":{"ips":["fd00::1/64"]}"#)),
            UNSUPPORTED_FIELD
        );
        assert_eq!(
            code(&conf(r#","runtimeConfig":{"mac":"ff:ff:ff:ff:ff:ff"}"#)),
            INVALID_CONFIG
        );
    }
}
