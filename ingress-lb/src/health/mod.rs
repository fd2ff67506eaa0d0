//! Health checks: TCP connect or HTTP GET, with interval, timeout and rise/fall thresholds.
//!
//! - [`Tracker`]: the rise/fall state machine, pure.
//! - [`check`]: one check of one address.
//! - [`HealthRunner`]: checks a changing list of targets and reports [`Transition`]s through a
//!   channel.
//! - [`SocketSource`]: where the sockets are made, so that an agent can check the backends on
//!   its node from the node's network namespace whatever namespace it runs in.

mod probe;
mod runner;
mod socket;
mod state;

pub use probe::{check, CheckResult};
pub use runner::{HealthRunner, Target, Transition};
pub use socket::SocketSource;
pub use state::{State, Tracker};

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("health checks: {0}")]
    Netns(#[from] overlay_core::netns::NetnsError),
    #[error("health checks: cannot start the namespace thread: {0}")]
    Thread(String),
    #[error("health checks need a tokio runtime: create the runner from inside one")]
    NoRuntime,
}
