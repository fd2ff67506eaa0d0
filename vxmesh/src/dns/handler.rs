//! The request handler of one network's listener: answers vxmesh's names from the current
//! [`NameView`] (read on every query, so an answer is never older than the view) and sends the
//! rest to the [`Upstream`] forwarder.
//!
//! Answers to vxmesh's names are authoritative (AA) with TTL [`TTL`] = 0: the view follows the
//! store within a second, and a TTL of 0 tells every cache between here and the application
//! not to keep the record (RFC 1035 §3.2.1; Consul's DNS does the same by default), so an
//! answer can never be older than the agent's view. Negative answers carry no SOA, so they are
//! not cached either (RFC 2308 §5): a new service resolves at once.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use hickory_proto::op::{Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use super::names::{dotted, Answer, NameView};
use super::upstream::{Forwarded, Upstream, EDNS_PAYLOAD};

/// TTL of every record the agent answers for its own names, seconds (see the module doc).
pub const TTL: u32 = 0;

/// What every listener of the node shares: the view, replaced on each store change, and the
/// upstream forwarder.
pub struct Shared {
    view: RwLock<Arc<NameView>>,
    upstream: Upstream,
    /// Turns the order of multi-address answers, so clients that take the first address spread
    /// over the backends.
    turn: AtomicUsize,
}

impl Shared {
    /// Answers from `view` until [`Shared::set_view`] replaces it; forwards through `upstream`.
    pub fn new(view: NameView, upstream: Upstream) -> Shared {
        Shared {
            view: RwLock::new(Arc::new(view)),
            upstream,
            turn: AtomicUsize::new(0),
        }
    }

    /// The view queries are answered from now.
    pub fn view(&self) -> Arc<NameView> {
        self.view.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the view: every query from now on is answered from `view`.
    pub fn set_view(&self, view: NameView) {
        *self.view.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(view);
    }
}

/// The handler of the listener on `network`'s gateway.
pub struct NetworkHandler {
    /// The network whose gateway the listener is on: the asker's network.
    pub network: String,
    /// The view and the forwarder, shared by every listener of the node.
    pub shared: Arc<Shared>,
}

/// A response before encoding.
struct Reply {
    metadata: Metadata,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
}

impl Reply {
    fn to(request: &Request) -> Reply {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = true;
        Reply {
            metadata,
            answers: vec![],
            authorities: vec![],
            additionals: vec![],
        }
    }

    fn code(mut self, code: ResponseCode) -> Reply {
        self.metadata.response_code = code;
        self
    }
}

#[async_trait::async_trait]
impl RequestHandler for NetworkHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let reply = self.reply(request).await;
        // EDNS in the answer when the question had it (RFC 6891 §6.1.1), with the size this
        // answer may take over UDP: what the client offers, at most EDNS_PAYLOAD, at least
        // 512. A larger answer is truncated (TC) and the client asks again over TCP.
        let edns = request.edns.as_ref().map(|e| {
            let mut out = Edns::new();
            out.set_max_payload(e.max_payload().clamp(512, EDNS_PAYLOAD));
            out
        });
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(e) = &edns {
            builder.edns(e);
        }
        let metadata = reply.metadata;
        let message = builder.build(
            metadata,
            reply.answers.iter(),
            reply.authorities.iter(),
            std::iter::empty(),
            reply.additionals.iter(),
        );
        match response.send_response(message).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(network = %self.network, "sending a DNS answer: {e}");
                let mut metadata = metadata;
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

impl NetworkHandler {
    async fn reply(&self, request: &Request) -> Reply {
        let reply = Reply::to(request);
        if request.metadata.message_type != MessageType::Query {
            return reply.code(ResponseCode::FormErr);
        }
        if request.metadata.op_code != OpCode::Query {
            return reply.code(ResponseCode::NotImp);
        }
        // Exactly one question (RFC 9619).
        let Ok(info) = request.request_info() else {
            return reply.code(ResponseCode::FormErr);
        };
        let query = info.query.original();
        if !matches!(query.query_class(), DNSClass::IN | DNSClass::ANY)
            || matches!(query.query_type(), RecordType::AXFR | RecordType::IXFR)
        {
            return reply.code(ResponseCode::Refused);
        }
        let view = self.shared.view();
        let src = match info.src.ip() {
            IpAddr::V4(a) => a,
            IpAddr::V6(a) => a.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
        };
        let answer = match dotted(query.name().iter()) {
            Some(name) => view.resolve(&name, &view.visible_networks(&self.network, src)),
            None => Answer::Upstream,
        };
        match answer {
            Answer::Found(mut addrs) => {
                let mut reply = reply;
                reply.metadata.authoritative = true;
                if matches!(query.query_type(), RecordType::A | RecordType::ANY) {
                    if !addrs.is_empty() {
                        let turn = self.shared.turn.fetch_add(1, Ordering::Relaxed);
                        let n = addrs.len();
                        addrs.rotate_left(turn % n);
                    }
                    reply.answers = addrs
                        .into_iter()
                        .map(|a| Record::from_rdata(query.name().clone(), TTL, RData::A(a.into())))
                        .collect();
                }
                // Other types of a name that exists: no data (NOERROR, no answer).
                reply
            }
            Answer::NxDomain => {
                let mut reply = reply.code(ResponseCode::NXDomain);
                reply.metadata.authoritative = true;
                reply
            }
            Answer::Upstream => self.forward(request, reply, &view).await,
        }
    }

    async fn forward(&self, request: &Request, reply: Reply, view: &NameView) -> Reply {
        let Ok(info) = request.request_info() else {
            return reply.code(ResponseCode::FormErr);
        };
        let query = info.query.original();
        let gateways = view.gateways();
        let ours = |ip: IpAddr| matches!(ip, IpAddr::V4(a) if gateways.values().any(|g| *g == a));
        match self
            .shared
            .upstream
            .forward(query, request.metadata.recursion_desired, ours)
            .await
        {
            Forwarded::Answer(mut m) => {
                let mut reply = reply;
                reply.metadata.response_code = m.metadata.response_code;
                reply.metadata.recursion_available = m.metadata.recursion_available;
                reply.answers = std::mem::take(&mut m.answers);
                reply.authorities = std::mem::take(&mut m.authorities);
                reply.additionals = std::mem::take(&mut m.additionals);
                reply
            }
            Forwarded::NoUpstream => reply.code(ResponseCode::Refused),
            Forwarded::Failed(why) => {
                tracing::debug!(network = %self.network, name = %query.name(), "upstream failed: {why}");
                reply.code(ResponseCode::ServFail)
            }
        }
    }
}
