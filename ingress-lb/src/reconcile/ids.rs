//! Kernel ids: the datapath's maps key a frontend's Maglev table by a service id and a
//! backend by a backend id, and a backend entry holds one port. A service has up to
//! [`crate::service::validate::PORTS_MAX`] ports, each with its own target port, so each
//! (service, port) is one kernel service and each (backend, port) one kernel backend:
//! `kernel id = store id << PORT_BITS | port index`. Every host derives the same ids from
//! the same store, so the tables agree everywhere.

use crate::service::validate::PORTS_MAX;

/// Bits of a kernel id that hold the port's index in the service's port list.
pub const PORT_BITS: u32 = 6;
/// Largest store id (service or backend) that has kernel ids: 2^26 - 1.
pub const STORE_ID_MAX: u32 = (1 << (32 - PORT_BITS)) - 1;

const _: () = assert!(PORTS_MAX <= 1 << PORT_BITS);

/// The kernel id of store id `id` (a service's or a backend's) for the port at `port_index`
/// of its service; `None` when `id` is 0 or above [`STORE_ID_MAX`], or the index does not
/// fit. Never 0 (the datapath's "none").
pub fn kernel_id(id: u32, port_index: usize) -> Option<u32> {
    if id == 0 || id > STORE_ID_MAX || port_index >= 1 << PORT_BITS {
        return None;
    }
    Some(id << PORT_BITS | port_index as u32)
}

/// The store id and port index a kernel id was made from.
pub fn split(kernel_id: u32) -> (u32, usize) {
    (
        kernel_id >> PORT_BITS,
        (kernel_id & ((1 << PORT_BITS) - 1)) as usize,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_never_collide_or_zero() {
        assert_eq!(kernel_id(1, 0), Some(64));
        assert_eq!(kernel_id(1, 63), Some(127));
        assert_eq!(kernel_id(2, 0), Some(128));
        assert_eq!(split(kernel_id(12345, 7).unwrap()), (12345, 7));
        assert_eq!(kernel_id(0, 0), None);
        assert_eq!(kernel_id(STORE_ID_MAX + 1, 0), None);
        assert_eq!(kernel_id(1, 64), None);
        assert_eq!(
            split(kernel_id(STORE_ID_MAX, 63).unwrap()),
            (STORE_ID_MAX, 63)
        );
    }
}
