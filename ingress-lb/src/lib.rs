//! vxmesh services (placeholder, filled below).
pub mod maglev;
