//! `vxmesh cni install`: puts the CNI plugin where container runtimes look for it, with a
//! network configuration list that uses it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::cni_version::{self, Speaker};

/// The netconf type of the plugin, and so its file name in the runtime's CNI_PATH.
const PLUGIN_TYPE: &str = "vxmesh";
/// Where Debian's containernetworking-plugins live.
const REFERENCE_DIR: &str = "/usr/lib/cni";

#[derive(Debug, Subcommand)]
pub enum CniCmd {
    /// Install the vxmesh CNI plugin and a .conflist for one network (portmap chained after it
    /// when the reference portmap plugin is available).
    Install(InstallArgs),
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Where the runtime looks for plugins; the plugin is written there as `vxmesh`.
    #[arg(long, default_value = "/opt/cni/bin")]
    pub bin_dir: PathBuf,
    /// Where the runtime looks for network configurations.
    #[arg(long, default_value = "/etc/cni/net.d")]
    pub conf_dir: PathBuf,
    /// The vxmesh network containers are attached to.
    #[arg(long)]
    pub network: String,
    /// This host's node name (default: the plugin uses the hostname).
    #[arg(long)]
    pub node: Option<String>,
    /// The plugin binary to install (default: `vxmesh-cni` next to this program).
    #[arg(long)]
    pub plugin: Option<PathBuf>,
    /// Do not chain portmap even when it is available.
    #[arg(long)]
    pub no_portmap: bool,
    /// The conflist's cniVersion; it must be one the plugin and every chained plugin speak
    /// (default: the newest they all speak, at most 1.0.0, which the runtimes tried accept).
    #[arg(long, value_name = "VERSION")]
    pub cni_version: Option<String>,
}

pub fn run(cmd: CniCmd, store: &Path, json_out: bool) -> Result<()> {
    match cmd {
        CniCmd::Install(args) => install(args, store, json_out),
    }
}

fn default_plugin() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let bin = exe.with_file_name("vxmesh-cni");
    if !bin.is_file() {
        bail!(
            "the plugin binary {} does not exist: build it (cargo build -p vxmesh-cni) or pass --plugin PATH",
            bin.display()
        );
    }
    Ok(bin)
}

/// The versions a plugin reports with CNI_COMMAND=VERSION.
fn plugin_versions(plugin: &Path) -> Result<Vec<String>> {
    let mut child = Command::new(plugin)
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot run {}", plugin.display()))?;
    {
        use std::io::Write;
        let mut input = child.stdin.take().expect("piped stdin");
        let _ = input.write_all(br#"{"cniVersion":"1.0.0"}"#);
    }
    let out = child.wait_with_output()?;
    let v: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("{} VERSION printed no JSON", plugin.display()))?;
    Ok(v["supportedVersions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default())
}

fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let tmp = path.with_extension("vxmesh-tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot rename to {}", path.display()))
}

fn install(args: InstallArgs, store: &Path, json_out: bool) -> Result<()> {
    overlay_core::validate::network_name(&args.network)?;
    if let Some(n) = &args.node {
        overlay_core::validate::node_name(n)?;
    }
    if store.exists() {
        let catalog = vxmesh::open_catalog(store)?;
        catalog
            .network(&args.network)
            .with_context(|| format!("--network {}", args.network))?;
    } else {
        bail!(
            "the store {} does not exist; create the network first (vxmesh network create)",
            store.display()
        );
    }
    let plugin = match &args.plugin {
        Some(p) => p.clone(),
        None => default_plugin()?,
    };
    let bytes =
        std::fs::read(&plugin).with_context(|| format!("cannot read {}", plugin.display()))?;

    // portmap from the bin dir, else Debian's reference plugins.
    let portmap = (!args.no_portmap)
        .then(|| {
            [
                args.bin_dir.join("portmap"),
                Path::new(REFERENCE_DIR).join("portmap"),
            ]
            .into_iter()
            .find(|p| p.is_file())
        })
        .flatten();
    // The version, chosen (or checked) before anything is written.
    let mut chain = vec![Speaker {
        name: format!("the vxmesh plugin ({})", plugin.display()),
        versions: plugin_versions(&plugin)?,
    }];
    if let Some(pm) = &portmap {
        chain.push(Speaker {
            name: format!("portmap ({})", pm.display()),
            versions: plugin_versions(pm)?,
        });
    }
    let version = cni_version::choose(&chain, args.cni_version.as_deref())?;
    let version_note = (args.cni_version.is_none()
        && cni_version::choose(&chain[..1], None).ok().as_ref() != Some(&version))
    .then(|| {
        format!(
            "cniVersion {version}: the newest every plugin of the chain speaks ({})",
            chain
                .iter()
                .map(|s| format!("{}: {}", s.name, s.versions.join(", ")))
                .collect::<Vec<_>>()
                .join("; ")
        )
    });

    for dir in [&args.bin_dir, &args.conf_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let bin = args.bin_dir.join(PLUGIN_TYPE);
    write_atomically(&bin, &bytes, 0o755)?;

    let mut vx = json!({
        "type": PLUGIN_TYPE,
        "network": args.network,
        "store": std::path::absolute(store).unwrap_or_else(|_| store.to_path_buf()),
        "capabilities": {"ips": true, "mac": true},
    });
    if let Some(n) = &args.node {
        vx["node"] = n.clone().into();
    }
    let mut plugins = vec![vx];
    if portmap.is_some() {
        plugins
            .push(json!({"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}));
    }
    let name = format!("vxmesh-{}", args.network);
    let conflist = json!({"cniVersion": version, "name": name, "plugins": plugins});
    let conf_path = args.conf_dir.join(format!("10-{name}.conflist"));
    let mut text = serde_json::to_string_pretty(&conflist)?;
    text.push('\n');
    write_atomically(&conf_path, text.as_bytes(), 0o644)?;

    let portmap_note = match &portmap {
        Some(p) if p.parent() != Some(args.bin_dir.as_path()) => Some(format!(
            "portmap is chained from {}: the runtime's CNI path must include {}",
            p.display(),
            p.parent()
                .map(|d| d.display().to_string())
                .unwrap_or_default()
        )),
        _ => None,
    };
    if json_out {
        super::output::json(&json!({
            "plugin": bin,
            "conflist": conf_path,
            "cniVersion": version,
            "portmap": portmap,
            "note": portmap_note,
            "versionNote": version_note,
        }));
    } else {
        println!("installed {} (from {})", bin.display(), plugin.display());
        println!(
            "wrote {} (cniVersion {version}{})",
            conf_path.display(),
            if portmap.is_some() {
                ", portmap chained"
            } else {
                ""
            }
        );
        for n in portmap_note.iter().chain(version_note.iter()) {
            println!("note: {n}");
        }
    }
    Ok(())
}
