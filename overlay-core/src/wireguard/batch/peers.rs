//! The batched device's configuration: its key pair and peers, each peer's WireGuard state
//! machine (boringtun's [`Tunn`]: handshakes, sessions, timers, the cipher), endpoint and
//! allowed IPs, and the indexes the datapath looks peers up by (receiver index, public key,
//! allowed IPs: WireGuard's cryptokey routing, whitepaper §2).
//!
//! Locks: the table is read by every packet batch and written only by the control socket;
//! each peer's state has a lock of its own, taken per packet (a batch of one peer's packets
//! takes it once per packet, so the receive and the send worker interleave).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddrV4};
use std::sync::{Arc, Mutex, MutexGuard};

use boringtun::device::allowed_ips::AllowedIps;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::Tunn;
use boringtun::x25519::{PublicKey, StaticSecret};

/// Handshakes per second accepted before cookies are asked for (boringtun's device uses
/// 100; each handshake is counted twice here, once to find its peer and once by its peer's
/// state machine).
const HANDSHAKE_RATE_LIMIT: u64 = 200;

/// One peer.
pub struct Peer {
    pub public: PublicKey,
    /// Its 24-bit index: the receiver index of its sessions, shifted right by 8.
    pub index: u32,
    state: Mutex<PeerState>,
}

/// What a peer's lock guards.
pub struct PeerState {
    pub tunn: Tunn,
    /// Where its datagrams go: configured, then the source of its last authenticated datagram
    /// (roaming, whitepaper §2.1).
    pub endpoint: Option<SocketAddrV4>,
    pub allowed: Vec<(IpAddr, u8)>,
    pub keepalive: Option<u16>,
    pub preshared: Option<[u8; 32]>,
}

impl Peer {
    pub fn lock(&self) -> MutexGuard<'_, PeerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A peer section of a `set=1` request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerUpdate {
    pub public: [u8; 32],
    pub remove: bool,
    pub endpoint: Option<SocketAddrV4>,
    pub replace_allowed: bool,
    pub allowed: Vec<(IpAddr, u8)>,
    pub keepalive: Option<u16>,
    pub preshared: Option<[u8; 32]>,
}

/// Key pair, peers and their indexes.
pub struct Table {
    pub key: Option<(StaticSecret, PublicKey)>,
    pub limiter: Option<Arc<RateLimiter>>,
    pub peers: HashMap<[u8; 32], Arc<Peer>>,
    pub by_index: HashMap<u32, Arc<Peer>>,
    pub by_ip: AllowedIps<Arc<Peer>>,
    /// UDP port, 0 until one is set.
    pub port: u16,
}

impl Default for Table {
    fn default() -> Self {
        Table {
            key: None,
            limiter: None,
            peers: HashMap::new(),
            by_index: HashMap::new(),
            by_ip: AllowedIps::new(),
            port: 0,
        }
    }
}

/// Why a `set=1` request was refused: the errno the control protocol answers.
pub const EINVAL: i32 = libc::EINVAL;

impl Table {
    /// The peer whose allowed IPs hold `ip` (the longest prefix).
    pub fn route(&self, ip: IpAddr) -> Option<&Arc<Peer>> {
        self.by_ip.find(ip)
    }

    /// Sets the private key; every peer's sessions are dropped (they were made with the old
    /// key) and new handshakes follow from traffic or the timers.
    pub fn set_key(&mut self, secret: StaticSecret) {
        let public = PublicKey::from(&secret);
        if self.key.as_ref().is_some_and(|(_, p)| *p == public) {
            return;
        }
        let limiter = Arc::new(RateLimiter::new(&public, HANDSHAKE_RATE_LIMIT));
        for p in self.peers.values() {
            p.lock()
                .tunn
                .set_static_private(secret.clone(), public, Some(Arc::clone(&limiter)));
        }
        self.key = Some((secret, public));
        self.limiter = Some(limiter);
    }

    pub fn clear(&mut self) {
        self.peers.clear();
        self.by_index.clear();
        self.by_ip.clear();
    }

    fn unused_index(&self) -> u32 {
        loop {
            let i = rand::random::<u32>() & 0x00ff_ffff;
            if !self.by_index.contains_key(&i) {
                return i;
            }
        }
    }

    /// Adds, changes or removes one peer. A change of the keepalive or preshared key starts
    /// the peer's state machine afresh (same index); endpoint and allowed IPs change in place.
    pub fn apply(&mut self, u: PeerUpdate) -> Result<(), i32> {
        if u.remove {
            if let Some(p) = self.peers.remove(&u.public) {
                self.by_index.remove(&p.index);
                self.by_ip.remove(&|q: &Arc<Peer>| Arc::ptr_eq(q, &p));
            }
            return Ok(());
        }
        let Some((secret, _)) = self.key.clone() else {
            // A peer needs the device's key first (wg(8) sets it first too).
            return Err(EINVAL);
        };
        let public = PublicKey::from(u.public);
        if let Some(p) = self.peers.get(&u.public).cloned() {
            let mut s = p.lock();
            if let Some(e) = u.endpoint {
                s.endpoint = Some(e);
            }
            if u.replace_allowed {
                s.allowed.clear();
            }
            s.allowed.extend(u.allowed.iter().copied());
            let fresh = (u.keepalive.is_some() && u.keepalive != s.keepalive)
                || (u.preshared.is_some() && u.preshared != s.preshared);
            if fresh {
                s.keepalive = u.keepalive.or(s.keepalive);
                s.preshared = u.preshared.or(s.preshared);
                s.tunn = Tunn::new(
                    secret,
                    public,
                    s.preshared,
                    s.keepalive,
                    p.index,
                    self.limiter.clone(),
                );
            }
            drop(s);
            self.reindex_ips(&p);
            return Ok(());
        }
        let index = self.unused_index();
        let tunn = Tunn::new(
            secret,
            public,
            u.preshared,
            u.keepalive,
            index,
            self.limiter.clone(),
        );
        let p = Arc::new(Peer {
            public,
            index,
            state: Mutex::new(PeerState {
                tunn,
                endpoint: u.endpoint,
                allowed: u.allowed.clone(),
                keepalive: u.keepalive,
                preshared: u.preshared,
            }),
        });
        self.peers.insert(u.public, Arc::clone(&p));
        self.by_index.insert(index, Arc::clone(&p));
        self.reindex_ips(&p);
        Ok(())
    }

    fn reindex_ips(&mut self, p: &Arc<Peer>) {
        self.by_ip.remove(&|q: &Arc<Peer>| Arc::ptr_eq(q, p));
        let allowed = p.lock().allowed.clone();
        for (ip, cidr) in allowed {
            self.by_ip.insert(ip, u32::from(cidr), Arc::clone(p));
        }
    }

    /// The body of the answer to `get=1` (the lines before `errno=`), as boringtun words it:
    /// `own_public_key` instead of the private key, handshake times as time elapsed.
    pub fn render(&self) -> String {
        let mut s = String::new();
        if let Some((_, public)) = &self.key {
            let _ = writeln!(s, "own_public_key={}", hex(public.as_bytes()));
        }
        if self.port != 0 {
            let _ = writeln!(s, "listen_port={}", self.port);
        }
        for (key, p) in &self.peers {
            let st = p.lock();
            let _ = writeln!(s, "public_key={}", hex(key));
            if let Some(k) = &st.preshared {
                let _ = writeln!(s, "preshared_key={}", hex(k));
            }
            if let Some(k) = st.keepalive {
                let _ = writeln!(s, "persistent_keepalive_interval={k}");
            }
            if let Some(e) = st.endpoint {
                let _ = writeln!(s, "endpoint={e}");
            }
            for (ip, cidr) in &st.allowed {
                let _ = writeln!(s, "allowed_ip={ip}/{cidr}");
            }
            if let Some(t) = st.tunn.time_since_last_handshake() {
                let _ = writeln!(s, "last_handshake_time_sec={}", t.as_secs());
                let _ = writeln!(s, "last_handshake_time_nsec={}", t.subsec_nanos());
            }
            let (_, tx, rx, ..) = st.tunn.stats();
            let _ = writeln!(s, "rx_bytes={rx}");
            let _ = writeln!(s, "tx_bytes={tx}");
        }
        s
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(public: [u8; 32], allowed: &str) -> PeerUpdate {
        let (ip, cidr) = allowed.split_once('/').unwrap();
        PeerUpdate {
            public,
            endpoint: Some("10.99.0.2:51820".parse().unwrap()),
            replace_allowed: true,
            allowed: vec![(ip.parse().unwrap(), cidr.parse().unwrap())],
            keepalive: Some(25),
            ..Default::default()
        }
    }

    #[test]
    fn peers_are_added_routed_changed_and_removed() {
        let mut t = Table::default();
        let peer = PublicKey::from(&StaticSecret::from([7u8; 32])).to_bytes();
        assert_eq!(
            t.apply(update(peer, "100.88.0.2/32")),
            Err(EINVAL),
            "no key yet"
        );
        t.set_key(StaticSecret::from([1u8; 32]));
        t.apply(update(peer, "100.88.0.2/32")).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let p = Arc::clone(t.route(ip("100.88.0.2")).expect("routed"));
        assert!(t.route(ip("100.88.0.3")).is_none());
        assert_eq!(
            t.by_index.get(&p.index).map(Arc::as_ptr),
            Some(Arc::as_ptr(&p))
        );
        let text = t.render();
        assert!(text.starts_with("own_public_key="), "{text}");
        for line in [
            &format!("public_key={}", hex(&peer)),
            "endpoint=10.99.0.2:51820",
            "allowed_ip=100.88.0.2/32",
            "persistent_keepalive_interval=25",
            "rx_bytes=0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        // Allowed IPs replaced in place: same peer, same index, new route.
        t.apply(update(peer, "100.88.0.9/32")).unwrap();
        assert!(t.route(ip("100.88.0.2")).is_none());
        let q = t.route(ip("100.88.0.9")).expect("re-routed");
        assert!(Arc::ptr_eq(q, &p));
        // Removed: no route, no index, not reported.
        t.apply(PeerUpdate {
            public: peer,
            remove: true,
            ..Default::default()
        })
        .unwrap();
        assert!(t.route(ip("100.88.0.9")).is_none());
        assert!(t.by_index.is_empty());
        assert!(!t.render().lines().any(|l| l.starts_with("public_key=")));
    }
}
