//! The vxmesh CNI plugin. Arrives with the CNI issue; this crate holds nothing yet.
