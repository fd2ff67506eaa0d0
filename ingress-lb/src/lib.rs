//! vxmesh services (placeholder, filled below).
pub mod catalog;
pub mod keys;
pub mod maglev;
pub mod service;
