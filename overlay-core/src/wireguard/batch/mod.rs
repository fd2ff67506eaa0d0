//! The batched userspace WireGuard datapath (placeholder while being written).

pub mod coalesce;
pub mod csum;
pub mod segment;
pub mod vnet;
