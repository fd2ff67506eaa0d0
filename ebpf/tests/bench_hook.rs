//! The micro-benchmark hook (`Datapath::bench_tc`) with 1 and 10,000 services × 10
//! backends. Prints the figures; asserts only what is not a timing (the packet is
//! translated, the figure is a positive number), never a speed.
mod common;

use std::{net::Ipv4Addr, time::Instant};

use common::*;
use vxmesh_ebpf::*;

const BACKENDS: u32 = 10;
/// The smallest prime ≥ 100 × 10 backends.
const M: usize = 1009;

/// Programs `services` services × 10 backends; returns the frame of a flow to the last one.
fn program(n: &mut Node, services: u32) -> Vec<u8> {
    let m = n.dp().maps_mut();
    let mut tables = Vec::new();
    for s in 0..services {
        let ids: Vec<u32> = (0..BACKENDS).map(|b| 1 + s * BACKENDS + b).collect();
        for (b, &id) in ids.iter().enumerate() {
            let ip = Ipv4Addr::from(0x0a80_0000 + s * 16 + b as u32);
            m.upsert_backend(id, Backend::new(ip, 8080, 0)).unwrap();
        }
        tables.push((
            s + 1,
            (0..M).map(|i| ids[i % ids.len()]).collect::<Vec<u32>>(),
        ));
    }
    let refs: Vec<(u32, &[u32])> = tables.iter().map(|(id, t)| (*id, &t[..])).collect();
    m.replace_maglev_tables(&refs).unwrap();
    for s in 0..services {
        let vip = Ipv4Addr::from(0x0a60_0000 + s);
        m.upsert_service(
            SvcKey::new(vip, 80, IPPROTO_TCP),
            Svc {
                id: s + 1,
                flags: 0,
                affinity_timeout_s: 0,
            },
        )
        .unwrap();
    }
    let vip = Ipv4Addr::from(0x0a60_0000 + services - 1);
    Spec::tcp_syn(Ipv4Addr::new(10, 0, 1, 1), 40000, vip, 80).frame()
}

#[test]
fn bench_hook_reports_ns_per_packet() {
    for services in [1u32, 10_000] {
        let mut n = Node::load_with(|c| {
            c.max_services = 16_384;
            c.max_backends = 131_072;
        });
        let t = Instant::now();
        let frame = program(&mut n, services);
        let programmed = t.elapsed();
        let out = n.dp().run_tc(PROG_FROM_LXC, &frame).unwrap();
        assert_eq!(out.verdict, TC_ACT_OK);
        assert_ne!(out.packet, frame, "translated");
        let ns = n.dp().bench_tc(PROG_FROM_LXC, &frame, 1_000_000).unwrap();
        let mem = n.dp().maps().maglev_memory_bytes().unwrap();
        println!(
            "services={services} backends={} ns/packet={ns:.0} (established flow) \
             programmed in {programmed:?} maglev tables {mem} bytes",
            services * BACKENDS
        );
        assert!(ns > 0.0);
        assert!(mem >= u64::from(services) * (M as u64 + 1) * 4);
    }
}
