//! The tc programs (`lxc.c`) under BPF_PROG_TEST_RUN: verdict and exact output packet.
mod common;

use std::net::Ipv4Addr;

use common::*;
use vxmesh_ebpf::*;

#[test]
fn loads() {
    let mut n = Node::load();
    let _ = n.dp();
}
