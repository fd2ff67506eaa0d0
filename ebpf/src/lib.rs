//! vxmesh kernel programs. The eBPF datapath (C programs built by clang, their map types mirrored in Rust) arrives with the ingress issue; this crate holds nothing yet.
