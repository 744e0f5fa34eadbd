//! The typed records the store keeps: what the Computer Crime Act calls traffic data.
//!
//! Every record carries when it happened (`event_time`, from the source), when the store
//! received it (`receive_time`, the store's clock; retention is counted from it), where it came
//! from (`origin`) and the school it belongs to. The body is one of the kinds in [`Body`];
//! `docs/RECORDS.md` documents each field.

use std::borrow::Cow;
use std::net::IpAddr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// One piece of traffic data, as stored, searched and exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// When the event happened, by the source's clock (the receive time when the source gave none).
    pub event_time: Timestamp,
    /// When the collector received it, by the store's clock. Retention counts from here.
    pub receive_time: Timestamp,
    /// Which input and which peer delivered it.
    pub origin: Origin,
    /// The school code the source is mapped to, if any.
    pub school: Option<String>,
    /// What the record says.
    pub body: Body,
}

/// How a record reached the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub input: Input,
    /// The sending peer's address (the gateway, RADIUS client or flow exporter).
    pub peer: Option<IpAddr>,
    /// For imported files: the SHA-256 (hex) of the file the record was read from.
    pub import_sha256: Option<String>,
}

/// The input a record arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Input {
    SyslogUdp,
    SyslogTcp,
    SyslogTls,
    Relp,
    Radius,
    Netflow,
    Ipfix,
    Import,
    /// Written by the store itself (its own access log: who searched, exported, held, purged).
    Store,
}

/// The kinds of traffic data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    Session(Session),
    Flow(Flow),
    Nat(Nat),
    Lease(Lease),
    Auth(AuthEvent),
    Proxy(ProxyRequest),
    Raw(Raw),
    Access(Access),
    Clock(ClockOffset),
}

/// An authenticated network session (RADIUS accounting, hotspot login/logout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub status: SessionStatus,
    /// The user ID the person authenticated with.
    pub user: String,
    /// The NAS's session id (Acct-Session-Id), linking start, interim and stop.
    pub session_id: Option<String>,
    /// The address assigned to the user (Framed-IP-Address).
    pub ip: Option<IpAddr>,
    /// The calling station, normalised to lower-case `aa:bb:cc:dd:ee:ff`.
    pub mac: Option<String>,
    /// The NAS that reported it (NAS-IP-Address or NAS-Identifier).
    pub nas: Option<String>,
    pub input_octets: Option<u64>,
    pub output_octets: Option<u64>,
    pub duration_secs: Option<u64>,
    pub terminate_cause: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    Start,
    Interim,
    Stop,
}

/// A traffic flow (NetFlow/IPFIX, or a firewall log line that names a connection).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP).
    pub protocol: u8,
    pub src_ip: IpAddr,
    pub src_port: Option<u16>,
    pub dst_ip: IpAddr,
    pub dst_port: Option<u16>,
    pub bytes: Option<u64>,
    pub packets: Option<u64>,
    pub start: Option<Timestamp>,
    pub end: Option<Timestamp>,
    /// The flow exporter or gateway that saw it.
    pub exporter: Option<IpAddr>,
    /// The source after NAT, when the exporter reports it (NSEL / IPFIX postNAT fields).
    pub nat_src_ip: Option<IpAddr>,
    pub nat_src_port: Option<u16>,
    /// Firewall verdict or action when the source is a log line (accept, drop, ...).
    pub action: Option<String>,
    /// The authenticated user the gateway tied the flow to (FortiGate `user=`).
    #[serde(default)]
    pub user: Option<String>,
}

/// A NAT translation: the inside address and port were seen outside as another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nat {
    pub protocol: Option<u8>,
    pub inside_ip: IpAddr,
    pub inside_port: Option<u16>,
    pub outside_ip: IpAddr,
    pub outside_port: Option<u16>,
    pub dst_ip: Option<IpAddr>,
    pub dst_port: Option<u16>,
}

/// An address lease (DHCP): which MAC had which IP, from when to when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub action: LeaseAction,
    pub ip: IpAddr,
    pub mac: String,
    pub hostname: Option<String>,
    pub start: Option<Timestamp>,
    pub end: Option<Timestamp>,
    /// The DHCP server that reported it.
    pub server: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseAction {
    Assign,
    Renew,
    Release,
    Expire,
}

/// An authentication attempt (success or failure) that is not itself a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthEvent {
    pub user: String,
    pub success: bool,
    /// What was logged in to (hotspot, vpn, ssh, wifi, ...).
    pub service: String,
    pub ip: Option<IpAddr>,
    pub mac: Option<String>,
    pub message: Option<String>,
}

/// A request through a web proxy (Squid access.log): identifies users behind the proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyRequest {
    pub client_ip: IpAddr,
    pub user: Option<String>,
    pub method: String,
    pub url: String,
    pub status: Option<u16>,
    pub bytes: Option<u64>,
    pub duration_ms: Option<u64>,
    pub server_ip: Option<IpAddr>,
}

/// Anything received that no parser understood, kept whole: nothing received is lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Raw {
    /// Which decoder gave up on it (`syslog`, `radius`, `netflow`, ...). Borrowed when the
    /// decoder names it with a constant, as it names most reasons: a collector keeps raw
    /// records by the hundred thousand, and two allocations each were a tenth of its work.
    pub protocol: Cow<'static, str>,
    /// The bytes exactly as received.
    pub data: Vec<u8>,
    /// Why it was not parsed, when a decoder said so.
    pub reason: Option<Cow<'static, str>>,
}

/// A check of the writer's clock against a reference time server (SNTP): the law asks for
/// clocks within 10 ms of reference time, and these records show a court it was checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockOffset {
    /// The NTP server asked, as configured (`HOST[:PORT]`).
    pub server: String,
    /// The server's clock minus ours, in nanoseconds; `None` when the check failed.
    pub offset_ns: Option<i64>,
    /// The round trip less the server's processing, in nanoseconds.
    pub delay_ns: Option<i64>,
    /// The server's stratum.
    pub stratum: Option<u8>,
    /// Why there is no measurement (no answer, an unusable reply).
    pub error: Option<String>,
}

impl ClockOffset {
    /// The law's limit on the offset, in nanoseconds (10 ms).
    pub const LIMIT_NS: i64 = 10_000_000;

    /// True when the offset is over the law's 10 ms.
    pub fn over_limit(&self) -> bool {
        self.offset_ns
            .is_some_and(|o| o.unsigned_abs() > Self::LIMIT_NS as u64)
    }
}

/// The store's own access log: who searched, attributed, exported, held or purged what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// The person (OS user or named officer) who did it.
    pub actor: String,
    /// `search`, `attribute`, `export`, `hold_add`, `hold_release`, `purge`, ...
    pub action: String,
    /// The query or arguments, as given.
    pub detail: String,
}

/// A searchable value a record carries: what segment filters index and queries match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Term<'a> {
    Ip(IpAddr),
    Port(u16),
    User(&'a str),
    Mac(&'a str),
    /// An address and port seen together (a flow's or translation's end).
    Endpoint(IpAddr, u16),
    /// An address held by a person or device: a session's, lease's or login's IP.
    Assigned(IpAddr),
}

impl Record {
    /// Calls `f` with every IP, port, user and MAC the record names, in any role, and with
    /// its endpoints and assigned addresses.
    pub fn for_each_term<'a>(&'a self, mut f: impl FnMut(Term<'a>)) {
        let endpoint = |a: Option<IpAddr>, p: Option<u16>, f: &mut dyn FnMut(Term<'a>)| {
            if let (Some(a), Some(p)) = (a, p) {
                f(Term::Endpoint(a, p));
            }
        };
        let assigned = |a: Option<IpAddr>, f: &mut dyn FnMut(Term<'a>)| {
            if let Some(a) = a {
                f(Term::Assigned(a));
            }
        };
        let ip = |v: Option<IpAddr>, f: &mut dyn FnMut(Term<'a>)| {
            if let Some(v) = v {
                f(Term::Ip(v));
            }
        };
        let port = |v: Option<u16>, f: &mut dyn FnMut(Term<'a>)| {
            if let Some(v) = v {
                f(Term::Port(v));
            }
        };
        match &self.body {
            Body::Session(s) => {
                f(Term::User(&s.user));
                ip(s.ip, &mut f);
                assigned(s.ip, &mut f);
                if let Some(m) = &s.mac {
                    f(Term::Mac(m));
                }
            }
            Body::Flow(x) => {
                ip(Some(x.src_ip), &mut f);
                ip(Some(x.dst_ip), &mut f);
                ip(x.nat_src_ip, &mut f);
                port(x.src_port, &mut f);
                port(x.dst_port, &mut f);
                port(x.nat_src_port, &mut f);
                endpoint(Some(x.src_ip), x.src_port, &mut f);
                endpoint(Some(x.dst_ip), x.dst_port, &mut f);
                endpoint(x.nat_src_ip, x.nat_src_port, &mut f);
            }
            Body::Nat(n) => {
                ip(Some(n.inside_ip), &mut f);
                ip(Some(n.outside_ip), &mut f);
                ip(n.dst_ip, &mut f);
                port(n.inside_port, &mut f);
                port(n.outside_port, &mut f);
                port(n.dst_port, &mut f);
                endpoint(Some(n.inside_ip), n.inside_port, &mut f);
                endpoint(Some(n.outside_ip), n.outside_port, &mut f);
                endpoint(n.dst_ip, n.dst_port, &mut f);
            }
            Body::Lease(l) => {
                ip(Some(l.ip), &mut f);
                assigned(Some(l.ip), &mut f);
                f(Term::Mac(&l.mac));
            }
            Body::Auth(a) => {
                f(Term::User(&a.user));
                ip(a.ip, &mut f);
                assigned(a.ip, &mut f);
                if let Some(m) = &a.mac {
                    f(Term::Mac(m));
                }
            }
            Body::Proxy(p) => {
                ip(Some(p.client_ip), &mut f);
                ip(p.server_ip, &mut f);
                if let Some(u) = &p.user {
                    f(Term::User(u));
                }
            }
            Body::Raw(_) => {}
            Body::Access(a) => f(Term::User(&a.actor)),
            Body::Clock(_) => {}
        }
    }

    /// The kind's name as written in exports and `docs/RECORDS.md`.
    pub fn kind(&self) -> &'static str {
        match &self.body {
            Body::Session(_) => "session",
            Body::Flow(_) => "flow",
            Body::Nat(_) => "nat",
            Body::Lease(_) => "lease",
            Body::Auth(_) => "auth",
            Body::Proxy(_) => "proxy",
            Body::Raw(_) => "raw",
            Body::Access(_) => "access",
            Body::Clock(_) => "clock",
        }
    }

    /// A short name for the source: the input and, when known, the peer (`netflow/10.0.0.1`).
    pub fn source(&self) -> String {
        let input = self.origin.input.name();
        match self.origin.peer {
            Some(peer) => format!("{input}/{peer}"),
            None => input.to_string(),
        }
    }
}

impl Input {
    /// The name as serialized (`syslog_udp`, `netflow`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Input::SyslogUdp => "syslog_udp",
            Input::SyslogTcp => "syslog_tcp",
            Input::SyslogTls => "syslog_tls",
            Input::Relp => "relp",
            Input::Radius => "radius",
            Input::Netflow => "netflow",
            Input::Ipfix => "ipfix",
            Input::Import => "import",
            Input::Store => "store",
        }
    }
}
