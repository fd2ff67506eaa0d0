//! The routing mesh's maps (`vx_host`, `vx_be_loc`, `vx_mesh_node`, `vx_mesh_be`,
//! `vx_mesh_flow`; see `bpf/include/mesh.h`): what the reconciler writes for published
//! ports, and the flow records the overlay program leaves.

use std::net::Ipv4Addr;

use aya::maps::MapError;

use super::{ignore_missing, types::*, Maps};
use crate::error::{Error, Result};

fn get<T>(name: &'static str, r: std::result::Result<T, MapError>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(MapError::KeyNotFound) => Ok(None),
        Err(e) => Err(Error::map(name, "get", e)),
    }
}

/// Ok when `mac` is a unicast address; else [`Error::Invalid`] naming `field`.
pub(crate) fn unicast(field: &'static str, mac: [u8; 6]) -> Result<()> {
    if mac == [0; 6] || mac[0] & 1 == 1 {
        return Err(Error::invalid(
            field,
            format!("{mac:02x?} is not a unicast MAC (IEEE 802: group bit clear, not all zero)"),
        ));
    }
    Ok(())
}

impl Maps {
    /// Sets this host's underlay identity (`vx_host[0]`): its address, device and the MAC
    /// naming it as an ingress node.
    ///
    /// Errors: [`Error::Invalid`] for address 0.0.0.0, ifindex 0, a MAC that is not unicast,
    /// non-zero pad; [`Error::Map`] when the kernel refuses.
    pub fn set_host(&mut self, host: Host) -> Result<()> {
        if host.addr == 0 {
            return Err(Error::invalid("host addr", "0.0.0.0 is not an address"));
        }
        if host.ifindex == 0 {
            return Err(Error::invalid("host ifindex", "0 is no interface"));
        }
        unicast("host mac", host.mac)?;
        if host.pad != 0 {
            return Err(Error::invalid("host pad", "must be 0"));
        }
        self.host
            .set(0, host, 0)
            .map_err(|e| Error::map("vx_host", "set", e))
    }

    /// This host's underlay identity (all zero until [`Maps::set_host`]).
    pub fn host(&self) -> Result<Host> {
        self.host
            .get(&0, 0)
            .map_err(|e| Error::map("vx_host", "get", e))
    }

    /// Says where the routing mesh delivers backend `id` on this host.
    ///
    /// Errors: [`Error::Invalid`] for id 0, ifindex 0, a MAC that is not unicast, non-zero
    /// pad; [`Error::Map`] when the map is full.
    pub fn upsert_be_loc(&mut self, id: u32, loc: BeLoc) -> Result<()> {
        if id == 0 {
            return Err(Error::invalid("backend id", "0 is reserved (no backend)"));
        }
        if loc.ifindex == 0 {
            return Err(Error::invalid(
                "backend location ifindex",
                "0 is no interface",
            ));
        }
        unicast("backend mac", loc.mac)?;
        if loc.pad != 0 || loc.flags & !BE_LOC_F_LOCAL != 0 {
            return Err(Error::invalid("backend location flags", "unknown bits set"));
        }
        self.be_loc
            .insert(id, loc, 0)
            .map_err(|e| Error::map("vx_be_loc", "insert", e))
    }

    /// Forgets backend `id`'s location. Returns whether it was there.
    pub fn delete_be_loc(&mut self, id: u32) -> Result<bool> {
        ignore_missing(self.be_loc.remove(&id)).map_err(|e| Error::map("vx_be_loc", "remove", e))
    }

    /// Backend `id`'s location, if set.
    pub fn be_loc(&self, id: u32) -> Result<Option<BeLoc>> {
        get("vx_be_loc", self.be_loc.get(&id, 0))
    }

    /// Names ingress node `addr` by `mac` (the source MAC its forwarded frames carry):
    /// `flags` 0 for its node MAC, [`MESH_F_DSR`] for its DSR MAC ([`dsr_mac`]).
    ///
    /// Errors: [`Error::Invalid`] for 0.0.0.0, a MAC that is not unicast or unknown flags;
    /// [`Error::Map`].
    pub fn upsert_mesh_node(&mut self, mac: [u8; 6], addr: Ipv4Addr, flags: u8) -> Result<()> {
        unicast("node mac", mac)?;
        if addr.is_unspecified() {
            return Err(Error::invalid("node addr", "0.0.0.0 is not an address"));
        }
        if flags & !MESH_F_DSR != 0 {
            return Err(Error::invalid("node flags", "unknown bits set"));
        }
        let node = MeshNode {
            addr: u32::from_ne_bytes(addr.octets()),
            flags: u32::from(flags),
        };
        self.mesh_node
            .insert(MacKey { mac, pad: 0 }, node, 0)
            .map_err(|e| Error::map("vx_mesh_node", "insert", e))
    }

    /// Forgets the ingress node named `mac`. Returns whether it was there.
    pub fn delete_mesh_node(&mut self, mac: [u8; 6]) -> Result<bool> {
        ignore_missing(self.mesh_node.remove(&MacKey { mac, pad: 0 }))
            .map_err(|e| Error::map("vx_mesh_node", "remove", e))
    }

    /// Marks backend `key` as serving a published port: default mode, its addr:target
    /// port; DSR, its addr:published port (`key.flags` = [`MESH_F_DSR`] = `be.flags`).
    ///
    /// Errors: [`Error::Invalid`] for a bad protocol, port 0, pub or target port 0, unknown
    /// flags or key flags other than the value's, a DSR key whose port is not the published
    /// one; [`Error::Map`] when the map is full.
    pub fn upsert_mesh_be(&mut self, key: MeshBeKey, be: MeshBe) -> Result<()> {
        if key.proto != IPPROTO_TCP && key.proto != IPPROTO_UDP {
            return Err(Error::invalid(
                "backend proto",
                "must be TCP (6) or UDP (17)",
            ));
        }
        if key.port == 0 {
            return Err(Error::invalid("backend port", "must be 1-65535"));
        }
        if be.pub_port == 0 {
            return Err(Error::invalid("published port", "must be 1-65535"));
        }
        if be.target_port == 0 {
            return Err(Error::invalid("target port", "must be 1-65535"));
        }
        if be.flags & !MESH_F_DSR != 0 || be.pad != [0; 3] || key.flags != be.flags {
            return Err(Error::invalid(
                "mesh flags",
                "unknown bits set, or the key's differ from the value's",
            ));
        }
        let keyed_by = if be.flags & MESH_F_DSR != 0 {
            be.pub_port
        } else {
            be.target_port
        };
        if key.port != keyed_by {
            return Err(Error::invalid(
                "backend port",
                "must be the published port (DSR) or the target port (default mode)",
            ));
        }
        self.mesh_be
            .insert(key, be, 0)
            .map_err(|e| Error::map("vx_mesh_be", "insert", e))
    }

    /// Forgets backend `key`'s published port. Returns whether it was there.
    pub fn delete_mesh_be(&mut self, key: MeshBeKey) -> Result<bool> {
        ignore_missing(self.mesh_be.remove(&key)).map_err(|e| Error::map("vx_mesh_be", "remove", e))
    }

    /// The routing-mesh flow record of reply tuple `key`, if the overlay program made one.
    pub fn mesh_flow(&self, key: &CtKey) -> Result<Option<MeshFlow>> {
        get("vx_mesh_flow", self.mesh_flow.get(key, 0))
    }
}

fn all<K: aya::Pod, V: aya::Pod>(
    name: &'static str,
    map: &aya::maps::HashMap<aya::maps::MapData, K, V>,
) -> Result<Vec<(K, V)>> {
    map.iter()
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::map(name, "iterate", e))
}

impl Maps {
    /// Every backend location (`vx_be_loc`).
    pub fn be_locs(&self) -> Result<Vec<(u32, BeLoc)>> {
        all("vx_be_loc", &self.be_loc)
    }

    /// Every ingress node known by its MAC (`vx_mesh_node`): (MAC, underlay address,
    /// `MESH_F_*` flags).
    pub fn mesh_nodes(&self) -> Result<Vec<([u8; 6], Ipv4Addr, u8)>> {
        Ok(all("vx_mesh_node", &self.mesh_node)?
            .into_iter()
            .map(|(k, v)| (k.mac, Ipv4Addr::from(v.addr.to_ne_bytes()), v.flags as u8))
            .collect())
    }

    /// Every backend of a published port (`vx_mesh_be`).
    pub fn mesh_bes(&self) -> Result<Vec<(MeshBeKey, MeshBe)>> {
        all("vx_mesh_be", &self.mesh_be)
    }
}
