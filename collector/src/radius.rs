//! RADIUS accounting (RFC 2866): decoding Accounting-Request packets, verifying their Request
//! Authenticator against the client's shared secret, and building the Accounting-Response.
//!
//! A listener calls [`decode`] for each datagram and acts on the [`Outcome`]:
//!
//! - [`Outcome::Accepted`]: store the record, and only once it is durable send
//!   [`Outcome::Accepted::response`]; a client that gets no answer retransmits, so nothing is
//!   lost when the store is slow.
//! - [`Outcome::BadAuthenticator`]: the packet was not sent with our secret (a misconfigured
//!   or forged client). RFC 2866 says to discard it silently; it is not a session, but the
//!   packet is kept as a raw record and counted.
//! - [`Outcome::Malformed`]: not a well-formed Accounting-Request; kept raw, counted, no answer.
//!
//! Request Authenticator (RFC 2866 §3): MD5(Code + Identifier + Length + 16 zero octets +
//! Attributes + Secret). Response Authenticator: MD5(Code + Identifier + Length + Request
//! Authenticator + Attributes + Secret).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use jiff::{SignedDuration, Timestamp};
use khetnet_retention::record::{Body, Record, Session, SessionStatus};
use md5::{Digest, Md5};

use crate::{Receipt, mac};

/// The `protocol` name raw RADIUS records carry.
pub const RAW_PROTOCOL: &str = "radius";

const CODE_ACCOUNTING_REQUEST: u8 = 4;
const CODE_ACCOUNTING_RESPONSE: u8 = 5;
const HEADER_LEN: usize = 20;
/// RFC 2865 §3: the maximum length of a RADIUS packet.
pub const MAX_PACKET_LEN: usize = 4096;

/// Attribute types used here (RFC 2865, 2866, 2869, 3162).
mod attr {
    pub const USER_NAME: u8 = 1;
    pub const NAS_IP_ADDRESS: u8 = 4;
    pub const FRAMED_IP_ADDRESS: u8 = 8;
    pub const CALLING_STATION_ID: u8 = 31;
    pub const PROXY_STATE: u8 = 33;
    pub const NAS_IDENTIFIER: u8 = 32;
    pub const ACCT_STATUS_TYPE: u8 = 40;
    pub const ACCT_DELAY_TIME: u8 = 41;
    pub const ACCT_INPUT_OCTETS: u8 = 42;
    pub const ACCT_OUTPUT_OCTETS: u8 = 43;
    pub const ACCT_SESSION_ID: u8 = 44;
    pub const ACCT_SESSION_TIME: u8 = 46;
    pub const ACCT_TERMINATE_CAUSE: u8 = 49;
    pub const ACCT_INPUT_GIGAWORDS: u8 = 52;
    pub const ACCT_OUTPUT_GIGAWORDS: u8 = 53;
    pub const EVENT_TIMESTAMP: u8 = 55;
    pub const NAS_IPV6_ADDRESS: u8 = 95;
    pub const FRAMED_IPV6_ADDRESS: u8 = 168;
}

/// Acct-Status-Type values (RFC 2866 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusType {
    Start,
    Stop,
    InterimUpdate,
    AccountingOn,
    AccountingOff,
    Other(u32),
}

impl From<u32> for StatusType {
    fn from(value: u32) -> Self {
        match value {
            1 => StatusType::Start,
            2 => StatusType::Stop,
            3 => StatusType::InterimUpdate,
            7 => StatusType::AccountingOn,
            8 => StatusType::AccountingOff,
            other => StatusType::Other(other),
        }
    }
}

/// A verified Accounting-Request, its attributes read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccountingRequest {
    pub identifier: u8,
    pub authenticator: [u8; 16],
    pub status: Option<StatusType>,
    pub user: Option<String>,
    pub session_id: Option<String>,
    pub framed_ip: Option<IpAddr>,
    /// Calling-Station-Id as sent.
    pub calling_station: Option<String>,
    pub nas_ip: Option<IpAddr>,
    pub nas_identifier: Option<String>,
    /// Octets with the Gigawords attribute folded in.
    pub input_octets: Option<u64>,
    pub output_octets: Option<u64>,
    pub session_time: Option<u32>,
    pub terminate_cause: Option<u32>,
    pub event_timestamp: Option<Timestamp>,
    pub delay_secs: Option<u32>,
    /// Proxy-State attributes, in order: a RADIUS proxy in front of us needs them echoed in the
    /// response (RFC 2865 §5.33).
    pub proxy_states: Vec<Vec<u8>>,
}

/// What to do with one received datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A genuine Accounting-Request: store `record`, then send `response` to the client.
    Accepted {
        request: Box<AccountingRequest>,
        record: Record,
        response: Vec<u8>,
    },
    /// The Request Authenticator does not match the shared secret: keep `record` (raw), count,
    /// do not answer.
    BadAuthenticator { record: Record },
    /// Not a well-formed Accounting-Request: keep `record` (raw), count, do not answer.
    Malformed { record: Record, reason: String },
}

/// Decodes one datagram from a RADIUS client whose shared secret is `secret`.
pub fn decode(packet: &[u8], secret: &[u8], receipt: &Receipt) -> Outcome {
    let malformed = |reason: String| Outcome::Malformed {
        record: receipt.raw(None, RAW_PROTOCOL, packet, Some(reason.clone())),
        reason,
    };
    let len = match check(packet) {
        Ok(len) => len,
        Err(reason) => return malformed(reason),
    };
    let packet_used = &packet[..len];
    if !verify_request(packet_used, secret) {
        return Outcome::BadAuthenticator {
            record: receipt.raw(
                None,
                RAW_PROTOCOL,
                packet,
                Some("Request Authenticator does not match the shared secret"),
            ),
        };
    }
    let request = match parse_attributes(packet_used) {
        Ok(request) => request,
        Err(reason) => return malformed(reason),
    };
    let event_time = request.event_timestamp.or_else(|| {
        let delay = request.delay_secs?;
        receipt
            .receive_time
            .checked_sub(SignedDuration::from_secs(i64::from(delay)))
            .ok()
    });
    let record = match request.session() {
        Some(session) => receipt.record(event_time, Body::Session(session)),
        None => {
            let reason = match request.status {
                Some(StatusType::AccountingOn) => {
                    "Accounting-On: the NAS started; its open sessions ended".to_owned()
                }
                Some(StatusType::AccountingOff) => {
                    "Accounting-Off: the NAS is stopping; its open sessions ended".to_owned()
                }
                Some(StatusType::Other(n)) => {
                    format!("Acct-Status-Type {n} is not a session event")
                }
                None => "no Acct-Status-Type".to_owned(),
                Some(_) => "no User-Name".to_owned(),
            };
            receipt.raw(event_time, RAW_PROTOCOL, packet, Some(reason))
        }
    };
    let response = request.response(secret);
    Outcome::Accepted {
        request: Box::new(request),
        record,
        response,
    }
}

/// Checks the header: code, and a length field that the datagram covers. Returns the length.
/// Octets past the length field are padding and ignored (RFC 2865 §3).
fn check(packet: &[u8]) -> Result<usize, String> {
    if packet.len() < HEADER_LEN {
        return Err(format!(
            "{} octets is shorter than a RADIUS header",
            packet.len()
        ));
    }
    if packet[0] != CODE_ACCOUNTING_REQUEST {
        return Err(format!("code {} is not Accounting-Request (4)", packet[0]));
    }
    let len = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    if !(HEADER_LEN..=MAX_PACKET_LEN).contains(&len) {
        return Err(format!("length field {len} is outside 20..=4096"));
    }
    if len > packet.len() {
        return Err(format!(
            "length field {len} is longer than the {} octets received",
            packet.len()
        ));
    }
    Ok(len)
}

/// Whether the Request Authenticator of `packet` (exactly its length field long) matches.
fn verify_request(packet: &[u8], secret: &[u8]) -> bool {
    let mut md5 = Md5::new();
    md5.update(&packet[..4]);
    md5.update([0u8; 16]);
    md5.update(&packet[HEADER_LEN..]);
    md5.update(secret);
    let expected: [u8; 16] = md5.finalize().into();
    // Not secret-dependent timing worth hiding: the authenticator is on the wire in clear.
    expected == packet[4..HEADER_LEN]
}

/// The Accounting-Response (code 5) answering request `identifier`, echoing the request's
/// Proxy-State attributes. States that cannot be an attribute (over 253 octets) or would take
/// the packet past 4096 octets cannot have come from a request and are left out.
fn response(
    identifier: u8,
    request_authenticator: &[u8; 16],
    proxy_states: &[Vec<u8>],
    secret: &[u8],
) -> Vec<u8> {
    let mut attributes = Vec::new();
    for state in proxy_states {
        let Ok(len) = u8::try_from(state.len() + 2) else {
            continue;
        };
        if HEADER_LEN + attributes.len() + usize::from(len) > MAX_PACKET_LEN {
            break;
        }
        attributes.extend_from_slice(&[attr::PROXY_STATE, len]);
        attributes.extend_from_slice(state);
    }
    let len = u16::try_from(HEADER_LEN + attributes.len()).unwrap_or(u16::MAX);
    let mut out = vec![CODE_ACCOUNTING_RESPONSE, identifier];
    out.extend_from_slice(&len.to_be_bytes());
    let mut md5 = Md5::new();
    md5.update(&out);
    md5.update(request_authenticator);
    md5.update(&attributes);
    md5.update(secret);
    let authenticator: [u8; 16] = md5.finalize().into();
    out.extend_from_slice(&authenticator);
    out.extend_from_slice(&attributes);
    out
}

fn parse_attributes(packet: &[u8]) -> Result<AccountingRequest, String> {
    let mut request = AccountingRequest {
        identifier: packet[1],
        authenticator: packet[4..HEADER_LEN].try_into().expect("16 octets"),
        ..AccountingRequest::default()
    };
    let mut input_gigawords = None;
    let mut output_gigawords = None;
    let mut rest = &packet[HEADER_LEN..];
    while !rest.is_empty() {
        let [kind, len, ..] = *rest else {
            return Err("attribute header cut short".to_owned());
        };
        let len = usize::from(len);
        if len < 2 || len > rest.len() {
            return Err(format!(
                "attribute {kind} has length {len}, {} octets left",
                rest.len()
            ));
        }
        let value = &rest[2..len];
        rest = &rest[len..];
        let text = || String::from_utf8_lossy(value).into_owned();
        let int = || -> Result<u32, String> {
            let bytes: [u8; 4] = value
                .try_into()
                .map_err(|_| format!("attribute {kind} should be 4 octets, is {}", value.len()))?;
            Ok(u32::from_be_bytes(bytes))
        };
        match kind {
            attr::USER_NAME => request.user = Some(text()),
            attr::NAS_IP_ADDRESS => request.nas_ip = Some(ipv4(value, kind)?),
            attr::NAS_IPV6_ADDRESS if request.nas_ip.is_none() => {
                request.nas_ip = Some(ipv6(value, kind)?)
            }
            attr::FRAMED_IP_ADDRESS => request.framed_ip = Some(ipv4(value, kind)?),
            attr::FRAMED_IPV6_ADDRESS if request.framed_ip.is_none() => {
                request.framed_ip = Some(ipv6(value, kind)?)
            }
            attr::CALLING_STATION_ID => request.calling_station = Some(text()),
            attr::PROXY_STATE => request.proxy_states.push(value.to_vec()),
            attr::NAS_IDENTIFIER => request.nas_identifier = Some(text()),
            attr::ACCT_STATUS_TYPE => request.status = Some(StatusType::from(int()?)),
            attr::ACCT_DELAY_TIME => request.delay_secs = Some(int()?),
            attr::ACCT_INPUT_OCTETS => request.input_octets = Some(u64::from(int()?)),
            attr::ACCT_OUTPUT_OCTETS => request.output_octets = Some(u64::from(int()?)),
            attr::ACCT_INPUT_GIGAWORDS => input_gigawords = Some(u64::from(int()?)),
            attr::ACCT_OUTPUT_GIGAWORDS => output_gigawords = Some(u64::from(int()?)),
            attr::ACCT_SESSION_ID => request.session_id = Some(text()),
            attr::ACCT_SESSION_TIME => request.session_time = Some(int()?),
            attr::ACCT_TERMINATE_CAUSE => request.terminate_cause = Some(int()?),
            attr::EVENT_TIMESTAMP => {
                request.event_timestamp = Timestamp::from_second(i64::from(int()?)).ok()
            }
            _ => {}
        }
    }
    let fold = |octets: Option<u64>, giga: Option<u64>| match (octets, giga) {
        (None, None) => None,
        (o, g) => Some((g.unwrap_or(0) << 32) | o.unwrap_or(0)),
    };
    request.input_octets = fold(request.input_octets, input_gigawords);
    request.output_octets = fold(request.output_octets, output_gigawords);
    Ok(request)
}

fn ipv4(value: &[u8], kind: u8) -> Result<IpAddr, String> {
    let octets: [u8; 4] = value.try_into().map_err(|_| {
        format!(
            "attribute {kind} should be an IPv4 address, is {} octets",
            value.len()
        )
    })?;
    Ok(IpAddr::V4(Ipv4Addr::from(octets)))
}

/// Framed-IPv6-Address and NAS-IPv6-Address: 16 octets.
fn ipv6(value: &[u8], kind: u8) -> Result<IpAddr, String> {
    let octets: [u8; 16] = value.try_into().map_err(|_| {
        format!(
            "attribute {kind} should be an IPv6 address, is {} octets",
            value.len()
        )
    })?;
    Ok(IpAddr::V6(Ipv6Addr::from(octets)))
}

impl AccountingRequest {
    /// The Accounting-Response to send once this request's record is durable.
    pub fn response(&self, secret: &[u8]) -> Vec<u8> {
        response(
            self.identifier,
            &self.authenticator,
            &self.proxy_states,
            secret,
        )
    }

    /// The session record this request reports, if it is a Start, Interim-Update or Stop with
    /// a User-Name.
    pub fn session(&self) -> Option<Session> {
        let status = match self.status? {
            StatusType::Start => SessionStatus::Start,
            StatusType::InterimUpdate => SessionStatus::Interim,
            StatusType::Stop => SessionStatus::Stop,
            _ => return None,
        };
        Some(Session {
            status,
            user: self.user.clone()?,
            session_id: self.session_id.clone(),
            ip: self.framed_ip,
            mac: self.calling_station.as_deref().and_then(mac::normalise),
            nas: self
                .nas_ip
                .map(|ip| ip.to_string())
                .or_else(|| self.nas_identifier.clone()),
            input_octets: self.input_octets,
            output_octets: self.output_octets,
            duration_secs: self.session_time.map(u64::from),
            terminate_cause: self.terminate_cause.map(terminate_cause),
        })
    }
}

/// Acct-Terminate-Cause names as in RFC 2866 §5.10 (and FreeRADIUS' dictionary).
fn terminate_cause(value: u32) -> String {
    const NAMES: [&str; 18] = [
        "User-Request",
        "Lost-Carrier",
        "Lost-Service",
        "Idle-Timeout",
        "Session-Timeout",
        "Admin-Reset",
        "Admin-Reboot",
        "Port-Error",
        "NAS-Error",
        "NAS-Request",
        "NAS-Reboot",
        "Port-Unneeded",
        "Port-Preempted",
        "Port-Suspended",
        "Service-Unavailable",
        "Callback",
        "User-Error",
        "Host-Request",
    ];
    usize::try_from(value)
        .ok()
        .and_then(|v| v.checked_sub(1))
        .and_then(|i| NAMES.get(i))
        .map_or_else(|| value.to_string(), |name| (*name).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use khetnet_retention::record::{Input, Origin};
    use proptest::prelude::*;

    const SECRET: &[u8] = b"testing123";

    /// Computed outside this crate (Python's hashlib) for the packet below: status Start, user
    /// student1, session 81200001, framed 10.5.50.9, calling station AA-BB-CC-DD-EE-01, NAS
    /// 10.5.0.1, identifier 0x2a, secret `testing123`.
    const START_PACKET: &str = "042a004d64019879a4f1796ee4d3c58a26641cdd280600000001010a73747564656e74312c0a383132303030303108060a0532091f1341412d42422d43432d44442d45452d303104060a050001";
    const START_RESPONSE_AUTHENTICATOR: &str = "0ff35991b9edb8e00278ee2d2854f55d";
    /// Also from hashlib: a Stop for student1, identifier 0x2b, with two Proxy-State
    /// attributes, and the whole Accounting-Response that echoes them.
    const PROXIED_STOP: &str = "042b0032906817be9d5c4b30666f035ced22e6ef280600000002010a73747564656e7431210b010270726f78792d61210342";
    const PROXIED_RESPONSE: &str =
        "052b00220a3bdecd1efd53c83b97fb114656c4ac210b010270726f78792d61210342";

    fn receipt() -> Receipt {
        Receipt {
            receive_time: "2026-11-21T04:00:00Z".parse().unwrap(),
            origin: Origin {
                input: Input::Radius,
                peer: Some("10.5.0.1".parse().unwrap()),
                import_sha256: None,
            },
            school: Some("1010100001".into()),
        }
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    fn attribute(kind: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![kind, u8::try_from(value.len() + 2).unwrap()];
        out.extend_from_slice(value);
        out
    }

    fn int(kind: u8, value: u32) -> Vec<u8> {
        attribute(kind, &value.to_be_bytes())
    }

    /// An Accounting-Request with `attributes`, signed with `secret` as a NAS would: the MD5
    /// computed here over the bytes as laid out on the wire, not through the code under test.
    fn request(identifier: u8, attributes: &[Vec<u8>], secret: &[u8]) -> Vec<u8> {
        let attrs: Vec<u8> = attributes.concat();
        let len = u16::try_from(20 + attrs.len()).unwrap();
        let mut packet = vec![4, identifier];
        packet.extend_from_slice(&len.to_be_bytes());
        let mut md5 = Md5::new();
        md5.update(&packet);
        md5.update([0u8; 16]);
        md5.update(&attrs);
        md5.update(secret);
        packet.extend_from_slice(&md5.finalize());
        packet.extend_from_slice(&attrs);
        packet
    }

    /// Renders an outcome the way a user would check it: what is stored and whether we answer.
    fn show(outcome: &Outcome) -> String {
        match outcome {
            Outcome::Accepted {
                record, response, ..
            } => {
                let answer = if response.len() == 20 && response[0] == 5 {
                    "ack"
                } else {
                    "bad-ack"
                };
                let body = match &record.body {
                    Body::Session(s) => format!(
                        "{:?} user={} id={} ip={} mac={} nas={} in={} out={} secs={} cause={}",
                        s.status,
                        s.user,
                        s.session_id.as_deref().unwrap_or("-"),
                        s.ip.map_or("-".into(), |i| i.to_string()),
                        s.mac.as_deref().unwrap_or("-"),
                        s.nas.as_deref().unwrap_or("-"),
                        s.input_octets.map_or("-".into(), |i| i.to_string()),
                        s.output_octets.map_or("-".into(), |i| i.to_string()),
                        s.duration_secs.map_or("-".into(), |i| i.to_string()),
                        s.terminate_cause.as_deref().unwrap_or("-"),
                    ),
                    Body::Raw(r) => format!("raw: {}", r.reason.as_deref().unwrap_or("-")),
                    other => format!("{other:?}"),
                };
                format!("{answer} {body} @{}", record.event_time)
            }
            Outcome::BadAuthenticator { record } => match &record.body {
                Body::Raw(r) => format!("bad-authenticator raw={}", r.data.len()),
                other => format!("bad-authenticator {other:?}"),
            },
            Outcome::Malformed { record, reason } => match &record.body {
                Body::Raw(r) => format!("malformed raw={}: {reason}", r.data.len()),
                other => format!("malformed {other:?}"),
            },
        }
    }

    fn check(attributes: &[Vec<u8>], expected: &str) {
        let packet = request(7, attributes, SECRET);
        assert_eq!(show(&decode(&packet, SECRET, &receipt())), expected);
    }

    fn check_bytes(packet: &[u8], expected: &str) {
        assert_eq!(show(&decode(packet, SECRET, &receipt())), expected);
    }

    #[test]
    fn independent_vector() {
        let packet = hex(START_PACKET);
        assert_eq!(request(0x2a, &[], SECRET).len(), 20, "helper sanity");
        let outcome = decode(&packet, SECRET, &receipt());
        assert_eq!(
            show(&outcome),
            "ack Start user=student1 id=81200001 ip=10.5.50.9 mac=aa:bb:cc:dd:ee:01 nas=10.5.0.1 in=- out=- secs=- cause=- @2026-11-21T04:00:00Z"
        );
        let Outcome::Accepted { response, .. } = outcome else {
            unreachable!()
        };
        let mut expected = vec![5, 0x2a, 0, 20];
        expected.extend(hex(START_RESPONSE_AUTHENTICATOR));
        assert_eq!(response, expected);
        // The test helper signs the same packet to the same bytes.
        let attrs = &packet[20..];
        let mut rebuilt = Vec::new();
        let mut rest = attrs;
        while !rest.is_empty() {
            let len = usize::from(rest[1]);
            rebuilt.push(rest[..len].to_vec());
            rest = &rest[len..];
        }
        assert_eq!(request(0x2a, &rebuilt, SECRET), packet);
    }

    #[test]
    fn proxy_state_is_echoed() {
        let outcome = decode(&hex(PROXIED_STOP), SECRET, &receipt());
        let Outcome::Accepted { response, .. } = outcome else {
            panic!("not accepted: {outcome:?}");
        };
        assert_eq!(response, hex(PROXIED_RESPONSE));
    }

    #[test]
    fn accounting_requests() {
        use attr::*;
        let user = attribute(USER_NAME, b"student1");
        let sid = attribute(ACCT_SESSION_ID, b"8120000a");
        let ip = attribute(FRAMED_IP_ADDRESS, &[10, 5, 50, 9]);
        check(
            &[
                int(ACCT_STATUS_TYPE, 1),
                user.clone(),
                sid.clone(),
                ip.clone(),
                attribute(CALLING_STATION_ID, b"aabb.ccdd.ee01"),
                attribute(NAS_IDENTIFIER, b"school-gw"),
            ],
            "ack Start user=student1 id=8120000a ip=10.5.50.9 mac=aa:bb:cc:dd:ee:01 nas=school-gw in=- out=- secs=- cause=- @2026-11-21T04:00:00Z",
        );
        check(
            &[
                int(ACCT_STATUS_TYPE, 3),
                user.clone(),
                sid.clone(),
                ip.clone(),
                int(ACCT_INPUT_OCTETS, 1000),
                int(ACCT_OUTPUT_OCTETS, 2000),
                int(ACCT_SESSION_TIME, 300),
            ],
            "ack Interim user=student1 id=8120000a ip=10.5.50.9 mac=- nas=- in=1000 out=2000 secs=300 cause=- @2026-11-21T04:00:00Z",
        );
        // Stop with Gigawords (5 GiB + 16 in), terminate cause, Event-Timestamp.
        check(
            &[
                int(ACCT_STATUS_TYPE, 2),
                user.clone(),
                sid.clone(),
                int(ACCT_INPUT_OCTETS, 16),
                int(ACCT_INPUT_GIGAWORDS, 5),
                int(ACCT_OUTPUT_GIGAWORDS, 1),
                int(ACCT_SESSION_TIME, 3600),
                int(ACCT_TERMINATE_CAUSE, 1),
                int(EVENT_TIMESTAMP, 1_795_233_000),
                attribute(NAS_IP_ADDRESS, &[10, 5, 0, 1]),
            ],
            "ack Stop user=student1 id=8120000a ip=- mac=- nas=10.5.0.1 in=21474836496 out=4294967296 secs=3600 cause=User-Request @2026-11-21T03:50:00Z",
        );
        check(
            &[
                int(ACCT_STATUS_TYPE, 2),
                user.clone(),
                int(ACCT_TERMINATE_CAUSE, 4),
            ],
            "ack Stop user=student1 id=- ip=- mac=- nas=- in=- out=- secs=- cause=Idle-Timeout @2026-11-21T04:00:00Z",
        );
        check(
            &[
                int(ACCT_STATUS_TYPE, 2),
                user.clone(),
                int(ACCT_TERMINATE_CAUSE, 99),
            ],
            "ack Stop user=student1 id=- ip=- mac=- nas=- in=- out=- secs=- cause=99 @2026-11-21T04:00:00Z",
        );
        // Acct-Delay-Time moves the event back when there is no Event-Timestamp.
        check(
            &[
                int(ACCT_STATUS_TYPE, 1),
                user.clone(),
                int(ACCT_DELAY_TIME, 30),
            ],
            "ack Start user=student1 id=- ip=- mac=- nas=- in=- out=- secs=- cause=- @2026-11-21T03:59:30Z",
        );
        // IPv6 framed address; a phone number as calling station is not a MAC.
        check(
            &[
                int(ACCT_STATUS_TYPE, 1),
                user.clone(),
                attribute(
                    FRAMED_IPV6_ADDRESS,
                    &"2001:db8::9".parse::<Ipv6Addr>().unwrap().octets(),
                ),
                attribute(CALLING_STATION_ID, b"0812345678"),
            ],
            "ack Start user=student1 id=- ip=2001:db8::9 mac=- nas=- in=- out=- secs=- cause=- @2026-11-21T04:00:00Z",
        );
        // Thai user names survive.
        check(
            &[
                int(ACCT_STATUS_TYPE, 1),
                attribute(USER_NAME, "ครูสมศรี".as_bytes()),
            ],
            "ack Start user=ครูสมศรี id=- ip=- mac=- nas=- in=- out=- secs=- cause=- @2026-11-21T04:00:00Z",
        );
        // Unknown and vendor-specific attributes are skipped.
        check(
            &[
                attribute(26, &[0, 0, 0x3a, 0x8c, 1, 4, b'x', b'y']),
                int(ACCT_STATUS_TYPE, 1),
                user.clone(),
            ],
            "ack Start user=student1 id=- ip=- mac=- nas=- in=- out=- secs=- cause=- @2026-11-21T04:00:00Z",
        );
    }

    #[test]
    fn not_sessions_but_answered() {
        use attr::*;
        check(
            &[
                int(ACCT_STATUS_TYPE, 7),
                attribute(NAS_IP_ADDRESS, &[10, 5, 0, 1]),
            ],
            "ack raw: Accounting-On: the NAS started; its open sessions ended @2026-11-21T04:00:00Z",
        );
        check(
            &[int(ACCT_STATUS_TYPE, 8)],
            "ack raw: Accounting-Off: the NAS is stopping; its open sessions ended @2026-11-21T04:00:00Z",
        );
        check(
            &[int(ACCT_STATUS_TYPE, 1)],
            "ack raw: no User-Name @2026-11-21T04:00:00Z",
        );
        check(
            &[attribute(USER_NAME, b"x")],
            "ack raw: no Acct-Status-Type @2026-11-21T04:00:00Z",
        );
        check(
            &[int(ACCT_STATUS_TYPE, 15), attribute(USER_NAME, b"x")],
            "ack raw: Acct-Status-Type 15 is not a session event @2026-11-21T04:00:00Z",
        );
    }

    #[test]
    fn verification() {
        use attr::*;
        let attrs = [int(ACCT_STATUS_TYPE, 1), attribute(USER_NAME, b"student1")];
        check_bytes(
            &request(1, &attrs, b"other-secret"),
            "bad-authenticator raw=36",
        );
        // One attribute octet changed after signing.
        let mut tampered = request(1, &attrs, SECRET);
        *tampered.last_mut().unwrap() ^= 1;
        check_bytes(&tampered, "bad-authenticator raw=36");
        // The identifier is covered too.
        let mut tampered = request(1, &attrs, SECRET);
        tampered[1] = 2;
        check_bytes(&tampered, "bad-authenticator raw=36");
        // Padding past the length field is ignored, and kept in the raw record.
        let mut padded = request(1, &attrs, SECRET);
        padded.extend_from_slice(&[0, 0, 0]);
        check_bytes(
            &padded,
            "ack Start user=student1 id=- ip=- mac=- nas=- in=- out=- secs=- cause=- @2026-11-21T04:00:00Z",
        );
    }

    #[test]
    fn malformed() {
        use attr::*;
        check_bytes(
            &[],
            "malformed raw=0: 0 octets is shorter than a RADIUS header",
        );
        check_bytes(
            &[4; 19],
            "malformed raw=19: 19 octets is shorter than a RADIUS header",
        );
        let mut access = request(1, &[], SECRET);
        access[0] = 1;
        check_bytes(
            &access,
            "malformed raw=20: code 1 is not Accounting-Request (4)",
        );
        let mut short = request(1, &[int(ACCT_STATUS_TYPE, 1)], SECRET);
        short.truncate(24);
        check_bytes(
            &short,
            "malformed raw=24: length field 26 is longer than the 24 octets received",
        );
        let mut tiny = request(1, &[], SECRET);
        tiny[3] = 19;
        check_bytes(
            &tiny,
            "malformed raw=20: length field 19 is outside 20..=4096",
        );
        // Attribute structure is checked after the authenticator, on signed bytes.
        check(
            &[vec![ACCT_STATUS_TYPE, 1]],
            "malformed raw=22: attribute 40 has length 1, 2 octets left",
        );
        check(
            &[vec![USER_NAME, 9, b'a']],
            "malformed raw=23: attribute 1 has length 9, 3 octets left",
        );
        check(
            &[vec![ACCT_STATUS_TYPE]],
            "malformed raw=21: attribute header cut short",
        );
        check(
            &[attribute(ACCT_STATUS_TYPE, &[0, 1])],
            "malformed raw=24: attribute 40 should be 4 octets, is 2",
        );
        check(
            &[attribute(FRAMED_IP_ADDRESS, &[10, 0, 0])],
            "malformed raw=25: attribute 8 should be an IPv4 address, is 3 octets",
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(packet in proptest::collection::vec(any::<u8>(), 0..200)) {
            let outcome = decode(&packet, SECRET, &receipt());
            // Anything that is not a signed request is kept whole.
            if let Outcome::Malformed { record, .. } | Outcome::BadAuthenticator { record } = &outcome {
                prop_assert!(matches!(&record.body, Body::Raw(r) if r.data == packet));
            }
        }

        #[test]
        fn signed_random_attributes_never_panic(attrs in proptest::collection::vec(any::<u8>(), 0..200), id in any::<u8>()) {
            let mut packet = request(id, &[attrs], SECRET);
            let _ = decode(&packet, SECRET, &receipt());
            packet.truncate(packet.len() / 2);
            let _ = decode(&packet, SECRET, &receipt());
        }
    }
}
