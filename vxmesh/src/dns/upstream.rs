//! The upstream forwarder: a name that is not vxmesh's is asked of the nameservers in the
//! host's resolv.conf (read on every forward, so an edit takes effect at once), the way the
//! host's own stub resolver would ask them: in the file's order, UDP first and TCP when the
//! answer comes back truncated (RFC 1035 §4.2.1, RFC 7766 §5).
//!
//! The forward is bounded so that the container's resolver always gets an answer before its
//! own timeout (glibc: 5 s by default, resolv.conf(5)): each nameserver gets
//! [`ATTEMPT_TIMEOUT`], and all of them together [`FORWARD_BUDGET`]; when none answered the
//! container gets SERVFAIL. With no nameserver configured the container gets REFUSED at once
//! (glibc would fall back to 127.0.0.1, which inside a container is the container itself).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{timeout_at, Instant};

/// How long one nameserver has to answer (UDP, and TCP after a truncated UDP answer).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a forward may take in all, over every nameserver.
pub const FORWARD_BUDGET: Duration = Duration::from_secs(2);
/// resolv.conf's MAXNS: nameservers after the third are ignored (resolv.conf(5)).
pub const MAX_NAMESERVERS: usize = 3;
/// The UDP payload size advertised upstream (EDNS(0), RFC 6891): the DNS Flag Day 2020 value,
/// which avoids IP fragmentation on common paths.
pub const EDNS_PAYLOAD: u16 = 1232;

/// What a forward came to.
#[derive(Debug)]
pub enum Forwarded {
    /// A nameserver answered (any response code): relay it.
    Answer(Box<Message>),
    /// No nameserver is configured: answer REFUSED.
    NoUpstream,
    /// Every nameserver failed or timed out (the last error): answer SERVFAIL.
    Failed(String),
}

/// The host's upstream resolvers.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The resolv.conf to read (the host's: `/etc/resolv.conf`).
    pub resolv_conf: PathBuf,
    /// The nameservers' port: 53 (resolv.conf has no way to name another one; tests set it).
    pub port: u16,
}

impl Upstream {
    /// The nameservers of the resolv.conf now, in order, at most [`MAX_NAMESERVERS`], minus
    /// those `skip` names (the agent's own listening addresses: forwarding to them would
    /// loop). A missing or unreadable file has none.
    pub fn nameservers(&self, skip: impl Fn(IpAddr) -> bool) -> Vec<SocketAddr> {
        let text = std::fs::read_to_string(&self.resolv_conf).unwrap_or_default();
        parse_resolv_conf(&text)
            .into_iter()
            .filter(|ip| !skip(*ip))
            .map(|ip| SocketAddr::new(ip, self.port))
            .collect()
    }

    /// Asks the upstream nameservers `query` (recursion desired as the client asked) and
    /// returns the first answer that is not SERVFAIL, REFUSED or NOTIMP (glibc moves on to the
    /// next nameserver on those too), else the last answer, else why all failed.
    pub async fn forward(
        &self,
        query: &Query,
        recursion_desired: bool,
        skip: impl Fn(IpAddr) -> bool,
    ) -> Forwarded {
        let servers = self.nameservers(skip);
        if servers.is_empty() {
            return Forwarded::NoUpstream;
        }
        let deadline = Instant::now() + FORWARD_BUDGET;
        let mut last_answer = None;
        let mut last_error = String::new();
        for server in servers {
            let attempt = (Instant::now() + ATTEMPT_TIMEOUT).min(deadline);
            match exchange(server, query, recursion_desired, attempt).await {
                Ok(m) => {
                    let code = m.metadata.response_code;
                    if !matches!(
                        code,
                        ResponseCode::ServFail | ResponseCode::Refused | ResponseCode::NotImp
                    ) {
                        return Forwarded::Answer(Box::new(m));
                    }
                    last_error = format!("{server}: {code}");
                    last_answer = Some(m);
                }
                Err(e) => {
                    tracing::debug!(%server, name = %query.name(), "upstream: {e}");
                    last_error = format!("{server}: {e}");
                }
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        match last_answer {
            Some(m) => Forwarded::Answer(Box::new(m)),
            None => Forwarded::Failed(last_error),
        }
    }
}

/// The `nameserver` addresses of a resolv.conf, in order, at most [`MAX_NAMESERVERS`]
/// (resolv.conf(5): `nameserver ADDRESS`, one per line; `#` and `;` start comments; an IPv6
/// address may carry a `%zone`, which is dropped).
pub fn parse_resolv_conf(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            let addr = words.next()?;
            let addr = addr.split('%').next()?;
            addr.parse::<IpAddr>().ok()
        })
        .take(MAX_NAMESERVERS)
        .collect()
}

/// One question to one nameserver: UDP, then TCP when the UDP answer is truncated. The answer
/// must carry the id and question sent (RFC 5452 §9.1), else it is ignored.
async fn exchange(
    server: SocketAddr,
    query: &Query,
    recursion_desired: bool,
    deadline: Instant,
) -> Result<Message, String> {
    let mut msg = Message::query();
    msg.metadata.id = rand::random();
    msg.metadata.recursion_desired = recursion_desired;
    msg.add_query(query.clone());
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    msg.set_edns(edns);
    let bytes = msg
        .to_vec()
        .map_err(|e| format!("encoding the query: {e}"))?;
    let answer = timeout_at(deadline, udp(server, &bytes, &msg))
        .await
        .map_err(|_| "no answer over UDP in time".to_string())??;
    if !answer.metadata.truncation {
        return Ok(answer);
    }
    timeout_at(deadline, tcp(server, &bytes, &msg))
        .await
        .map_err(|_| "no answer over TCP in time".to_string())?
}

fn unspecified(server: SocketAddr) -> SocketAddr {
    match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

/// Is `m` the answer to `sent`?
fn answers(m: &Message, sent: &Message) -> bool {
    m.metadata.id == sent.metadata.id
        && m.metadata.message_type == MessageType::Response
        && m.queries == sent.queries
}

async fn udp(server: SocketAddr, bytes: &[u8], sent: &Message) -> Result<Message, String> {
    let sock = tokio::net::UdpSocket::bind(unspecified(server))
        .await
        .map_err(|e| format!("UDP socket: {e}"))?;
    // A connected socket takes datagrams from the server only.
    sock.connect(server)
        .await
        .map_err(|e| format!("UDP to {server}: {e}"))?;
    sock.send(bytes)
        .await
        .map_err(|e| format!("UDP to {server}: {e}"))?;
    let mut buf = vec![0u8; 65_535];
    loop {
        let n = sock
            .recv(&mut buf)
            .await
            .map_err(|e| format!("UDP from {server}: {e}"))?;
        match Message::from_vec(&buf[..n]) {
            Ok(m) if answers(&m, sent) => return Ok(m),
            // Not the answer (a late one to an earlier query, or garbage): keep waiting.
            _ => continue,
        }
    }
}

async fn tcp(server: SocketAddr, bytes: &[u8], sent: &Message) -> Result<Message, String> {
    let io = |e: std::io::Error| format!("TCP with {server}: {e}");
    let mut stream = tokio::net::TcpStream::connect(server).await.map_err(io)?;
    // RFC 1035 §4.2.2: each message is preceded by its length, two bytes.
    let len = u16::try_from(bytes.len()).map_err(|_| "query too long".to_string())?;
    let mut out = Vec::with_capacity(bytes.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    stream.write_all(&out).await.map_err(io)?;
    loop {
        let n = stream.read_u16().await.map_err(io)?;
        let mut buf = vec![0u8; usize::from(n)];
        stream.read_exact(&mut buf).await.map_err(io)?;
        match Message::from_vec(&buf) {
            Ok(m) if answers(&m, sent) => return Ok(m),
            _ => continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::{Name, RData, Record, RecordType};
    use std::str::FromStr;

    #[test]
    fn resolv_conf_nameservers() {
        let text = "# generated\nsearch example\nnameserver 10.0.0.53\n; old\n\
                    nameserver fe80::1%eth0\nnameserver bad\nnameserver 1.1.1.1 # x\n\
                    nameserver 9.9.9.9\n  nameserver 8.8.8.8\n";
        let got = parse_resolv_conf(text);
        let want: Vec<IpAddr> = ["10.0.0.53", "fe80::1", "1.1.1.1"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(got, want);
        assert!(parse_resolv_conf("search x\noptions ndots:2\n").is_empty());
    }

    fn conf(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn query() -> Query {
        Query::query(Name::from_str("example.test.").unwrap(), RecordType::A)
    }

    #[tokio::test]
    async fn no_nameserver_is_refused_at_once() {
        let (_d, path) = conf("search example\n");
        let up = Upstream {
            resolv_conf: path,
            port: 53,
        };
        // Decided from the file alone: no packet is sent.
        assert!(matches!(
            up.forward(&query(), true, |_| false).await,
            Forwarded::NoUpstream
        ));
        // A nameserver that is one of the agent's own addresses does not count.
        let (_d, path) = conf("nameserver 127.0.0.1\n");
        let up = Upstream {
            resolv_conf: path,
            port: 53,
        };
        assert!(matches!(
            up.forward(&query(), true, |ip| ip.is_loopback()).await,
            Forwarded::NoUpstream
        ));
    }

    /// A nameserver on loopback that answers every A question with 192.0.2.7 over UDP, and
    /// with TC set when asked for `big.test` (the answer then comes over TCP, 100 records).
    async fn fake_upstream() -> (u16, tokio::task::JoinHandle<()>) {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = udp.local_addr().unwrap().port();
        let tcp = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let reply = |req: &Message, full: bool| {
            let mut m = Message::response(req.metadata.id, req.metadata.op_code);
            m.add_queries(req.queries.clone());
            let q = &req.queries[0];
            let n = if q.name().to_ascii().starts_with("big") {
                100
            } else {
                1
            };
            if n == 1 || full {
                for i in 0..n {
                    m.add_answer(Record::from_rdata(
                        q.name().clone(),
                        30,
                        RData::A(Ipv4Addr::new(192, 0, 2, i as u8 + 7).into()),
                    ));
                }
            } else {
                m.metadata.truncation = true;
            }
            m.to_vec().unwrap()
        };
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                tokio::select! {
                    r = udp.recv_from(&mut buf) => {
                        let (n, from) = r.unwrap();
                        let req = Message::from_vec(&buf[..n]).unwrap();
                        udp.send_to(&reply(&req, false), from).await.unwrap();
                    }
                    r = tcp.accept() => {
                        let (mut s, _) = r.unwrap();
                        let n = s.read_u16().await.unwrap();
                        let mut b = vec![0u8; n as usize];
                        s.read_exact(&mut b).await.unwrap();
                        let out = reply(&Message::from_vec(&b).unwrap(), true);
                        s.write_all(&(out.len() as u16).to_be_bytes()).await.unwrap();
                        s.write_all(&out).await.unwrap();
                    }
                }
            }
        });
        (port, task)
    }

    #[tokio::test]
    async fn forwards_over_udp_and_retries_truncated_answers_over_tcp() {
        let (port, task) = fake_upstream().await;
        let (_d, path) = conf("nameserver 127.0.0.1\n");
        let up = Upstream {
            resolv_conf: path,
            port,
        };
        let Forwarded::Answer(m) = up.forward(&query(), true, |_| false).await else {
            panic!("no answer");
        };
        assert_eq!(m.answers.len(), 1);
        assert_eq!(
            m.answers[0].data,
            RData::A(Ipv4Addr::new(192, 0, 2, 7).into())
        );
        let big = Query::query(Name::from_str("big.test.").unwrap(), RecordType::A);
        let Forwarded::Answer(m) = up.forward(&big, true, |_| false).await else {
            panic!("no answer");
        };
        assert!(!m.metadata.truncation);
        assert_eq!(m.answers.len(), 100);
        task.abort();
    }

    #[tokio::test]
    async fn a_silent_nameserver_fails() {
        // Bound, never read: the question goes nowhere.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let (_d, path) = conf("nameserver 127.0.0.1\nnameserver 127.0.0.1\nnameserver 127.0.0.1\n");
        let up = Upstream {
            resolv_conf: path,
            port,
        };
        // The forward gives up by itself (the outer limit only keeps a hang from stalling
        // the test run).
        let r = tokio::time::timeout(FORWARD_BUDGET * 10, up.forward(&query(), true, |_| false))
            .await
            .expect("the forward gives up on its own");
        assert!(
            matches!(r, Forwarded::Failed(ref e) if e.contains("in time")),
            "{r:?}"
        );
    }
}
