//! The commands: ADD, DEL, CHECK, GC, STATUS, VERSION.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net};
use overlay_core::catalog::{Catalog, CatalogError};
use overlay_core::container::{self, AttachOptions, ContainerError, ContainerSpec};
use overlay_core::dataplane::{self, Dataplane, DataplaneError, Link};
use overlay_core::model::{self, CniAttachment, Endpoint, Network};
use overlay_core::netns::{self, THREAD_SELF_NET};
use overlay_core::store::SqliteStore;
use serde_json::{json, Value};

use crate::conf::{self, NetConf, SUPPORTED_VERSIONS};
use crate::env::{self, Command, Env};
use crate::error::*;
use crate::ipam;

/// The endpoint id of a CNI attachment: `cni-` and 32 hex digits of a stable hash of the
/// container id and interface name (container ids may be 64 characters; endpoint ids may not
/// exceed 64). The real ids are recorded in `Endpoint::cni`.
pub fn endpoint_id(container_id: &str, ifname: &str) -> String {
    let fnv = |basis: u64| {
        let mut h = basis;
        for b in container_id.bytes().chain([0u8]).chain(ifname.bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
    };
    format!(
        "cni-{:016x}{:016x}",
        fnv(0xcbf2_9ce4_8422_2325),
        fnv(0x6c62_272e_07bb_0142)
    )
}

/// Runs one call. `get` reads the environment; `stdin` is what the runtime wrote. Returns the
/// JSON to print on success (`None`: print nothing).
pub fn execute(get: &dyn Fn(&str) -> Option<String>, stdin: &[u8]) -> CniResult<Option<Value>> {
    let command = env::command(get)?;
    if command == Command::Version {
        return Ok(Some(version(stdin)));
    }
    let conf = conf::parse(stdin)?;
    let env = env::parse(get)?;
    if matches!(command, Command::Gc | Command::Status) && conf.cni_version != "1.1.0" {
        return Err(CniError::new(
            INCOMPATIBLE_VERSION,
            format!(
                "{command:?} needs cniVersion 1.1.0; the configuration has {}",
                conf.cni_version
            ),
        ));
    }
    let call = Call {
        node: node_name(&conf)?,
        conf,
        env,
        stdin,
    };
    match command {
        Command::Add => call.add().map(Some),
        Command::Del => call.del().map(|()| None),
        Command::Check => call.check().map(|()| None),
        Command::Gc => call.gc().map(|()| None),
        Command::Status => call.status().map(|()| None),
        Command::Version => unreachable!("handled above"),
    }
}

fn version(stdin: &[u8]) -> Value {
    json!({
        "cniVersion": conf::answer_version(stdin),
        "supportedVersions": SUPPORTED_VERSIONS,
    })
}

fn node_name(conf: &NetConf) -> CniResult<String> {
    if let Some(n) = &conf.node {
        return Ok(n.clone());
    }
    let host = nix::unistd::gethostname()
        .map_err(|e| CniError::new(IO_FAILURE, format!("cannot read the hostname: {e}")))?;
    let host = host.to_string_lossy().into_owned();
    overlay_core::validate::node_name(&host).map_err(|e| {
        CniError::new(
            INVALID_CONFIG,
            format!("field node is not set and the hostname cannot be a node name: {e}"),
        )
    })?;
    Ok(host)
}

fn catalog_err(e: CatalogError) -> CniError {
    match e {
        CatalogError::NotFound { kind, name } if kind == "network" || kind == "node" => {
            CniError::new(
                INVALID_CONFIG,
                format!("unknown {kind} '{name}' in the vxmesh store"),
            )
        }
        CatalogError::NotFound { .. } => CniError::new(UNKNOWN_CONTAINER, e.to_string()),
        CatalogError::Exists { .. } => CniError::new(ALREADY_ATTACHED, e.to_string()),
        CatalogError::Exhausted { .. } => CniError::new(ADDRESS_UNAVAILABLE, e.to_string()),
        CatalogError::Invalid(ref v)
            if v.to_string().starts_with("invalid ip")
                || v.to_string().starts_with("invalid mac") =>
        {
            CniError::new(ADDRESS_UNAVAILABLE, e.to_string())
        }
        CatalogError::Invalid(_) => CniError::new(INVALID_CONFIG, e.to_string()),
        CatalogError::InUse { .. } => CniError::new(INVALID_CONFIG, e.to_string()),
        CatalogError::Contended(_) => CniError::new(TRY_AGAIN, e.to_string()),
        CatalogError::Corrupt { .. } | CatalogError::Store(_) => {
            CniError::new(IO_FAILURE, e.to_string())
        }
    }
}

fn dataplane_err(e: DataplaneError) -> CniError {
    match e {
        DataplaneError::LinkExists { .. } => CniError::new(IFNAME_EXISTS, e.to_string()),
        _ => CniError::new(DATAPLANE, e.to_string()),
    }
}

fn netns_err(e: netns::NetnsError) -> CniError {
    if e.is_not_found() {
        CniError::new(INVALID_ENV, format!("CNI_NETNS: {e}"))
    } else {
        CniError::new(DATAPLANE, e.to_string())
    }
}

fn container_err(e: ContainerError) -> CniError {
    match e {
        ContainerError::Catalog(c) => catalog_err(c),
        ContainerError::Dataplane(d) => dataplane_err(d),
        ContainerError::Netns(n) => netns_err(n),
        e @ ContainerError::NoBridge { .. } => CniError::new(TRY_AGAIN, e.to_string()),
        e @ ContainerError::Mtu { .. } => CniError::new(INVALID_CONFIG, format!("field {e}")),
    }
}

/// Runs `f` with a netlink connection inside the namespace at `path`.
fn in_netns<T, F, Fut>(path: &Path, f: F) -> CniResult<T>
where
    F: FnOnce(Dataplane) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, DataplaneError>>,
    T: Send + 'static,
{
    netns::block_on_in(path, move || async move { f(Dataplane::connect()?).await })
        .map_err(netns_err)?
        .map_err(dataplane_err)
}

fn host_ns() -> PathBuf {
    PathBuf::from(THREAD_SELF_NET)
}

struct Call<'a> {
    conf: NetConf,
    env: Env,
    node: String,
    stdin: &'a [u8],
}

impl Call<'_> {
    fn container_id(&self) -> &str {
        self.env.container_id.as_deref().unwrap_or_default()
    }

    fn ifname(&self) -> &str {
        self.env.ifname.as_deref().unwrap_or_default()
    }

    fn id(&self) -> String {
        endpoint_id(self.container_id(), self.ifname())
    }

    fn attachment(&self) -> CniAttachment {
        CniAttachment {
            container_id: self.container_id().to_string(),
            ifname: self.ifname().to_string(),
        }
    }

    /// Opens the store; `None` when the file does not exist.
    fn open_store(&self) -> CniResult<Option<Catalog>> {
        if !self.conf.store.exists() {
            return Ok(None);
        }
        let store = SqliteStore::open(&self.conf.store)
            .map_err(|e| CniError::new(IO_FAILURE, format!("cannot open the vxmesh store: {e}")))?;
        Ok(Some(Catalog::new(Arc::new(store))))
    }

    fn catalog(&self) -> CniResult<Catalog> {
        self.open_store()?.ok_or_else(|| {
            CniError::new(
                IO_FAILURE,
                format!(
                    "the vxmesh store {} does not exist (set \"store\" in the configuration)",
                    self.conf.store.display()
                ),
            )
        })
    }

    fn ipam_del(&self, container_id: Option<&str>, ifname: Option<&str>) -> CniResult<()> {
        if let Some(plugin) = &self.conf.ipam_type {
            ipam::exec(plugin, &self.env, "DEL", container_id, ifname, self.stdin)?;
        }
        Ok(())
    }

    // ---------------------------------------------------------------- ADD

    fn add(&self) -> CniResult<Value> {
        let catalog = self.catalog()?;
        let network = catalog.network(&self.conf.network).map_err(catalog_err)?;
        catalog.node(&self.node).map_err(catalog_err)?;
        let id = self.id();
        match catalog.endpoint(&network.name, &id) {
            Ok(_) => {
                return Err(CniError::new(
                    ALREADY_ATTACHED,
                    format!(
                    "container {} interface {} is already attached to network {} (DEL it first)",
                    self.container_id(),
                    self.ifname(),
                    network.name
                ),
                ))
            }
            Err(CatalogError::NotFound { .. }) => {}
            Err(e) => return Err(catalog_err(e)),
        }
        // The bridge (the agent) must be there, and the MTU fit it.
        let bridge_mtu = container::network_mtu(&None, &network).map_err(container_err)?;
        if let Some(m) = self.conf.mtu {
            if m > bridge_mtu {
                return Err(CniError::new(
                    INVALID_CONFIG,
                    format!(
                        "field mtu: {m} is larger than network {}'s MTU on this host ({bridge_mtu})",
                        network.name
                    ),
                ));
            }
        }
        // The interface must not exist yet in the container (checked before anything is taken).
        let netns_path = self.env.netns.clone().expect("ADD has CNI_NETNS");
        let ifname = self.ifname().to_string();
        let exists = in_netns(&netns_path, move |dp| async move {
            Ok(dp.link(&ifname).await?.is_some())
        })?;
        if exists {
            return Err(CniError::new(
                IFNAME_EXISTS,
                format!(
                    "interface {} already exists in {}",
                    self.ifname(),
                    netns_path.display()
                ),
            ));
        }

        let mut dns = self.conf.dns.clone();
        let ip = match &self.conf.ipam_type {
            Some(plugin) => {
                let out = ipam::exec(plugin, &self.env, "ADD", None, None, self.stdin)?;
                let r = ipam::parse_result(plugin, &out).and_then(|r| {
                    ipam::check_in_subnet(r.address.addr(), &network)?;
                    Ok(r)
                });
                match r {
                    Ok(r) => {
                        if dns.is_none() {
                            dns = r.dns;
                        }
                        Some(r.address.addr())
                    }
                    Err(e) => {
                        let _ = self.ipam_del(None, None);
                        return Err(e);
                    }
                }
            }
            None => self.conf.requested_ip.or(self.env.arg_ip),
        };
        let spec = ContainerSpec {
            network: network.name.clone(),
            node: self.node.clone(),
            id,
            host_netns: None,
            container_netns: netns_path.clone(),
            ifname: self.ifname().to_string(),
            ip,
        };
        let options = AttachOptions {
            mac: self.conf.requested_mac.or(self.env.arg_mac),
            mtu: self.conf.mtu,
            cni: Some(self.attachment()),
        };
        let mut attempt = 0;
        let attached = loop {
            match container::attach_container_with(&catalog, &spec, &options) {
                Err(ContainerError::Catalog(CatalogError::Contended(_))) if attempt < 5 => {
                    attempt += 1;
                }
                other => break other,
            }
        };
        let (endpoint, attachment) = match attached {
            Ok(a) => a,
            Err(e) => {
                let err = container_err(e);
                if let Err(undo) = self.ipam_del(None, None) {
                    return Err(CniError {
                        details: format!(
                            "{}; releasing the ipam address also failed: {undo}",
                            err.details
                        ),
                        ..err
                    });
                }
                return Err(err);
            }
        };
        let mtu = self.conf.mtu.unwrap_or(bridge_mtu);
        let host_ifname = attachment.host_ifname.clone();
        let host_mac = in_netns(&host_ns(), move |dp| async move {
            Ok(dp.link(&host_ifname).await?.and_then(|l| l.mac))
        })
        .ok()
        .flatten();
        Ok(self.result(&network, &endpoint, host_mac, mtu, dns.as_ref()))
    }

    fn result(
        &self,
        network: &Network,
        endpoint: &Endpoint,
        host_mac: Option<overlay_core::MacAddr>,
        mtu: u32,
        dns: Option<&conf::Dns>,
    ) -> Value {
        let v11 = self.conf.cni_version == "1.1.0";
        let v04 = self.conf.cni_version == "0.4.0";
        let mut host = json!({ "name": endpoint.host_ifname.clone().unwrap_or_default() });
        if let Some(m) = host_mac {
            host["mac"] = m.to_string().into();
        }
        let mut cont = json!({
            "name": self.ifname(),
            "mac": endpoint.mac.to_string(),
            "sandbox": self.env.netns.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
        });
        if v11 {
            host["mtu"] = mtu.into();
            cont["mtu"] = mtu.into();
        }
        let address = Ipv4Net::new(endpoint.ip, network.subnet.prefix_len())
            .expect("prefix of a valid subnet");
        let mut ip = json!({
            "address": address.to_string(),
            "gateway": network.gateway.to_string(),
            "interface": 1,
        });
        if v04 {
            ip["version"] = "4".into();
        }
        let mut out = json!({
            "cniVersion": self.conf.cni_version,
            "interfaces": [host, cont],
            "ips": [ip],
            "routes": [{ "dst": "0.0.0.0/0", "gw": network.gateway.to_string() }],
        });
        out["dns"] = dns.map(conf::Dns::to_json).unwrap_or_else(|| json!({}));
        out
    }

    // ---------------------------------------------------------------- DEL

    fn del(&self) -> CniResult<()> {
        let id = self.id();
        let veth = model::veth_name(&self.conf.network, &id);
        let mut errors = Vec::new();
        if let Some(catalog) = self.open_store()? {
            match catalog.endpoint(&self.conf.network, &id) {
                Ok(ep) if ep.cni.as_ref() == Some(&self.attachment()) => {
                    let host_ifname = ep.host_ifname.clone().unwrap_or(veth.clone());
                    dataplane::detach(None, &host_ifname).map_err(dataplane_err)?;
                    match catalog.remove_endpoint(&ep.network, &ep.id) {
                        Ok(_) | Err(CatalogError::NotFound { .. }) => {}
                        Err(e) => errors.push(catalog_err(e)),
                    }
                }
                Ok(_) => {
                    // Same id, another owner (not a CNI endpoint): not ours to remove.
                }
                Err(CatalogError::NotFound { .. }) => {
                    dataplane::detach(None, &veth).map_err(dataplane_err)?;
                }
                Err(e) => errors.push(catalog_err(e)),
            }
        } else {
            dataplane::detach(None, &veth).map_err(dataplane_err)?;
        }
        if let Err(e) = self.ipam_del(None, None) {
            errors.push(e);
        }
        match errors.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    // ---------------------------------------------------------------- CHECK

    fn check(&self) -> CniResult<()> {
        let prev = self.conf.prev_result.as_ref().ok_or_else(|| {
            CniError::new(
                INVALID_CONFIG,
                "field prevResult is missing; CHECK needs it",
            )
        })?;
        let catalog = self.catalog()?;
        let network = catalog.network(&self.conf.network).map_err(catalog_err)?;
        let id = self.id();
        let ep = match catalog.endpoint(&network.name, &id) {
            Ok(ep) if ep.cni.as_ref() == Some(&self.attachment()) => ep,
            Ok(_) | Err(CatalogError::NotFound { .. }) => {
                return Err(CniError::new(
                    UNKNOWN_CONTAINER,
                    format!(
                        "the store has no attachment of container {} interface {} on network {}",
                        self.container_id(),
                        self.ifname(),
                        network.name
                    ),
                ))
            }
            Err(e) => return Err(catalog_err(e)),
        };
        let mut diffs: Vec<String> = Vec::new();
        if ep.node != self.node {
            diffs.push(format!(
                "store: the endpoint is on node {}, not {}",
                ep.node, self.node
            ));
        }
        let address = Ipv4Net::new(ep.ip, network.subnet.prefix_len()).expect("valid prefix");
        let bridge_mtu = container::network_mtu(&None, &network).map_err(container_err)?;
        let mtu = self.conf.mtu.unwrap_or(bridge_mtu);

        // The container's side.
        let netns_path = self.env.netns.clone().expect("CHECK has CNI_NETNS");
        let ifname = self.ifname().to_string();
        let (link, addrs, gw) = in_netns(&netns_path, move |dp| async move {
            let link = dp.link(&ifname).await?;
            let addrs = match &link {
                Some(l) => dp.addresses(l.index).await?,
                None => vec![],
            };
            Ok((link, addrs, dp.default_route().await?))
        })?;
        match &link {
            None => diffs.push(format!(
                "interface {} is missing in {}",
                self.ifname(),
                netns_path.display()
            )),
            Some(l) => {
                if l.mac != Some(ep.mac) {
                    diffs.push(format!(
                        "interface {}: mac is {}, the store says {}",
                        l.name,
                        l.mac.map(|m| m.to_string()).unwrap_or_default(),
                        ep.mac
                    ));
                }
                if l.mtu != mtu {
                    diffs.push(format!(
                        "interface {}: mtu is {}, expected {mtu}",
                        l.name, l.mtu
                    ));
                }
                if !l.up {
                    diffs.push(format!("interface {} is down", l.name));
                }
                if !addrs.contains(&IpNet::V4(address)) {
                    diffs.push(format!(
                        "interface {}: address {address} is missing (has {})",
                        l.name,
                        list(addrs.iter())
                    ));
                }
            }
        }
        if gw != Some(network.gateway) {
            diffs.push(format!(
                "default route: via {}, expected via {}",
                gw.map(|g| g.to_string()).unwrap_or_else(|| "none".into()),
                network.gateway
            ));
        }

        // The host's side.
        let host_ifname = ep.host_ifname.clone().unwrap_or_default();
        let bridge = network.bridge_name();
        let (h, br): (Option<Link>, Option<Link>) = {
            let (h, b) = (host_ifname.clone(), bridge.clone());
            in_netns(&host_ns(), move |dp| async move {
                Ok((dp.link(&h).await?, dp.link(&b).await?))
            })?
        };
        match (&h, &br) {
            (None, _) => diffs.push(format!("host interface {host_ifname} is missing")),
            (Some(h), br) => {
                if h.kind.as_deref() != Some("veth") {
                    diffs.push(format!("host interface {host_ifname} is not a veth"));
                }
                if br.is_none() || h.master != br.as_ref().map(|b| b.index) {
                    diffs.push(format!(
                        "host interface {host_ifname} is not a port of bridge {bridge}"
                    ));
                }
                if !h.up {
                    diffs.push(format!("host interface {host_ifname} is down"));
                }
            }
        }

        // prevResult against the store and the kernel.
        let prev_ips: Vec<&str> = prev
            .get("ips")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|i| i.get("address").and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default();
        if !prev_ips
            .iter()
            .any(|a| a.parse::<Ipv4Net>().ok() == Some(address))
        {
            diffs.push(format!(
                "prevResult: ips are [{}], the attachment has {address}",
                prev_ips.join(", ")
            ));
        }
        let prev_if = prev
            .get("interfaces")
            .and_then(Value::as_array)
            .and_then(|a| {
                a.iter().find(|i| {
                    i.get("name").and_then(Value::as_str) == Some(self.ifname())
                        && i.get("sandbox")
                            .and_then(Value::as_str)
                            .is_some_and(|s| !s.is_empty())
                })
            });
        match prev_if {
            None => diffs.push(format!(
                "prevResult: no interface {} with a sandbox",
                self.ifname()
            )),
            Some(i) => {
                let mac = i.get("mac").and_then(Value::as_str).unwrap_or("");
                if mac.parse::<overlay_core::MacAddr>().ok() != Some(ep.mac) {
                    diffs.push(format!(
                        "prevResult: interface {} mac is '{mac}', the attachment has {}",
                        self.ifname(),
                        ep.mac
                    ));
                }
            }
        }
        let has_default = prev
            .get("routes")
            .and_then(Value::as_array)
            .is_some_and(|a| {
                a.iter().any(|r| {
                    r.get("dst").and_then(Value::as_str) == Some("0.0.0.0/0")
                        && r.get("gw")
                            .and_then(Value::as_str)
                            .and_then(|g| g.parse::<Ipv4Addr>().ok())
                            == Some(network.gateway)
                })
            });
        if !has_default {
            diffs.push(format!(
                "prevResult: no route 0.0.0.0/0 via {}",
                network.gateway
            ));
        }
        if let Some(plugin) = &self.conf.ipam_type {
            if let Err(e) = ipam::exec(plugin, &self.env, "CHECK", None, None, self.stdin) {
                diffs.push(e.msg);
            }
        }
        if diffs.is_empty() {
            Ok(())
        } else {
            Err(CniError::new(
                CHECK_FAILED,
                format!("CHECK {}: {}", self.ifname(), diffs.join("; ")),
            )
            .with_details(diffs.join("\n")))
        }
    }

    // ---------------------------------------------------------------- GC

    fn gc(&self) -> CniResult<()> {
        let valid = self.conf.valid_attachments.as_ref().ok_or_else(|| {
            CniError::new(
                INVALID_CONFIG,
                "field cni.dev/valid-attachments is missing; GC needs it",
            )
        })?;
        let valid: BTreeSet<(&str, &str)> = valid
            .iter()
            .map(|v| (v.container_id.as_str(), v.ifname.as_str()))
            .collect();
        let Some(catalog) = self.open_store()? else {
            return Ok(()); // No store: nothing was ever attached through it.
        };
        let mut errors: Vec<String> = Vec::new();
        // 1. Endpoint records (and their addresses and veths) of attachments the runtime dropped.
        let endpoints = catalog
            .endpoints(Some(&self.conf.network))
            .map_err(catalog_err)?;
        for ep in endpoints.iter().filter(|e| e.node == self.node) {
            let Some(cni) = &ep.cni else { continue };
            if valid.contains(&(cni.container_id.as_str(), cni.ifname.as_str())) {
                continue;
            }
            if let Some(h) = &ep.host_ifname {
                if let Err(e) = dataplane::detach(None, h) {
                    errors.push(format!("{}/{} veth {h}: {e}", cni.container_id, cni.ifname));
                    continue;
                }
            }
            if let Err(e) = catalog.remove_endpoint(&ep.network, &ep.id) {
                if !matches!(e, CatalogError::NotFound { .. }) {
                    errors.push(format!("{}/{} record: {e}", cni.container_id, cni.ifname));
                    continue;
                }
            }
            if let Err(e) = self.ipam_del(Some(&cni.container_id), Some(&cni.ifname)) {
                errors.push(format!("{}/{} ipam: {e}", cni.container_id, cni.ifname));
            }
        }
        // 2. vxmesh veths that no endpoint of this node claims (an ADD killed part way). The
        //    links are listed before the store is read, and ADD records before it builds, so
        //    an ADD in progress is never undone.
        let bridge = self.conf.network.clone();
        let links = in_netns(&host_ns(), move |dp| async move {
            let all = dp.links().await?;
            let br = all
                .iter()
                .find(|l| l.name == model::bridge_name(&bridge))
                .map(|l| l.index);
            Ok(all
                .into_iter()
                .filter(|l| {
                    l.name.starts_with(model::VETH_PREFIX)
                        && l.kind.as_deref() == Some("veth")
                        && (l.master.is_none() || l.master == br)
                })
                .map(|l| l.name)
                .collect::<Vec<_>>())
        })?;
        if !links.is_empty() {
            let claimed: BTreeSet<String> = catalog
                .endpoints(None)
                .map_err(catalog_err)?
                .into_iter()
                .filter(|e| e.node == self.node)
                .filter_map(|e| e.host_ifname)
                .collect();
            for l in links.iter().filter(|l| !claimed.contains(*l)) {
                if let Err(e) = dataplane::detach(None, l) {
                    errors.push(format!("stale veth {l}: {e}"));
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(CniError::new(
                GC_FAILED,
                format!("GC: {} attachment(s) could not be removed", errors.len()),
            )
            .with_details(errors.join("\n")))
        }
    }

    // ---------------------------------------------------------------- STATUS

    fn status(&self) -> CniResult<()> {
        let bridge = model::bridge_name(&self.conf.network);
        let vxlan = model::vxlan_name(&self.conf.network);
        let (b, v) = (bridge.clone(), vxlan.clone());
        let (has_bridge, has_vxlan) = in_netns(&host_ns(), move |dp| async move {
            Ok((dp.link(&b).await?.is_some(), dp.link(&v).await?.is_some()))
        })
        .map_err(|e| {
            CniError::new(
                NOT_AVAILABLE,
                format!("cannot read this host's links: {}", e.msg),
            )
        })?;
        let unavailable = |why: String| {
            // Containers already attached keep their local bridge while the bridge exists.
            let code = if has_bridge {
                NOT_AVAILABLE_LIMITED
            } else {
                NOT_AVAILABLE
            };
            CniError::new(code, why)
        };
        let catalog = match self.open_store() {
            Ok(Some(c)) => c,
            Ok(None) => {
                return Err(unavailable(format!(
                    "store unreachable: {} does not exist",
                    self.conf.store.display()
                )))
            }
            Err(e) => return Err(unavailable(format!("store unreachable: {}", e.msg))),
        };
        match catalog.network(&self.conf.network) {
            Ok(_) => {}
            Err(CatalogError::NotFound { .. }) => {
                return Err(CniError::new(
                    NOT_AVAILABLE,
                    format!("network {} is missing from the store", self.conf.network),
                ))
            }
            Err(e) => return Err(unavailable(format!("store unreachable: {e}"))),
        }
        match catalog.node(&self.node) {
            Ok(_) => {}
            Err(CatalogError::NotFound { .. }) => {
                return Err(CniError::new(
                    NOT_AVAILABLE,
                    format!("node {} is missing from the store", self.node),
                ))
            }
            Err(e) => return Err(unavailable(format!("store unreachable: {e}"))),
        }
        if !has_bridge {
            return Err(CniError::new(
                NOT_AVAILABLE,
                format!("agent not running: bridge {bridge} does not exist on this host"),
            ));
        }
        if !has_vxlan {
            return Err(CniError::new(
                NOT_AVAILABLE_LIMITED,
                format!("agent not running: VXLAN device {vxlan} does not exist on this host (no traffic to other hosts)"),
            ));
        }
        Ok(())
    }
}

fn list<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> String {
    let v: Vec<String> = items.map(|i| i.to_string()).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}
