//! Where health-check sockets are made: in this thread's network namespace, or in another one.
//!
//! A socket belongs to the network namespace it was created in, whichever thread uses it
//! afterwards. So checks in another namespace only need their sockets made there: a dedicated
//! thread enters the namespace once (`setns(2)` moves only the calling thread) and makes
//! sockets on request; the checks then connect and talk from the tokio runtime as usual.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;

use tokio::net::TcpSocket;
use tokio::sync::oneshot;

use super::HealthError;

type Reply = oneshot::Sender<io::Result<OwnedFd>>;

/// Makes the TCP sockets health checks use. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SocketSource {
    inner: Arc<Inner>,
}

#[derive(Debug)]
enum Inner {
    Current,
    Netns {
        path: PathBuf,
        requests: std_mpsc::Sender<Reply>,
    },
}

impl SocketSource {
    /// Sockets in the network namespace of the thread that creates them (the caller's).
    pub fn current() -> Self {
        SocketSource {
            inner: Arc::new(Inner::Current),
        }
    }

    /// Sockets in the network namespace at `path` (`/run/netns/NAME`, `/proc/PID/ns/net`).
    /// Starts a thread that enters it and lives as long as a clone of this source does.
    ///
    /// Errors: the namespace cannot be opened or entered (named in the error).
    pub fn netns(path: &Path) -> Result<Self, HealthError> {
        let (requests, rx) = std_mpsc::channel::<Reply>();
        let (ready_tx, ready_rx) = std_mpsc::channel();
        let owned = path.to_path_buf();
        std::thread::Builder::new()
            .name("health-netns".into())
            .spawn(move || {
                let entered = overlay_core::netns::enter(&owned);
                let ok = entered.is_ok();
                let _ = ready_tx.send(entered);
                if ok {
                    for reply in rx {
                        let _ = reply.send(new_tcp_socket());
                    }
                }
            })
            .map_err(|e| HealthError::Thread(e.to_string()))?;
        ready_rx
            .recv()
            .map_err(|e| HealthError::Thread(e.to_string()))??;
        Ok(SocketSource {
            inner: Arc::new(Inner::Netns {
                path: path.to_path_buf(),
                requests,
            }),
        })
    }

    /// The namespace sockets are made in; `None` for the caller's own.
    pub fn netns_path(&self) -> Option<&Path> {
        match &*self.inner {
            Inner::Current => None,
            Inner::Netns { path, .. } => Some(path),
        }
    }

    /// A new, unconnected, non-blocking IPv4 TCP socket. Must be called within a tokio
    /// runtime (the socket is registered with its reactor).
    pub async fn tcp_socket(&self) -> io::Result<TcpSocket> {
        let fd = match &*self.inner {
            Inner::Current => new_tcp_socket()?,
            Inner::Netns { requests, .. } => {
                let (tx, rx) = oneshot::channel();
                let gone = || io::Error::other("the health-check namespace thread has stopped");
                requests.send(tx).map_err(|_| gone())?;
                rx.await.map_err(|_| gone())??
            }
        };
        Ok(TcpSocket::from_std_stream(std::net::TcpStream::from(fd)))
    }
}

/// socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC) in the calling thread's network
/// namespace.
fn new_tcp_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) has no memory arguments; a non-negative return is a new descriptor
    // that nothing else owns.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
