//! vxmesh ingress load balancing: services, backends, Maglev, health checks. Arrives with the ingress issue; this crate holds nothing yet.
