//! vxmesh services (placeholder, filled below).
pub mod catalog;
pub mod health;
pub mod keys;
pub mod maglev;
pub mod service;
