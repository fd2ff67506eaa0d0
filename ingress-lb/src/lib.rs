//! vxmesh services: virtual IPs in front of sets of endpoints, their catalog in the store,
//! Maglev consistent hashing and health checks. The kernel side (programs, maps, loader) is the
//! `vxmesh-ebpf` crate; the agent (in `vxmesh`) joins the two.
//!
//! # Modules
//!
//! - [`service`]: the model ([`service::Service`], its ports, backends, health check,
//!   affinity, published ports and mode), its validation (every error names the field), and
//!   the text forms of the CLI flags.
//! - [`catalog`]: [`catalog::ServiceCatalog`], the operations on overlay-core's
//!   [`overlay_core::store::Store`]: create, list, get, update, remove, health reports,
//!   network removal; and [`catalog::ServiceSnapshot`], everything a host needs at one
//!   revision, with each backend's status and each service's Maglev table.
//! - [`maglev`]: the lookup table (Eisenbud et al., "Maglev: A Fast and Reliable Software
//!   Network Load Balancer", NSDI 2016, §3.4), sizes, and the properties it keeps.
//! - [`health`]: TCP and HTTP checks, the rise/fall state machine, a runner that reports
//!   transitions, sockets made in a chosen network namespace.
//! - [`reconcile`]: the ingress reconciler: from a snapshot and a node, what the node's
//!   datapath maps hold ([`reconcile::DesiredLb`]), applied with only the differences
//!   ([`reconcile::apply_maps`]), and where the programs are attached
//!   ([`reconcile::Attacher`]).
//! - [`keys`]: the store layout.
//!
//! # Store layout
//!
//! ```text
//! /vxmesh/v1/services/NAME                            Service (JSON)
//! /vxmesh/v1/service-ids/ID                           NAME (claims the service id)
//! /vxmesh/v1/service-backend-ids                      next backend id (counter; ids never reused)
//! /vxmesh/v1/published/PROTO/PORT                     NAME (claims a published port)
//! /vxmesh/v1/health/NAME/ENDPOINT                     HealthRecord, by the backend's node's agent
//! /vxmesh/v1/dependents/networks/NET/services/NAME    the service's key
//! /vxmesh/v1/guards/dependents/NET                    written with every change above
//! /vxmesh/v1/ipam/NET/VIP                             "service:NAME" (overlay-core's IPAM)
//! ```
//!
//! Every change is one compare-and-swap built from what was just read, retried on conflict.
//! The VIP is an allocation in overlay-core's IPAM keys, written in the same transaction as
//! the service: an endpoint can never get it (overlay-core's `add_endpoint` compares the same
//! key absent), no VIP is ever an endpoint's address, two services never share one, and
//! `remove` gives it back.
//!
//! # Backend status
//!
//! [`catalog::ServiceSnapshot::backends`] decides, in this order: endpoint removed → out; the
//! endpoint's node has no live agent heartbeat (`/vxmesh/v1/agents/NODE`, on a lease) → out;
//! a check is configured and its node's agent has reported nothing yet → out; reported down →
//! out; draining → in the backend map with no table slot; else up. With no check, a backend is
//! up while its endpoint exists and its node's agent is alive.
//!
//! # How the agent uses this
//!
//! `vxmesh`'s agent (`vxmesh/src/services.rs`) does, on every store change or resync tick:
//!
//! ```text
//! let snap = services.snapshot()?;                          // one revision
//! runner.set_targets(snap.health_targets(node));            // checks of this node's backends
//! let want = DesiredLb::compute(&snap, node, |net| carried.contains(net));
//! if want.is_empty() { /* drop the datapath, vxmesh_ebpf::teardown(root, node) */ }
//! else {
//!     /* Datapath::load once */
//!     apply_maps(&want, dp.maps_mut());                     // backends, tables, frontends, VIPs
//!     attacher.apply(&mut dp, &targets);                    // cgroup + host-side veths
//! }
//! // and in a task: for each health Transition, services.report_health(service, endpoint,
//! //     node, up_or_down, detail, Some(heartbeat_lease))
//! ```
//!
//! The kernel's backend map holds more than the tables: up backends, and (flagged draining:
//! no table slot) draining ones, unchecked ones and those of a node without a heartbeat, so
//! their established flows stay; a backend reported down leaves the map, and one removed from
//! its service is also purged from the connection table ([`reconcile::DesiredLb`]).
//!
//! The store prefixes to watch: [`keys::SERVICES`], [`keys::HEALTH`], overlay-core's
//! endpoints, networks and agents. The same snapshot gives the same table on every host: the
//! backend ids come from the store and the table depends on the backend set only.
//!
//! # Maglev: sizes and measured disruption
//!
//! A service's table has [`service::Service::table_size`] slots: the user's prime, or the
//! smallest entry of [`maglev::TABLE_SIZES`] (primes just above 100 × 2^k) at least 100 × the
//! configured backends, so 10 backends cost 1,601 slots (6.4 KB of `u32`) and 10,000 such
//! services 64 MB, and health changes never resize a table. Every backend gets ⌊M/N⌋ or
//! ⌈M/N⌉ slots (within 1 % of even). Removing one of N backends moves 1/N of the slots plus
//! an excess; measured with this implementation and confirmed by an independent Python one
//! (`tests/maglev_props.rs`, `measure_disruption`): mean excess 0.96 % over N = 2..1000
//! (5 random sets each), 1.84 % over N = 2..64 (200 sets each), p99 3.3 %, worst 14.4 %
//! (N = 7, M = 809: two backends with the same `skip`). Adding one behaves the same (worst
//! 14.2 %). The issue's "at most 1/N + 1 %" is therefore not what Maglev gives at M ≈ 100 N;
//! the connection table keeps established flows where they are regardless.
//!
//! # Removing a network that has services
//!
//! overlay-core knows nothing of services, so [`catalog::ServiceCatalog::remove_network`]
//! does the check (refuse unless `force`; with `force`, remove the services first) and then
//! calls `Catalog::remove_network`. That is two steps: a service created in between is left
//! on a removed network, an orphan that never gets a table, does not follow a new network of
//! the same name (its `network_revision` is the old network's key revision) and can be
//! removed. The design that closes the gap, for overlay-core, which needs to know only this
//! convention: every object that depends on a network writes
//! `/vxmesh/v1/dependents/networks/NET/KIND/NAME` in its create transaction and deletes it in
//! its remove transaction, and both also write the guard `/vxmesh/v1/guards/dependents/NET`
//! (services do all of this already). overlay-core's `remove_network` reads the guard first,
//! then the dependents prefix, refuses while the prefix is not empty (`force` or not: `force`
//! is about endpoints; dependents are removed by their owners, as `remove_network` here does
//! before calling it), and compares the guard's revision in its transaction. A service
//! created between the two then makes the network removal fail and start again.

pub mod catalog;
pub mod health;
pub mod keys;
pub mod maglev;
pub mod reconcile;
pub mod service;
