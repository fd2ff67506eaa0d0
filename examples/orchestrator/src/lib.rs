//! An example orchestrator on the `vxmesh` library, and the model to copy: it does what
//! `docker service create --replicas 6 -p 8080:80 --network front web` does in Swarm, with
//! nothing but the `vxmesh` crate (and generic libraries: tokio, clap, thiserror).
//!
//! - [`hosts`]: runs one vxmesh agent per host in this process ([`vxmesh::agent::Agent::spawn`],
//!   each programming its host's network namespace);
//! - [`placement`]: spreads replicas over the live hosts, picks the ones to remove;
//! - [`replica`]: a replica is a container network namespace attached to the network
//!   ([`vxmesh::attach_container`]) running an HTTP server that answers with its name;
//! - [`controller`]: deploy, scale, rolling update, and the reconciler that replaces the
//!   replicas of a dead host, through [`vxmesh::ServiceCatalog`] (backends with a health
//!   check) and [`vxmesh::wait::wait_applied`] (every host has applied a change);
//! - the binary (`src/main.rs`, `src/cli.rs`): the same as commands read from stdin.
//!
//! ```no_run
//! # async fn demo() -> Result<(), vxmesh_orchestrator::OrchestratorError> {
//! use std::time::Duration;
//! use vxmesh_orchestrator::{DeploySpec, HostSpec, Options, Orchestrator};
//!
//! // A lab made with `vxmesh lab up --prefix vxlab --containers-per-host 0`, and a network
//! // `front` (`vxmesh network create front --subnet 10.20.0.0/24`).
//! let lab = vxmesh::lab::LabState::load("vxlab")?;
//! let catalog = vxmesh::open_catalog(&lab.store)?;
//! let orch = Orchestrator::start(catalog, HostSpec::take_over_lab("vxlab", &[])?, Options::default()).await?;
//! let _reconciler = orch.spawn_reconciler();
//! let mut web = DeploySpec::new("web", 6, "front");
//! web.publish = vec!["8080:80".parse().expect("a published port")];
//! orch.deploy(web).await?;
//! orch.update("web", "v2", Duration::from_secs(1)).await?;
//! orch.scale("web", 3).await?;
//! for r in orch.ps("web").await? {
//!     println!("{} {} on {} ({})", r.name, r.version, r.node, r.state);
//! }
//! # Ok(()) }
//! ```
//!
//! Tested by `tests/tests/orchestrator.rs`, which drives this library in the test's own
//! process on a 3-host lab: it takes over the agents of h1 and h2 ([`HostSpec::take_over_lab`]
//! with `keep = ["h3"]`) and leaves h3's `vxmesh agent` process to the lab, so that the test
//! can kill it with SIGKILL (an agent stopped through its handle removes its heartbeat at
//! once; a killed one's stays until its lease expires, as when a machine dies). Through h1's
//! published port, a client loop sees no failure during a rolling update of 6 replicas and
//! scale 6 → 3 → 6, and failures only until the dead host's replicas are replaced.

#![deny(missing_docs)]

pub mod controller;
pub mod hosts;
pub mod placement;
pub mod replica;

pub use controller::{DeploySpec, Options, Orchestrator, ReplicaStatus};
pub use hosts::{HostSpec, Hosts};

use std::time::Duration;

/// Everything the orchestrator can fail with.
#[derive(Debug, thiserror::Error)]
pub enum OrchestratorError {
    /// The service catalog refused a change (a bad spec, an unknown backend, the store).
    #[error(transparent)]
    Service(#[from] vxmesh::ServiceError),
    /// The store refused or failed (an unknown network, …).
    #[error(transparent)]
    Catalog(#[from] vxmesh::CatalogError),
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] vxmesh::StoreError),
    /// A container could not be attached or detached.
    #[error(transparent)]
    Container(#[from] vxmesh::ContainerError),
    /// A network namespace could not be made, entered or deleted.
    #[error(transparent)]
    Netns(#[from] vxmesh::netns::NetnsError),
    /// An agent could not start or stop.
    #[error(transparent)]
    Agent(#[from] vxmesh::agent::AgentError),
    /// The hosts did not apply a change in time.
    #[error(transparent)]
    Wait(#[from] vxmesh::wait::WaitError),
    /// The lab could not be read or its agents stopped.
    #[error(transparent)]
    Lab(#[from] vxmesh::lab::LabError),
    /// A socket or a thread.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// No service of that name was deployed by this orchestrator.
    #[error("service {0} is not deployed here")]
    Unknown(String),
    /// A service of that name is deployed already.
    #[error("service {0} is deployed already")]
    Exists(String),
    /// The network has no room for that many replicas (a rolling update needs one more).
    #[error("invalid replicas '{wanted}': network {network} has room for {room} more endpoint(s) ({free} free addresses; a rolling update needs one spare)")]
    NoRoom {
        /// The network.
        network: String,
        /// The replicas asked for.
        wanted: usize,
        /// How many more replicas fit, keeping one address for a rolling update.
        room: usize,
        /// Free addresses in the network's subnet now.
        free: usize,
    },
    /// Every host is down.
    #[error("no live host to place a replica of {0} on")]
    NoLiveHost(String),
    /// A new replica did not become healthy in time (it was removed again).
    #[error("replica {replica} not healthy after {waited:?} (backend status {status})")]
    NotHealthy {
        /// The replica.
        replica: String,
        /// How long it was waited for.
        waited: Duration,
        /// Its backend status then.
        status: String,
    },
}
