//! A replica: a container network namespace on a host, attached to the service's network with
//! [`vxmesh::attach_container`], running an HTTP server that answers every request with the
//! replica's name and version (`web.3/v2 CLIENT_ADDR CLIENT_PORT`, the lab replica's answer:
//! [`vxmesh::lab::replica::answer`]).
//!
//! The server is a task on the orchestrator's own tokio runtime: its listening socket is made
//! on a thread inside the container's namespace, and a socket stays in the namespace it was
//! made in, wherever it is served from.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use tokio::task::AbortHandle;
use vxmesh::lab::replica::{listen, serve_on};
use vxmesh::{netns, Catalog, ContainerSpec};

use crate::OrchestratorError;

/// The container's interface name.
pub const IFNAME: &str = "eth0";

/// What to start.
#[derive(Debug, Clone)]
pub struct ReplicaSpec {
    /// The replica's name, also its endpoint id on the network (`web.3`).
    pub name: String,
    /// The version it serves (the answer's `/VERSION` suffix).
    pub version: String,
    /// The network it is attached to.
    pub network: String,
    /// The node (host) it runs on.
    pub node: String,
    /// The host's network namespace file (`None`: the calling thread's).
    pub host_netns: Option<PathBuf>,
    /// The name of the container namespace to create (`/run/netns/NAME`).
    pub netns: String,
    /// The TCP port its server listens on, on every address of its namespace.
    pub port: u16,
}

/// A running replica.
#[derive(Debug)]
pub struct Replica {
    /// How it was started.
    pub spec: ReplicaSpec,
    /// Its address on the network.
    pub address: Ipv4Addr,
    server: AbortHandle,
}

impl Replica {
    /// Creates the namespace, attaches it to the network (which records the endpoint in the
    /// store: every agent learns it), and starts the server. Undoes what it did on failure.
    /// Must be called on a tokio runtime (the server is a task on it).
    ///
    /// Errors: [`OrchestratorError::Netns`] (the namespace exists or cannot be made),
    /// [`OrchestratorError::Container`] (no such network, the host's agent has not built the
    /// network's bridge yet, the store refuses), [`OrchestratorError::Io`] (the port).
    pub async fn start(catalog: &Catalog, spec: ReplicaSpec) -> Result<Replica, OrchestratorError> {
        let path = netns::create(&spec.netns)?;
        match Self::attach_and_serve(catalog, &spec, path).await {
            Ok((address, server)) => Ok(Replica {
                spec,
                address,
                server,
            }),
            Err(e) => {
                let _ = remove_container(catalog.clone(), spec).await;
                Err(e)
            }
        }
    }

    async fn attach_and_serve(
        catalog: &Catalog,
        spec: &ReplicaSpec,
        path: PathBuf,
    ) -> Result<(Ipv4Addr, AbortHandle), OrchestratorError> {
        let container = ContainerSpec {
            network: spec.network.clone(),
            node: spec.node.clone(),
            id: spec.name.clone(),
            host_netns: spec.host_netns.clone(),
            container_netns: path.clone(),
            ifname: IFNAME.into(),
            ip: None,
        };
        let c = catalog.clone();
        let (endpoint, _) = blocking(move || vxmesh::attach_container(&c, &container)).await??;
        let port = spec.port;
        let listener = netns::block_on_in(&path, move || async move {
            listen(port).and_then(|l| l.into_std())
        })??;
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let answer_name = format!("{}/{}", spec.name, spec.version);
        let server = tokio::spawn(serve_on(answer_name, listener)).abort_handle();
        Ok((endpoint.ip, server))
    }

    /// Stops the server: its listening socket closes (new connections are refused); requests
    /// in flight are answered.
    pub fn stop_server(&self) {
        self.server.abort();
    }

    /// Stops the server, detaches the container (its veth and endpoint record) and deletes its
    /// namespace. Call it once no traffic is sent to it any more (see the controller's drain).
    pub async fn remove(self, catalog: &Catalog) -> Result<(), OrchestratorError> {
        self.stop_server();
        remove_container(catalog.clone(), self.spec).await
    }
}

/// Detaches the container and deletes its namespace (each step also when already undone).
async fn remove_container(catalog: Catalog, spec: ReplicaSpec) -> Result<(), OrchestratorError> {
    blocking(move || {
        vxmesh::detach_container(&catalog, spec.host_netns, &spec.network, &spec.name)?;
        netns::delete(&spec.netns)?;
        Ok(())
    })
    .await?
}

/// Runs `f` (netlink, namespace switching: blocking work) on the runtime's blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, OrchestratorError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| OrchestratorError::Io(std::io::Error::other(e)))
}
