//! The fast path's maps, typed, and [`FastMaps::sync`], which makes them equal to a wanted
//! [`FastState`] changing only the differences.

use std::collections::BTreeMap;

use aya::maps::{HashMap, Map, MapData, MapError, PerCpuArray};

use super::types::*;
use crate::{
    error::{Error, Result},
    maps::{ignore_missing, mesh::unicast},
    pins::NodePins,
};

/// Map names of the fast path, as in `overlay_fast.o` and under its `maps/` pin directory.
pub const FAST_MAP_NAMES: [&str; 4] = ["vxf_port", "vxf_l2", "vxf_ep", "vxf_stats"];

/// Everything the fast path's maps should hold on a host (what the agent computes from the
/// store), or hold now ([`FastMaps::state`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FastState {
    /// `vxf_port`: ifindex → the interface's network.
    pub ports: BTreeMap<u32, FastPort>,
    /// `vxf_l2`: (VNI, MAC) → where frames to it go.
    pub l2: BTreeMap<FastMacKey, FastL2>,
    /// `vxf_ep`: (VNI, IPv4) → what ARP answers.
    pub eps: BTreeMap<FastIpKey, FastEp>,
}

/// What [`FastMaps::sync`] changed, entries per map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FastSync {
    /// Entries added or replaced.
    pub written: usize,
    /// Entries removed.
    pub removed: usize,
}

/// The fast path's maps.
pub struct FastMaps {
    port: HashMap<MapData, u32, FastPort>,
    l2: HashMap<MapData, FastMacKey, FastL2>,
    ep: HashMap<MapData, FastIpKey, FastEp>,
    stats: PerCpuArray<MapData, u64>,
}

fn typed<T>(name: &'static str, map: Map) -> Result<T>
where
    T: TryFrom<Map, Error = MapError>,
{
    T::try_from(map).map_err(|e| Error::map(name, "open", e))
}

fn check_vni(vni: u32) -> Result<()> {
    if vni == 0 || vni > VNI_MAX {
        return Err(Error::invalid(
            "vni",
            format!("{vni} not in 1..={VNI_MAX} (RFC 7348: 24 bits)"),
        ));
    }
    Ok(())
}

fn check_ifindex(field: &'static str, ifindex: u32) -> Result<()> {
    if ifindex == 0 {
        return Err(Error::invalid(field, "0 is no interface"));
    }
    Ok(())
}

/// Checks every entry of `want`; the error names the first bad field.
fn validate(want: &FastState) -> Result<()> {
    for (&ifindex, p) in &want.ports {
        check_ifindex("port ifindex", ifindex)?;
        check_vni(p.vni)?;
        check_ifindex("port vxlan_ifindex", p.vxlan_ifindex)?;
        if p.flags & !PORT_F_VXLAN != 0 {
            return Err(Error::invalid("port flags", "unknown bits set"));
        }
        if p.flags & PORT_F_VXLAN != 0 && p.vxlan_ifindex != ifindex {
            return Err(Error::invalid(
                "port vxlan_ifindex",
                format!(
                    "VXLAN port {ifindex} names another device {}",
                    p.vxlan_ifindex
                ),
            ));
        }
    }
    for (k, v) in &want.l2 {
        check_vni(k.vni)?;
        unicast("l2 mac", k.mac)?;
        if k.pad != 0 {
            return Err(Error::invalid("l2 key pad", "must be 0"));
        }
        check_ifindex("l2 ifindex", v.ifindex)?;
        if v.flags & !(L2_F_LOCAL | L2_F_EGRESS) != 0
            || (v.flags & L2_F_EGRESS != 0 && v.flags & L2_F_LOCAL == 0)
        {
            return Err(Error::invalid(
                "l2 flags",
                "unknown bits set, or EGRESS without LOCAL",
            ));
        }
    }
    for (k, v) in &want.eps {
        check_vni(k.vni)?;
        if k.addr == 0 {
            return Err(Error::invalid("endpoint addr", "0.0.0.0 is not an address"));
        }
        unicast("endpoint mac", v.mac)?;
        if v.flags & !(EP_F_LOCAL | EP_F_GATEWAY) != 0 {
            return Err(Error::invalid("endpoint flags", "unknown bits set"));
        }
    }
    Ok(())
}

fn all<K: aya::Pod + Ord, V: aya::Pod>(
    name: &'static str,
    map: &HashMap<MapData, K, V>,
) -> Result<BTreeMap<K, V>> {
    map.iter()
        .collect::<std::result::Result<BTreeMap<_, _>, _>>()
        .map_err(|e| Error::map(name, "iterate", e))
}

/// Writes what differs from `have` in `want` into `map`, counting in `n`.
fn write<K: aya::Pod + Ord, V: aya::Pod + PartialEq>(
    name: &'static str,
    map: &mut HashMap<MapData, K, V>,
    have: &BTreeMap<K, V>,
    want: &BTreeMap<K, V>,
    n: &mut FastSync,
) -> Result<()> {
    for (k, v) in want {
        if have.get(k) != Some(v) {
            map.insert(*k, *v, 0)
                .map_err(|e| Error::map(name, "insert", e))?;
            n.written += 1;
        }
    }
    Ok(())
}

/// Removes from `map` what `have` holds and `want` does not, counting in `n`.
fn remove<K: aya::Pod + Ord, V: aya::Pod>(
    name: &'static str,
    map: &mut HashMap<MapData, K, V>,
    have: &BTreeMap<K, V>,
    want: &BTreeMap<K, V>,
    n: &mut FastSync,
) -> Result<()> {
    for k in have.keys().filter(|k| !want.contains_key(k)) {
        if ignore_missing(map.remove(k)).map_err(|e| Error::map(name, "remove", e))? {
            n.removed += 1;
        }
    }
    Ok(())
}

impl FastMaps {
    /// Takes the maps out of a loaded object (`take` returns the map of that name).
    pub(crate) fn from_maps(mut take: impl FnMut(&'static str) -> Result<Map>) -> Result<Self> {
        Ok(Self {
            port: typed("vxf_port", take("vxf_port")?)?,
            l2: typed("vxf_l2", take("vxf_l2")?)?,
            ep: typed("vxf_ep", take("vxf_ep")?)?,
            stats: typed("vxf_stats", take("vxf_stats")?)?,
        })
    }

    /// Opens the maps pinned under `pins` (no program is loaded): for readers.
    ///
    /// Errors: [`Error::Map`] naming the map that is not pinned or not of the right shape.
    pub fn open_pinned(pins: &NodePins) -> Result<Self> {
        Self::from_maps(|name| {
            let data = MapData::from_pin(pins.maps.join(name))
                .map_err(|e| Error::map(name, "open pin", e))?;
            Map::from_map_data(data).map_err(|e| Error::map(name, "open pin", e))
        })
    }

    /// What the maps hold now.
    pub fn state(&self) -> Result<FastState> {
        Ok(FastState {
            ports: all("vxf_port", &self.port)?,
            l2: all("vxf_l2", &self.l2)?,
            eps: all("vxf_ep", &self.ep)?,
        })
    }

    /// Makes the maps hold exactly `want`, changing only the entries that differ. Everything
    /// is validated first, and nothing changes when an entry is bad. The order keeps every
    /// packet's view consistent: ports that go are removed first (their interfaces' frames
    /// go the bridge's way at once), then endpoint entries are written, stale ones removed,
    /// and new ports written last (an interface is switched on once its network's entries
    /// are there).
    ///
    /// Errors: [`Error::Invalid`] naming the bad field (a VNI of 0 or over 24 bits, ifindex
    /// 0, a MAC that is not unicast, unknown flags, address 0.0.0.0); [`Error::Map`] when the
    /// kernel refuses (a map full).
    pub fn sync(&mut self, want: &FastState) -> Result<FastSync> {
        validate(want)?;
        let have = self.state()?;
        let mut n = FastSync::default();
        remove("vxf_port", &mut self.port, &have.ports, &want.ports, &mut n)?;
        write("vxf_ep", &mut self.ep, &have.eps, &want.eps, &mut n)?;
        write("vxf_l2", &mut self.l2, &have.l2, &want.l2, &mut n)?;
        remove("vxf_l2", &mut self.l2, &have.l2, &want.l2, &mut n)?;
        remove("vxf_ep", &mut self.ep, &have.eps, &want.eps, &mut n)?;
        write("vxf_port", &mut self.port, &have.ports, &want.ports, &mut n)?;
        Ok(n)
    }

    /// Counter `stat` summed over CPUs.
    pub fn stat(&self, stat: FastStat) -> Result<u64> {
        self.stats
            .get(&(stat as u32), 0)
            .map(|v| v.iter().sum())
            .map_err(|e| Error::map("vxf_stats", "get", e))
    }
}
