//! Drop filters on a device's tc ingress hook: `cls_bpf` in direct-action mode running a
//! classic BPF program that drops IPv4 UDP to one destination port, like
//! `tc filter add dev X ingress pref P protocol ip bpf bytecode '…' da`.
//!
//! Classic BPF is used because it needs neither the `bpf()` system call nor a tc action
//! module: a direct-action program returns the verdict itself (`TC_ACT_SHOT`), so only
//! `sch_ingress` and `cls_bpf` are required (no `cls_flower`, no `act_gact`).

use std::collections::BTreeMap;

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_core::{DefaultNla, Nla, NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::tc::{
    TcAttribute, TcBpfFlags, TcFilterBpf, TcFilterBpfOption, TcHandle, TcMessage, TcOption,
};
use netlink_packet_route::RouteNetlinkMessage;

use super::error::nl;
use super::{Dataplane, DataplaneError};

const ETH_P_IP: u16 = 0x0800;
const TCA_BPF_OPS_LEN: u16 = 4;
const TCA_BPF_OPS: u16 = 5;
const TC_ACT_SHOT: u32 = 2;
/// `TC_ACT_UNSPEC` (-1): "no verdict", the packet goes on to the next filter.
const TC_ACT_UNSPEC: u32 = u32::MAX;

/// The parent of ingress filters (`ffff:fff2`), for an `ingress` or a `clsact` qdisc.
const INGRESS_PARENT: TcHandle = TcHandle {
    major: 0xffff,
    minor: TcHandle::MIN_INGRESS,
};

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SockFilter {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

const fn insn(code: u16, jt: u8, jf: u8, k: u32) -> SockFilter {
    SockFilter { code, jt, jf, k }
}

/// Drops IPv4 UDP packets to `port` (first fragments and whole packets; later fragments carry
/// no UDP header and cannot be reassembled without the first). On an Ethernet frame, as
/// `tcpdump -dd 'ip and udp dst port PORT'`, with tc verdicts as return values.
fn udp_drop_program(port: u16) -> [SockFilter; 11] {
    [
        insn(0x28, 0, 0, 12),                  // ldh [12]           ethertype
        insn(0x15, 0, 8, u32::from(ETH_P_IP)), // jeq #0x800         else pass
        insn(0x30, 0, 0, 23),                  // ldb [23]           IP protocol
        insn(0x15, 0, 6, 17),                  // jeq #17 (UDP)      else pass
        insn(0x28, 0, 0, 20),                  // ldh [20]           flags + fragment offset
        insn(0x45, 4, 0, 0x1fff),              // jset #0x1fff       later fragment: pass
        insn(0xb1, 0, 0, 14),                  // ldxb 4*([14]&0xf)  IP header length
        insn(0x48, 0, 0, 16),                  // ldh [x+16]         UDP destination port
        insn(0x15, 0, 1, u32::from(port)),     // jeq #port          else pass
        insn(0x06, 0, 0, TC_ACT_SHOT),         // ret #TC_ACT_SHOT
        insn(0x06, 0, 0, TC_ACT_UNSPEC),       // ret #TC_ACT_UNSPEC
    ]
}

/// The most prefixes one [`prefix_drop_program`] holds: classic BPF allows 4096
/// instructions (BPF_MAXINSNS) and each prefix takes 4.
pub const MAX_DROPPED_PREFIXES: usize = 1000;

/// Drops IPv4 packets whose destination is in any of `prefixes` (whole packets and every
/// fragment: the destination is in each fragment's header); passes everything else on. Each
/// prefix is checked by its own four instructions (load the destination, mask, compare, drop),
/// so every jump is short whatever the number of prefixes.
fn prefix_drop_program(prefixes: &[Ipv4Net]) -> Vec<SockFilter> {
    let mut p = vec![
        insn(0x28, 0, 0, 12),                  // ldh [12]           ethertype
        insn(0x15, 1, 0, u32::from(ETH_P_IP)), // jeq #0x800         IPv4: go on
        insn(0x06, 0, 0, TC_ACT_UNSPEC),       // ret #TC_ACT_UNSPEC not IPv4: pass
    ];
    for net in prefixes {
        p.extend([
            insn(0x20, 0, 0, 30),                       // ld [30]   destination
            insn(0x54, 0, 0, u32::from(net.netmask())), // and #mask
            insn(0x15, 0, 1, u32::from(net.network())), // jeq #net  else next prefix
            insn(0x06, 0, 0, TC_ACT_SHOT),              // ret #TC_ACT_SHOT
        ]);
    }
    p.push(insn(0x06, 0, 0, TC_ACT_UNSPEC)); // ret #TC_ACT_UNSPEC
    p
}

fn encode(program: &[SockFilter]) -> Vec<u8> {
    let mut out = Vec::with_capacity(program.len() * 8);
    for i in program {
        out.extend_from_slice(&i.code.to_ne_bytes());
        out.push(i.jt);
        out.push(i.jf);
        out.extend_from_slice(&i.k.to_ne_bytes());
    }
    out
}

/// The port a program made by [`udp_drop_program`] drops, if `ops` is exactly such a program.
fn dropped_port(ops: &[u8]) -> Option<u16> {
    if ops.len() != 11 * 8 {
        return None;
    }
    let k8 = u32::from_ne_bytes(ops[8 * 8 + 4..8 * 8 + 8].try_into().ok()?);
    let port = u16::try_from(k8).ok()?;
    (encode(&udp_drop_program(port)) == ops).then_some(port)
}

/// A filter on a device's ingress hook, as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressFilter {
    /// Priority (`pref`).
    pub pref: u16,
    /// Ethertype (host order), e.g. 0x0800 for `protocol ip`.
    pub protocol: u16,
    /// Classifier (`bpf`, `u32`, …).
    pub kind: String,
    /// `Some(port)` when this is a direct-action filter made by
    /// [`Dataplane::add_udp_drop_filter`] for `port`.
    pub drops_udp_port: Option<u16>,
    /// The classic BPF program of a `bpf` filter (`TCA_BPF_OPS`, raw `struct sock_filter`s).
    pub ops: Option<Vec<u8>>,
    /// Whether the filter is in direct-action mode.
    pub direct_action: bool,
}

impl IngressFilter {
    /// Is this exactly the filter [`Dataplane::add_prefix_drop_filter`] makes for `prefixes`
    /// (same prefixes, same order)?
    pub fn drops_exactly(&self, prefixes: &[Ipv4Net]) -> bool {
        self.kind == TcFilterBpf::KIND
            && self.direct_action
            && self.protocol == ETH_P_IP
            && self.ops.as_deref() == Some(encode(&prefix_drop_program(prefixes)).as_slice())
    }
}

fn parse_filter(msg: &TcMessage) -> IngressFilter {
    let mut kind = String::new();
    let mut ops = None;
    let mut direct = false;
    for attr in &msg.attributes {
        match attr {
            TcAttribute::Kind(k) => kind = k.clone(),
            TcAttribute::Options(opts) => {
                for o in opts {
                    match o {
                        TcOption::Bpf(TcFilterBpfOption::Flags(f)) => {
                            direct = f.contains(TcBpfFlags::DirectAction)
                        }
                        TcOption::Bpf(TcFilterBpfOption::Other(nla))
                            if nla.kind() == TCA_BPF_OPS =>
                        {
                            let mut buf = vec![0u8; nla.value_len()];
                            nla.emit_value(&mut buf);
                            ops = Some(buf);
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let drops_udp_port = (kind == TcFilterBpf::KIND && direct)
        .then(|| ops.as_deref().and_then(dropped_port))
        .flatten();
    IngressFilter {
        pref: (msg.header.info >> 16) as u16,
        protocol: u16::from_be((msg.header.info & 0xffff) as u16),
        kind,
        drops_udp_port,
        ops,
        direct_action: direct,
    }
}

fn filter_info(pref: u16, protocol: u16) -> u32 {
    (u32::from(pref) << 16) | u32::from(protocol.to_be())
}

impl Dataplane {
    /// Every device that has a qdisc on its ingress hook, by index, with the qdisc's kind
    /// (`ingress` or `clsact`).
    pub async fn ingress_qdiscs(&self) -> Result<BTreeMap<u32, String>, DataplaneError> {
        let msgs: Vec<TcMessage> = self
            .handle
            .qdisc()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(nl("list qdiscs", "all devices"))?;
        Ok(msgs
            .iter()
            .filter(|m| m.header.parent == TcHandle::INGRESS && m.header.index > 0)
            .filter_map(|m| {
                let kind = m.attributes.iter().find_map(|a| match a {
                    TcAttribute::Kind(k) => Some(k.clone()),
                    _ => None,
                })?;
                Some((m.header.index as u32, kind))
            })
            .collect())
    }

    /// Adds an `ingress` qdisc to a device, like `tc qdisc add dev X ingress`.
    pub async fn add_ingress_qdisc(&self, index: u32) -> Result<(), DataplaneError> {
        self.handle
            .qdisc()
            .add(index as i32)
            .ingress()
            .execute()
            .await
            .map_err(nl("add ingress qdisc", format_args!("index {index}")))
    }

    /// Adds a `clsact` qdisc to a device, like `tc qdisc add dev X clsact`: ingress and egress
    /// hooks for filters.
    pub async fn add_clsact_qdisc(&self, index: u32) -> Result<(), DataplaneError> {
        let mut msg = TcMessage::with_index(index as i32);
        msg.header.parent = TcHandle::INGRESS; // TC_H_CLSACT is the same value
        msg.header.handle = TcHandle::from(0xffff_0000);
        msg.attributes.push(TcAttribute::Kind("clsact".to_string()));
        self.request_ack(
            RouteNetlinkMessage::NewQueueDiscipline(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .await
        .map_err(nl("add clsact qdisc", format_args!("index {index}")))
    }

    /// The filters on a device's egress hook (empty when it has no clsact qdisc).
    pub async fn egress_filters(&self, index: u32) -> Result<Vec<IngressFilter>, DataplaneError> {
        let msgs: Vec<TcMessage> = self
            .handle
            .traffic_filter(index as i32)
            .get()
            .egress()
            .execute()
            .try_collect()
            .await
            .map_err(nl("list egress filters", format_args!("index {index}")))?;
        Ok(msgs
            .iter()
            .filter(|m| m.header.index == index as i32 && u32::from(m.header.handle) != 0)
            .map(parse_filter)
            .collect())
    }

    /// Deletes a device's `ingress` qdisc and every filter on it, like
    /// `tc qdisc del dev X ingress`.
    pub async fn delete_ingress_qdisc(&self, index: u32) -> Result<(), DataplaneError> {
        let mut msg = TcMessage::with_index(index as i32);
        msg.header.parent = TcHandle::INGRESS;
        msg.header.handle = TcHandle::from(0xffff_0000);
        self.request_ack(RouteNetlinkMessage::DelQueueDiscipline(msg), 0)
            .await
            .map_err(nl("delete ingress qdisc", format_args!("index {index}")))
    }

    /// The filters on a device's ingress hook (empty when it has no ingress qdisc).
    pub async fn ingress_filters(&self, index: u32) -> Result<Vec<IngressFilter>, DataplaneError> {
        let msgs: Vec<TcMessage> = self
            .handle
            .traffic_filter(index as i32)
            .get()
            .ingress()
            .execute()
            .try_collect()
            .await
            .map_err(nl("list ingress filters", format_args!("index {index}")))?;
        Ok(msgs
            .iter()
            // Handle 0: the head of a priority's list, not a filter.
            .filter(|m| m.header.index == index as i32 && u32::from(m.header.handle) != 0)
            .map(parse_filter)
            .collect())
    }

    /// Adds a filter on a device's ingress hook (which must have an ingress or clsact qdisc)
    /// that drops IPv4 UDP packets to `port`, at priority `pref`.
    pub async fn add_udp_drop_filter(
        &self,
        index: u32,
        pref: u16,
        port: u16,
    ) -> Result<(), DataplaneError> {
        self.add_classic_filter(index, pref, &udp_drop_program(port))
            .await
    }

    /// Adds a filter on a device's ingress hook (which must have an ingress or clsact qdisc)
    /// that drops IPv4 packets to any address of `prefixes`, at priority `pref`. Errors:
    /// `Invalid` naming "prefixes" with more than [`MAX_DROPPED_PREFIXES`].
    pub async fn add_prefix_drop_filter(
        &self,
        index: u32,
        pref: u16,
        prefixes: &[Ipv4Net],
    ) -> Result<(), DataplaneError> {
        if prefixes.len() > MAX_DROPPED_PREFIXES {
            return Err(DataplaneError::invalid(
                "prefixes",
                format_args!(
                    "{} prefixes, at most {MAX_DROPPED_PREFIXES} fit one classic BPF filter",
                    prefixes.len()
                ),
            ));
        }
        self.add_classic_filter(index, pref, &prefix_drop_program(prefixes))
            .await
    }

    /// Adds a direct-action `cls_bpf` filter running a classic BPF `program` for IPv4.
    async fn add_classic_filter(
        &self,
        index: u32,
        pref: u16,
        program: &[SockFilter],
    ) -> Result<(), DataplaneError> {
        let mut msg = TcMessage::with_index(index as i32);
        msg.header.parent = INGRESS_PARENT;
        msg.header.info = filter_info(pref, ETH_P_IP);
        // A fixed handle: adding the same filter twice fails (EEXIST) instead of making two.
        msg.header.handle = TcHandle::from(1);
        msg.attributes
            .push(TcAttribute::Kind(TcFilterBpf::KIND.to_string()));
        msg.attributes.push(TcAttribute::Options(vec![
            TcOption::Bpf(TcFilterBpfOption::Other(DefaultNla::new(
                TCA_BPF_OPS_LEN,
                (program.len() as u16).to_ne_bytes().to_vec(),
            ))),
            TcOption::Bpf(TcFilterBpfOption::Other(DefaultNla::new(
                TCA_BPF_OPS,
                encode(program),
            ))),
            TcOption::Bpf(TcFilterBpfOption::Flags(TcBpfFlags::DirectAction)),
        ]));
        self.request_ack(
            RouteNetlinkMessage::NewTrafficFilter(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .await
        .map_err(nl(
            "add ingress filter",
            format_args!("index {index} pref {pref}"),
        ))
    }

    /// Deletes every IPv4 filter at priority `pref` on a device's ingress hook.
    pub async fn delete_ingress_filters(
        &self,
        index: u32,
        pref: u16,
    ) -> Result<(), DataplaneError> {
        let mut msg = TcMessage::with_index(index as i32);
        msg.header.parent = INGRESS_PARENT;
        msg.header.info = filter_info(pref, ETH_P_IP);
        self.request_ack(RouteNetlinkMessage::DelTrafficFilter(msg), 0)
            .await
            .map_err(nl(
                "delete ingress filters",
                format_args!("index {index} pref {pref}"),
            ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_matches_tcpdump_and_reads_back() {
        // `tcpdump -ddd 'ip and udp dst port 4790'`, return values replaced by tc verdicts.
        let text: Vec<String> = udp_drop_program(4790)
            .iter()
            .map(|i| format!("{} {} {} {}", i.code, i.jt, i.jf, i.k))
            .collect();
        assert_eq!(
            text.join(","),
            "40 0 0 12,21 0 8 2048,48 0 0 23,21 0 6 17,40 0 0 20,69 4 0 8191,177 0 0 14,\
             72 0 0 16,21 0 1 4790,6 0 0 2,6 0 0 4294967295"
        );
        assert_eq!(dropped_port(&encode(&udp_drop_program(4790))), Some(4790));
        assert_eq!(dropped_port(&encode(&udp_drop_program(53))), Some(53));
        let mut other = encode(&udp_drop_program(4790));
        other[9 * 8 + 4] = 0; // returns "ok" instead of "shot"
        assert_eq!(dropped_port(&other), None);
        assert_eq!(dropped_port(&[]), None);
    }

    #[test]
    fn prefix_program_checks_each_prefix_with_short_jumps() {
        let nets: Vec<Ipv4Net> = vec![
            "10.10.1.0/24".parse().unwrap(),
            "10.20.0.0/16".parse().unwrap(),
        ];
        let text: Vec<String> = prefix_drop_program(&nets)
            .iter()
            .map(|i| format!("{} {} {} {}", i.code, i.jt, i.jf, i.k))
            .collect();
        // ld [30]; and #255.255.255.0; jeq #10.10.1.0 else skip; ret shot; ... ret pass.
        assert_eq!(
            text.join(","),
            "40 0 0 12,21 1 0 2048,6 0 0 4294967295,\
             32 0 0 30,84 0 0 4294967040,21 0 1 168427776,6 0 0 2,\
             32 0 0 30,84 0 0 4294901760,21 0 1 169082880,6 0 0 2,\
             6 0 0 4294967295"
        );
        assert_eq!(prefix_drop_program(&[]).len(), 4);
        let most = vec![nets[0]; MAX_DROPPED_PREFIXES];
        assert!(prefix_drop_program(&most).len() <= 4096);
    }

    #[test]
    fn protocol_is_in_network_order_in_the_header() {
        // tc puts htons(ETH_P_IP) in the low half of tcm_info.
        assert_eq!(filter_info(4790, 0x0800) >> 16, 4790);
        assert_eq!(
            (filter_info(4790, 0x0800) & 0xffff) as u16,
            0x0800u16.to_be()
        );
    }
}
