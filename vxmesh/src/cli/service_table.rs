//! `vxmesh service ls` and `service inspect` for people.

use vxmesh::services::{
    BackendInspection, HealthView, ListedService, NodeInspection, ServiceInspection, ServiceView,
};

use super::output;

/// `1s`, `1.5s` → `1500ms`, `2m`.
fn duration(ms: u32) -> String {
    match ms {
        m if m % 60_000 == 0 && m > 0 => format!("{}m", m / 60_000),
        m if m % 1000 == 0 && m > 0 => format!("{}s", m / 1000),
        m => format!("{m}ms"),
    }
}

fn health(h: &HealthView) -> String {
    if h.check == "none" {
        return "none".into();
    }
    format!(
        "{} every {}, timeout {}, rise {}, fall {}",
        h.check,
        duration(h.interval_ms),
        duration(h.timeout_ms),
        h.rise,
        h.fall
    )
}

fn ports(s: &ServiceView) -> String {
    let all: Vec<String> = s.ports.iter().map(|p| p.to_string()).collect();
    all.join(",")
}

fn table_size(s: &ServiceView) -> String {
    match (s.table_size, s.maglev_table_size) {
        (Some(m), Some(_)) => format!("{m} slots (set)"),
        (Some(m), None) => format!("{m} slots (auto)"),
        (None, _) => "-".into(),
    }
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

pub fn print_list(list: &[ListedService]) {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|l| {
            let s = &l.service;
            let up = if l.orphaned {
                "orphaned (network removed)".to_string()
            } else {
                format!("{}/{} up", l.backends_up, s.backends.len())
            };
            vec![
                s.name.clone(),
                s.network.clone(),
                s.vip.to_string(),
                ports(s),
                up,
                s.health.check.clone(),
                affinity(s).into(),
            ]
        })
        .collect();
    output::table(
        &[
            "NAME", "NETWORK", "VIP", "PORTS", "BACKENDS", "HEALTH", "AFFINITY",
        ],
        &rows,
    );
}

fn affinity(s: &ServiceView) -> &'static str {
    match s.affinity {
        vxmesh::Affinity::None => "none",
        vxmesh::Affinity::ClientIp => "client-ip",
    }
}

fn backend_row(b: &BackendInspection) -> Vec<String> {
    let status = match (&b.health, b.status) {
        (Some(h), "down") if !h.detail.is_empty() => format!("down ({})", h.detail),
        (_, s) => s.to_string(),
    };
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    vec![
        b.endpoint.clone(),
        b.id.to_string(),
        or_dash(b.node.clone()),
        or_dash(b.ip.map(|i| i.to_string())),
        b.weight.to_string(),
        format!("{:?}", b.state).to_lowercase(),
        status,
        b.table_slots.to_string(),
    ]
}

fn node_row(n: &NodeInspection) -> Vec<String> {
    let dir = n.pin_dir.display().to_string();
    if !n.on_this_host {
        return vec![n.node.clone(), "not on this host".into(), dir];
    }
    if let Some(e) = &n.error {
        return vec![n.node.clone(), format!("unreadable: {e}"), dir];
    }
    let ct = n.conntrack.as_ref().map_or("-".into(), |c| {
        format!(
            "{}/{} entries ({:.1} %), {} flows",
            c.entries, c.capacity, c.fill_percent, c.flows
        )
    });
    let table = n.maglev.as_ref().map_or("no table".into(), |t| {
        format!("{} slots, {}", t.slots, bytes(t.memory_bytes))
    });
    vec![
        n.node.clone(),
        "here".into(),
        dir,
        ct,
        table,
        n.no_backend_drops.unwrap_or(0).to_string(),
    ]
}

pub fn print_inspection(i: &ServiceInspection) {
    let s = &i.service;
    let orphan = if i.orphaned {
        "  (orphaned: its network was removed; it can only be removed)"
    } else {
        ""
    };
    println!("service   {} (id {}){orphan}", s.name, s.id);
    println!("network   {}", s.network);
    println!("vip       {}", s.vip);
    println!("ports     {}", ports(s));
    if !s.publish.is_empty() {
        let published: Vec<String> = s.publish.iter().map(|p| p.to_string()).collect();
        println!(
            "published {} on every host's underlay address ({} mode)",
            published.join(", "),
            s.mode
        );
    }
    println!("health    {}", health(&s.health));
    println!("affinity  {}", affinity(s));
    println!("maglev    {}", table_size(s));
    println!();
    output::table(
        &[
            "BACKEND", "ID", "NODE", "ADDRESS", "WEIGHT", "STATE", "HEALTH", "SLOTS",
        ],
        &i.backends.iter().map(backend_row).collect::<Vec<_>>(),
    );
    println!();
    output::table(
        &[
            "NODE",
            "PINS",
            "PIN DIR",
            "CONNTRACK",
            "MAGLEV TABLE",
            "NO-BACKEND DROPS",
        ],
        &i.nodes.iter().map(node_row).collect::<Vec<_>>(),
    );
    let counters: Vec<Vec<String>> = i
        .backends
        .iter()
        .flat_map(|b| {
            b.counters.iter().map(|c| {
                vec![
                    b.endpoint.clone(),
                    c.node.clone(),
                    if c.programmed { "yes" } else { "no" }.into(),
                    c.packets.to_string(),
                    c.bytes.to_string(),
                    c.connections.to_string(),
                ]
            })
        })
        .collect();
    if !counters.is_empty() {
        println!();
        output::table(
            &[
                "BACKEND",
                "NODE",
                "PROGRAMMED",
                "PACKETS",
                "BYTES",
                "CONNECTIONS",
            ],
            &counters,
        );
    }
}
