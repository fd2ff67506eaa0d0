//! Loading a node's datapath: both objects with their maps pinned by name (reused when
//! already pinned: same map ids, entries kept), programs through the verifier and pinned.

use aya::{programs::Program, Ebpf, EbpfLoader, VerifierLogLevel};

use crate::{
    config::DatapathConfig,
    error::{Error, Result},
    maps::Maps,
    objects::{HOST_OBJ, HOST_PROGRAMS, LXC_OBJ, LXC_PROGRAMS, SOCK_OBJ, SOCK_PROGRAMS},
    pins::{ensure_bpffs, unpin, NodePins},
};

/// A node's loaded datapath: the programs (loaded, pinned, not yet attached), the typed map
/// handles, and the pin layout. Dropping it detaches nothing: what is attached stays
/// attached through its pinned links, and the next [`Datapath::load`] of the same node takes
/// it over. [`crate::teardown`] removes it all.
pub struct Datapath {
    pub(crate) config: DatapathConfig,
    pub(crate) pins: NodePins,
    pub(crate) lxc: Ebpf,
    pub(crate) sock: Ebpf,
    pub(crate) host: Ebpf,
    maps: Maps,
}

/// Loads object `bytes` with its maps pinned by name under `pins.maps` (reused when pinned),
/// `sizes` overriding the `max_entries` of maps it names.
pub(crate) fn load_object(
    object: &'static str,
    bytes: &[u8],
    sizes: &[(&'static str, u32)],
    pins: &NodePins,
) -> Result<Ebpf> {
    let mut loader = EbpfLoader::new();
    loader
        .default_map_pin_directory(&pins.maps)
        .verifier_log_level(VerifierLogLevel::DEBUG | VerifierLogLevel::STATS);
    for &(name, size) in sizes {
        loader.map_max_entries(name, size);
    }
    loader.load(bytes).map_err(|e| Error::Load {
        object,
        source: Box::new(e),
    })
}

/// Loads programs `names` of `ebpf` through the verifier and pins each at `progs/<name>`
/// (replacing the pin of an earlier load).
pub(crate) fn load_programs(
    object: &'static str,
    ebpf: &mut Ebpf,
    names: &[&'static str],
    pins: &NodePins,
) -> Result<()> {
    for &name in names {
        let prog = ebpf.program_mut(name).ok_or(Error::Missing {
            object,
            kind: "program",
            name,
        })?;
        let loaded = match prog {
            Program::SchedClassifier(p) => p.load(),
            Program::CgroupSockAddr(p) => p.load(),
            Program::CgroupSock(p) => p.load(),
            _ => {
                return Err(Error::invalid(
                    "program section",
                    format!("{name} in {object}.o has an unexpected type"),
                ))
            }
        };
        loaded.map_err(|e| Error::program(name, "load (verifier)", e))?;
        let path = pins.progs.join(name);
        unpin(&path)?;
        prog.pin(&path).map_err(|e| Error::Pin {
            what: format!("program {name}"),
            path: path.clone(),
            source: e,
        })?;
    }
    Ok(())
}

impl Datapath {
    /// Loads the datapath of `config.node`: mounts bpffs if needed, creates
    /// `<pin_root>/<node>/{maps,progs,links}`, creates or reuses every map (pinned by name),
    /// loads every program through the verifier and pins it under `progs/` (replacing the
    /// pins of a previous load).
    ///
    /// Errors: [`Error::Invalid`] for a bad config, [`Error::Bpffs`]/[`Error::PinPath`] for
    /// the file system, [`Error::Load`] when an object or map is refused,
    /// [`Error::Program`] with the verifier's log when a program is.
    pub fn load(config: DatapathConfig) -> Result<Self> {
        config.validate()?;
        ensure_bpffs(&config.pin_root)?;
        let pins = NodePins::new(&config.pin_root, &config.node)?;
        pins.create()?;
        let sizes = config.map_sizes();
        let mut lxc = load_object("lxc", LXC_OBJ, &sizes, &pins)?;
        let mut sock = load_object("sock", SOCK_OBJ, &sizes, &pins)?;
        let mut host = load_object("host", HOST_OBJ, &sizes, &pins)?;
        load_programs("lxc", &mut lxc, &LXC_PROGRAMS, &pins)?;
        load_programs("sock", &mut sock, &SOCK_PROGRAMS, &pins)?;
        load_programs("host", &mut host, &HOST_PROGRAMS, &pins)?;
        let maps = Maps::from_maps(&pins, |name| {
            lxc.take_map(name).ok_or(Error::Missing {
                object: "lxc",
                kind: "map",
                name,
            })
        })?;
        tracing::info!(node = %config.node, dir = %pins.node_dir.display(), "datapath loaded");
        Ok(Self {
            config,
            pins,
            lxc,
            sock,
            host,
            maps,
        })
    }

    /// The typed map handles.
    pub fn maps(&self) -> &Maps {
        &self.maps
    }

    /// The typed map handles, for writing.
    pub fn maps_mut(&mut self) -> &mut Maps {
        &mut self.maps
    }

    /// The pin layout of this node.
    pub fn pins(&self) -> &NodePins {
        &self.pins
    }

    /// The configuration it was loaded with.
    pub fn config(&self) -> &DatapathConfig {
        &self.config
    }
}
