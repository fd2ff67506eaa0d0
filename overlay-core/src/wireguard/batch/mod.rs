//! The batched userspace WireGuard datapath: boringtun's protocol (its `noise` layer:
//! handshakes, sessions, timers, the cipher) with I/O that moves packets in batches, the way
//! current WireGuard implementations do (wireguard-go since 0.0.20230223, Linux's own):
//!
//! - the interface is a multi-queue TAP with virtio-net headers and offloads ([`tap`]): the
//!   kernel hands over whole 64 KiB TCP segments, inside VXLAN too, which the send worker
//!   cuts into packets ([`segment`]) before encrypting them; the receive worker merges
//!   decrypted segments of a flow back into such frames ([`coalesce`]) before writing them;
//! - the underlay socket sends trains of equal-sized datagrams in one call (`UDP_SEGMENT`)
//!   and receives them likewise (`UDP_GRO`) ([`udp`]);
//! - workers: `threads` send workers (one per TAP queue) and as many receive workers (one per
//!   socket, `SO_REUSEPORT`), so sending and receiving run in parallel; they share only the
//!   peer table (a read lock per batch) and each peer's state (a lock per packet).
//!
//! It is driven like boringtun's own device, through the WireGuard UAPI on a socket pair
//! ([`control`]), and carries the same traffic: IPv4 and IPv6 packets, handshakes, cookies,
//! keepalives, roaming endpoints. Its underlay sockets are IPv4.

pub mod coalesce;
pub mod control;
pub mod csum;
pub mod peers;
mod rx;
pub mod segment;
pub mod tap;
mod tx;
pub mod udp;
pub mod vnet;

use std::io;
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use boringtun::noise::TunnResult;
use boringtun::x25519::StaticSecret;
use nix::poll::{PollFd, PollFlags, PollTimeout};
pub use nix::sys::eventfd::EventFd;

use super::uapi::Uapi;
use control::{Handler, SetRequest};
use peers::Table;

/// Counters of what the workers did, for logs and benchmarks.
#[derive(Debug, Default)]
pub struct Stats {
    /// Frames read from the TAP, and how many of them were GSO frames.
    pub tx_frames: AtomicU64,
    pub tx_gso_frames: AtomicU64,
    /// Packets encrypted, datagrams sent and `sendmsg` calls that sent them.
    pub tx_packets: AtomicU64,
    pub tx_datagrams: AtomicU64,
    pub tx_sends: AtomicU64,
    pub tx_no_peer: AtomicU64,
    pub tx_dropped: AtomicU64,
    pub tx_errors: AtomicU64,
    /// Receive calls, datagrams they carried, frames written to the TAP and segments merged.
    pub rx_recvs: AtomicU64,
    pub rx_datagrams: AtomicU64,
    pub rx_frames: AtomicU64,
    pub rx_merged: AtomicU64,
    pub rx_errors: AtomicU64,
}

impl Stats {
    fn line(&self) -> String {
        let g = |a: &AtomicU64| a.load(Relaxed);
        format!(
            "tx: {} frames ({} GSO) -> {} packets -> {} datagrams in {} sends ({} without peer, \
             {} dropped, {} errors); rx: {} datagrams in {} receives -> {} frames written, \
             {} segments merged ({} errors)",
            g(&self.tx_frames),
            g(&self.tx_gso_frames),
            g(&self.tx_packets),
            g(&self.tx_datagrams),
            g(&self.tx_sends),
            g(&self.tx_no_peer),
            g(&self.tx_dropped),
            g(&self.tx_errors),
            g(&self.rx_datagrams),
            g(&self.rx_recvs),
            g(&self.rx_frames),
            g(&self.rx_merged),
            g(&self.rx_errors),
        )
    }
}

/// What the workers share.
pub(crate) struct Shared {
    tap: tap::Tap,
    table: RwLock<Table>,
    /// The underlay sockets (one per receive worker), once a port is set.
    sockets: RwLock<Option<Arc<Vec<Arc<UdpSocket>>>>>,
    /// The receive workers of the current sockets.
    receivers: Mutex<Receivers>,
    workers: usize,
    vxlan_port: u16,
    stop: EventFd,
    stats: Stats,
}

#[derive(Default)]
struct Receivers {
    stop: Option<Arc<EventFd>>,
    threads: Vec<JoinHandle<()>>,
}

impl Shared {
    fn sockets(&self) -> Option<Arc<Vec<Arc<UdpSocket>>>> {
        self.sockets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Binds new sockets on `port` and starts their receive workers, after stopping those of
    /// the old ones.
    /// The new sockets are bound first: when that fails, the old ones keep working.
    fn listen(self: &Arc<Self>, port: u16) -> io::Result<()> {
        let mut socks = Vec::new();
        for _ in 0..self.workers {
            socks.push(Arc::new(udp::bind(SocketAddrV4::new(
                [0, 0, 0, 0].into(),
                port,
            ))?));
        }
        let stop = Arc::new(new_eventfd()?);
        let mut rx = self.receivers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = rx.stop.take() {
            let _ = old.write(1);
        }
        for t in rx.threads.drain(..) {
            let _ = t.join();
        }
        for (i, s) in socks.iter().enumerate() {
            let (shared, s, stop) = (Arc::clone(self), Arc::clone(s), Arc::clone(&stop));
            rx.threads.push(
                std::thread::Builder::new()
                    .name(format!("wg-rx{i}"))
                    .spawn(move || rx::run(shared, s, i, stop))?,
            );
        }
        rx.stop = Some(stop);
        *self.sockets.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(socks));
        Ok(())
    }
}

fn new_eventfd() -> io::Result<EventFd> {
    Ok(EventFd::from_value_and_flags(
        0,
        nix::sys::eventfd::EfdFlags::EFD_CLOEXEC | nix::sys::eventfd::EfdFlags::EFD_NONBLOCK,
    )?)
}

/// Why a worker woke up.
enum Wake {
    Ready,
    Stop,
}

/// Waits until `fd` is readable or one of the stop signals is raised.
fn wait(fd: BorrowedFd<'_>, stop: &EventFd, also: Option<&EventFd>) -> Wake {
    let mut fds = vec![
        PollFd::new(fd, PollFlags::POLLIN),
        PollFd::new(stop.as_fd(), PollFlags::POLLIN),
    ];
    if let Some(a) = also {
        fds.push(PollFd::new(a.as_fd(), PollFlags::POLLIN));
    }
    loop {
        match nix::poll::poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return Wake::Stop,
        }
    }
    let raised = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
    if fds[1..].iter().any(raised) {
        return Wake::Stop;
    }
    Wake::Ready
}

impl Handler for Arc<Shared> {
    fn get(&self) -> String {
        self.table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .render()
    }

    fn set(&self, req: SetRequest) -> Result<(), i32> {
        // Refused before anything changes: a peer needs the device's key (wg(8) sets it first).
        let keyed = req.private_key.is_some()
            || self
                .table
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .key
                .is_some();
        if !keyed && req.peers.iter().any(|p| !p.remove) {
            return Err(peers::EINVAL);
        }
        if let Some(port) = req.listen_port {
            let current = self.table.read().unwrap_or_else(|e| e.into_inner()).port;
            if port != current || self.sockets().is_none() {
                self.listen(port).map_err(|e| {
                    tracing::error!(port, error = %e, "cannot bind the WireGuard port");
                    e.raw_os_error().unwrap_or(libc::EADDRINUSE)
                })?;
                self.table.write().unwrap_or_else(|e| e.into_inner()).port = port;
            }
        }
        let mut t = self.table.write().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = req.private_key {
            t.set_key(StaticSecret::from(k));
        }
        if req.replace_peers {
            t.clear();
        }
        for p in req.peers {
            t.apply(p)?;
        }
        Ok(())
    }
}

/// The timer worker: every 250 ms, each peer's timers (handshake retries, rekeying,
/// keepalives: boringtun's `update_timers`); every second, the handshake rate limit resets.
fn timers(shared: Arc<Shared>) {
    let mut buf = vec![0u8; 2048];
    let mut tick: u64 = 0;
    let mut last_log = Instant::now();
    let mut logged = String::new();
    loop {
        let mut fds = [PollFd::new(shared.stop.as_fd(), PollFlags::POLLIN)];
        if nix::poll::poll(&mut fds, PollTimeout::from(250u16)).is_ok_and(|n| n > 0) {
            return;
        }
        tick += 1;
        let table = shared.table.read().unwrap_or_else(|e| e.into_inner());
        if tick.is_multiple_of(4) {
            if let Some(l) = &table.limiter {
                l.reset_count();
            }
        }
        let socks = shared.sockets();
        for p in table.peers.values() {
            let mut st = p.lock();
            let ep = st.endpoint;
            if let TunnResult::WriteToNetwork(pkt) = st.tunn.update_timers(&mut buf) {
                if let (Some(ep), Some(s)) = (ep, &socks) {
                    let _ = s[0].send_to(pkt, ep);
                }
            }
        }
        drop(table);
        if last_log.elapsed() >= Duration::from_secs(10) {
            let line = shared.stats.line();
            if line != logged {
                tracing::debug!(interface = %shared.tap.name, "{line}");
                logged = line;
            }
            last_log = Instant::now();
        }
    }
}

/// A running batched device. Dropping it stops its workers; its interface is persistent and
/// stays (see [`super::tundev`]).
pub struct BatchedDevice {
    shared: Arc<Shared>,
    uapi: Arc<Uapi>,
    control: UnixStream,
    threads: Vec<JoinHandle<()>>,
}

impl BatchedDevice {
    /// Creates the interface `ifname` (a persistent TAP, see [`tap`]), or attaches to the one
    /// a previous agent left, and starts `threads` send and
    /// `threads` receive workers (at least one each), a timer worker and the control socket
    /// server. `vxlan_port`: the UDP port of the VXLAN traffic it carries, whose TCP is merged
    /// into tunnel GSO frames on receive. The UDP port is bound when the UAPI sets one.
    pub fn start(ifname: &str, threads: usize, vxlan_port: u16) -> io::Result<BatchedDevice> {
        let workers = threads.max(1);
        let tap = tap::Tap::create(ifname, workers)?;
        tracing::info!(
            interface = %tap.name,
            queues = workers,
            tunnel_gso = tap.tunnel_gso,
            reattached = tap.reattached,
            "batched WireGuard datapath: TAP with virtio-net headers, UDP GSO/GRO"
        );
        let shared = Arc::new(Shared {
            tap,
            table: RwLock::new(Table::default()),
            sockets: RwLock::new(None),
            receivers: Mutex::new(Receivers::default()),
            workers,
            vxlan_port,
            stop: new_eventfd()?,
            stats: Stats::default(),
        });
        let (ours, theirs) = UnixStream::pair()?;
        let control = theirs.try_clone()?;
        let mut handles = Vec::new();
        let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new().name(name).spawn(f)
        };
        for i in 0..workers {
            let s = Arc::clone(&shared);
            handles.push(spawn(format!("wg-tx{i}"), Box::new(move || tx::run(s, i)))?);
        }
        let s = Arc::clone(&shared);
        handles.push(spawn("wg-timers".into(), Box::new(move || timers(s)))?);
        let s = Arc::clone(&shared);
        handles.push(spawn(
            "wg-control".into(),
            Box::new(move || {
                let reader = io::BufReader::new(&theirs);
                if let Err(e) = control::serve(reader, &theirs, &s) {
                    tracing::debug!(error = %e, "WireGuard control socket closed");
                }
            }),
        )?);
        Ok(BatchedDevice {
            shared,
            uapi: Arc::new(Uapi::from_stream(ours)?),
            control,
            threads: handles,
        })
    }

    pub fn ifname(&self) -> &str {
        &self.shared.tap.name
    }

    pub fn uapi(&self) -> Arc<Uapi> {
        Arc::clone(&self.uapi)
    }

    /// Whether the interface was left by a previous agent and attached to (not created).
    pub fn reattached(&self) -> bool {
        self.shared.tap.reattached
    }

    /// Whether the kernel hands over and takes VXLAN-encapsulated TCP as large frames.
    pub fn tunnel_gso(&self) -> bool {
        self.shared.tap.tunnel_gso
    }

    /// The workers' counters.
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }
}

impl Drop for BatchedDevice {
    fn drop(&mut self) {
        let _ = self.shared.stop.write(1);
        let _ = self.control.shutdown(std::net::Shutdown::Both);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let mut rx = self
            .shared
            .receivers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for t in rx.threads.drain(..) {
            let _ = t.join();
        }
        drop(rx);
        tracing::debug!(interface = %self.shared.tap.name, "stopped: {}", self.shared.stats.line());
    }
}
