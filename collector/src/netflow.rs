//! NetFlow v5, v9 and IPFIX: one [`FlowDecoder`] per exporter turns datagrams into [`Flow`]
//! records.
//!
//! v9 and IPFIX describe their records with templates the exporter sends now and then, and
//! template ids are only unique per exporter, so each exporter gets its own decoder (its own
//! `netflow_parser` template cache). The listener keeps a map from exporter address to decoder.
//!
//! Times: v5 and v9 give a flow's first and last packet as the exporter's uptime in
//! milliseconds; they are made absolute with the header's uptime and wall-clock export time
//! (wrapping arithmetic, so an uptime counter that rolled over after 49.7 days still works).
//! IPFIX gives absolute times (flowStart/EndSeconds or Milliseconds) or uptimes relative to
//! systemInitTimeMilliseconds.
//!
//! NAT: v9 and IPFIX records may carry the source after NAT (fields 225 postNATSourceIPv4Address,
//! 281 postNATSourceIPv6Address, 227 postNAPTSourceTransportPort); it goes into
//! [`Flow::nat_src_ip`]/[`Flow::nat_src_port`].
//!
//! A datagram that cannot be parsed, or whose data arrives before its template, is kept whole
//! as one raw record (besides any flows it did yield) and counted in [`FlowCounters`].

use std::net::IpAddr;

use jiff::Timestamp;
use khetnet_retention::record::{Body, Flow, Record};
use netflow_parser::variable_versions::field_value::DurationValue;
use netflow_parser::variable_versions::ipfix::lookup::IANAIPFixField;
use netflow_parser::variable_versions::{ipfix, v9};
use netflow_parser::{DataNumber, FieldValue, IpfixField, NetflowPacket, NetflowParser};

use crate::Receipt;

/// The `protocol` name raw flow records carry.
pub const RAW_PROTOCOL: &str = "netflow";

/// What one exporter's decoder has seen, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowCounters {
    /// Datagrams decoded.
    pub datagrams: u64,
    /// Flow records produced.
    pub flows: u64,
    /// Datagrams kept raw because (part of) them could not be parsed.
    pub malformed: u64,
    /// Data sets that arrived before their template (their datagram is kept raw).
    pub missing_template: u64,
}

/// The decoding state of one flow exporter: its templates and counters.
#[derive(Debug)]
pub struct FlowDecoder {
    exporter: IpAddr,
    parser: NetflowParser,
    counters: FlowCounters,
}

impl FlowDecoder {
    /// A decoder for the exporter at `exporter`, with no templates yet.
    pub fn new(exporter: IpAddr) -> Self {
        FlowDecoder {
            exporter,
            parser: NetflowParser::default(),
            counters: FlowCounters::default(),
        }
    }

    /// The exporter this decoder belongs to.
    pub fn exporter(&self) -> IpAddr {
        self.exporter
    }

    /// Counters since the decoder was made.
    pub fn counters(&self) -> FlowCounters {
        self.counters
    }

    /// Decodes one datagram into records: one flow record per flow, plus one raw record of
    /// the whole datagram when any of it could not be decoded.
    pub fn decode(&mut self, datagram: &[u8], receipt: &Receipt) -> Vec<Record> {
        self.counters.datagrams += 1;
        let result = self.parser.parse_bytes(datagram);
        let mut records = Vec::new();
        let mut missing = 0u64;
        for packet in &result.packets {
            match packet {
                NetflowPacket::V5(v5) => {
                    let export =
                        header_millis(v5.header.unix_secs, v5.header.unix_nsecs / 1_000_000);
                    for set in &v5.flowsets {
                        let flow = Flow {
                            protocol: set.protocol_number,
                            src_ip: IpAddr::V4(set.src_addr),
                            src_port: Some(set.src_port),
                            dst_ip: IpAddr::V4(set.dst_addr),
                            dst_port: Some(set.dst_port),
                            bytes: Some(u64::from(set.d_octets)),
                            packets: Some(u64::from(set.d_pkts)),
                            start: uptime_to_time(export, v5.header.sys_up_time, set.first),
                            end: uptime_to_time(export, v5.header.sys_up_time, set.last),
                            exporter: Some(self.exporter),
                            nat_src_ip: None,
                            nat_src_port: None,
                            action: None,
                            user: None,
                        };
                        self.counters.flows += 1;
                        records.push(receipt.record(flow.end, Body::Flow(flow)));
                    }
                }
                NetflowPacket::V9(v9) => {
                    let export = header_millis(v9.header.unix_secs, 0);
                    let clock = Clock::Uptime {
                        export,
                        uptime: v9.header.sys_up_time,
                    };
                    for set in &v9.flowsets {
                        match &set.body {
                            v9::FlowSetBody::Data(data) => {
                                for fields in &data.fields {
                                    let ids = fields.iter().map(|(f, v)| (u16::from(*f), v));
                                    self.push(&mut records, receipt, ids, clock);
                                }
                            }
                            v9::FlowSetBody::NoTemplate(_) => missing += 1,
                            _ => {}
                        }
                    }
                }
                NetflowPacket::IPFix(ipfix) => {
                    let clock = Clock::Absolute;
                    for set in &ipfix.flowsets {
                        match &set.body {
                            ipfix::FlowSetBody::Data(data) => {
                                for fields in &data.fields {
                                    let ids =
                                        fields.iter().filter_map(|(f, v)| Some((ipfix_id(f)?, v)));
                                    self.push(&mut records, receipt, ids, clock);
                                }
                            }
                            ipfix::FlowSetBody::V9Data(data) => {
                                for fields in &data.fields {
                                    let ids = fields.iter().map(|(f, v)| (u16::from(*f), v));
                                    self.push(&mut records, receipt, ids, clock);
                                }
                            }
                            ipfix::FlowSetBody::NoTemplate(_) => missing += 1,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        let reason = match (&result.error, missing) {
            (Some(error), _) => Some(format!("not decodable: {error}")),
            (None, 0) if result.packets.is_empty() => Some("empty datagram".to_owned()),
            (None, 0) => None,
            (None, n) => Some(format!("{n} data set(s) arrived before their template")),
        };
        self.counters.missing_template += missing;
        if let Some(reason) = reason {
            self.counters.malformed += 1;
            records.push(receipt.raw(None, RAW_PROTOCOL, datagram, Some(reason)));
        }
        records
    }

    fn push<'v>(
        &mut self,
        records: &mut Vec<Record>,
        receipt: &Receipt,
        fields: impl Iterator<Item = (u16, &'v FieldValue)>,
        clock: Clock,
    ) {
        // Option templates and records without addresses (e.g. interface statistics) are not
        // flows; they are skipped, not kept raw: the datagram itself decoded fine.
        if let Some(flow) = flow_from_fields(fields, clock, self.exporter) {
            self.counters.flows += 1;
            records.push(receipt.record(flow.end, Body::Flow(flow)));
        }
    }
}

/// How a template's time fields become absolute.
#[derive(Debug, Clone, Copy)]
enum Clock {
    /// v9: first/last switched are uptimes; the header gives uptime and wall time at export.
    Uptime { export: Option<i64>, uptime: u32 },
    /// IPFIX: absolute times, or uptimes relative to systemInitTimeMilliseconds.
    Absolute,
}

/// Milliseconds since the epoch from the header's seconds and milliseconds.
fn header_millis(secs: u32, millis: u32) -> Option<i64> {
    Some(i64::from(secs) * 1000 + i64::from(millis))
}

/// The wall time of an uptime stamp `at` given the uptime and wall time at export.
fn uptime_to_time(export_ms: Option<i64>, uptime_now: u32, at: u32) -> Option<Timestamp> {
    let age = uptime_now.wrapping_sub(at);
    Timestamp::from_millisecond(export_ms? - i64::from(age)).ok()
}

/// IANA element ids used here (identical in v9 for ids below 128, and for NAT ids 225/227/281).
mod ie {
    pub const OCTETS: u16 = 1;
    pub const PACKETS: u16 = 2;
    pub const PROTOCOL: u16 = 4;
    pub const SRC_PORT: u16 = 7;
    pub const SRC_V4: u16 = 8;
    pub const DST_PORT: u16 = 11;
    pub const DST_V4: u16 = 12;
    pub const LAST_UPTIME: u16 = 21;
    pub const FIRST_UPTIME: u16 = 22;
    pub const SRC_V6: u16 = 27;
    pub const DST_V6: u16 = 28;
    pub const START_SECONDS: u16 = 150;
    pub const END_SECONDS: u16 = 151;
    pub const START_MILLIS: u16 = 152;
    pub const END_MILLIS: u16 = 153;
    pub const SYSTEM_INIT_MILLIS: u16 = 160;
    pub const POST_NAT_SRC_V4: u16 = 225;
    pub const POST_NAPT_SRC_PORT: u16 = 227;
    pub const POST_NAT_SRC_V6: u16 = 281;
}

/// The IANA element id of the IPFIX fields this module reads.
fn ipfix_id(field: &IpfixField) -> Option<u16> {
    use IANAIPFixField as F;
    let IpfixField::IANA(field) = field else {
        return None;
    };
    Some(match field {
        F::OctetDeltaCount => ie::OCTETS,
        F::PacketDeltaCount => ie::PACKETS,
        F::ProtocolIdentifier => ie::PROTOCOL,
        F::SourceTransportPort => ie::SRC_PORT,
        F::SourceIpv4address => ie::SRC_V4,
        F::DestinationTransportPort => ie::DST_PORT,
        F::DestinationIpv4address => ie::DST_V4,
        F::FlowEndSysUpTime => ie::LAST_UPTIME,
        F::FlowStartSysUpTime => ie::FIRST_UPTIME,
        F::SourceIpv6address => ie::SRC_V6,
        F::DestinationIpv6address => ie::DST_V6,
        F::FlowStartSeconds => ie::START_SECONDS,
        F::FlowEndSeconds => ie::END_SECONDS,
        F::FlowStartMilliseconds => ie::START_MILLIS,
        F::FlowEndMilliseconds => ie::END_MILLIS,
        F::SystemInitTimeMilliseconds => ie::SYSTEM_INIT_MILLIS,
        F::PostNatsourceIpv4address => ie::POST_NAT_SRC_V4,
        F::PostNaptsourceTransportPort => ie::POST_NAPT_SRC_PORT,
        F::PostNatsourceIpv6address => ie::POST_NAT_SRC_V6,
        _ => return None,
    })
}

fn number(value: &FieldValue) -> Option<u64> {
    match value {
        FieldValue::DataNumber(n) => match *n {
            DataNumber::U8(v) => Some(u64::from(v)),
            DataNumber::U16(v) => Some(u64::from(v)),
            DataNumber::U24(v) | DataNumber::U32(v) => Some(u64::from(v)),
            DataNumber::U64(v) => Some(v),
            DataNumber::U128(v) => u64::try_from(v).ok(),
            DataNumber::I8(v) => u64::try_from(v).ok(),
            DataNumber::I16(v) => u64::try_from(v).ok(),
            DataNumber::I24(v) | DataNumber::I32(v) => u64::try_from(v).ok(),
            DataNumber::I64(v) => u64::try_from(v).ok(),
            DataNumber::I128(v) => u64::try_from(v).ok(),
            DataNumber::Vec(_) => None,
        },
        FieldValue::Duration(
            DurationValue::Seconds { value, .. } | DurationValue::Millis { value, .. },
        ) => Some(*value),
        FieldValue::ProtocolType(p) => Some(u64::from(u8::from(*p))),
        _ => None,
    }
}

fn address(value: &FieldValue) -> Option<IpAddr> {
    match value {
        FieldValue::Ip4Addr(ip) => Some(IpAddr::V4(*ip)),
        FieldValue::Ip6Addr(ip) => Some(IpAddr::V6(*ip)),
        _ => None,
    }
}

/// One v9/IPFIX data record as a flow; `None` when it names no source and destination.
fn flow_from_fields<'v>(
    fields: impl Iterator<Item = (u16, &'v FieldValue)>,
    clock: Clock,
    exporter: IpAddr,
) -> Option<Flow> {
    let mut src = None;
    let mut dst = None;
    let mut nat_src = None;
    let (mut src_port, mut dst_port, mut nat_port) = (None, None, None);
    let (mut protocol, mut bytes, mut packets) = (None, None, None);
    let (mut first_up, mut last_up, mut init) = (None, None, None);
    let (mut start_ms, mut end_ms) = (None, None);
    for (id, value) in fields {
        let n = || number(value);
        let port = || n().and_then(|p| u16::try_from(p).ok());
        match id {
            ie::SRC_V4 | ie::SRC_V6 => src = address(value),
            ie::DST_V4 | ie::DST_V6 => dst = address(value),
            ie::POST_NAT_SRC_V4 | ie::POST_NAT_SRC_V6 => nat_src = address(value),
            ie::SRC_PORT => src_port = port(),
            ie::DST_PORT => dst_port = port(),
            ie::POST_NAPT_SRC_PORT => nat_port = port(),
            ie::PROTOCOL => protocol = n().and_then(|p| u8::try_from(p).ok()),
            ie::OCTETS => bytes = n(),
            ie::PACKETS => packets = n(),
            ie::FIRST_UPTIME => first_up = n(),
            ie::LAST_UPTIME => last_up = n(),
            ie::SYSTEM_INIT_MILLIS => init = n(),
            ie::START_SECONDS => start_ms = n().and_then(|s| s.checked_mul(1000)),
            ie::END_SECONDS => end_ms = n().and_then(|s| s.checked_mul(1000)),
            ie::START_MILLIS => start_ms = n(),
            ie::END_MILLIS => end_ms = n(),
            _ => {}
        }
    }
    let at_millis = |ms: Option<u64>| {
        let ms = i64::try_from(ms?).ok()?;
        Timestamp::from_millisecond(ms).ok()
    };
    let (start, end) = match clock {
        Clock::Uptime { export, uptime } => {
            let rel = |up: Option<u64>| uptime_to_time(export, uptime, u32::try_from(up?).ok()?);
            (rel(first_up), rel(last_up))
        }
        Clock::Absolute => {
            let rel = |up: Option<u64>| at_millis(Some(init?.checked_add(up?)?));
            (
                at_millis(start_ms).or_else(|| rel(first_up)),
                at_millis(end_ms).or_else(|| rel(last_up)),
            )
        }
    };
    let nat_src = nat_src.filter(|ip: &IpAddr| !ip.is_unspecified());
    Some(Flow {
        protocol: protocol.unwrap_or(0),
        src_ip: src?,
        src_port,
        dst_ip: dst?,
        dst_port,
        bytes,
        packets,
        start,
        end,
        exporter: Some(exporter),
        nat_src_ip: nat_src,
        nat_src_port: nat_src.and(nat_port),
        action: None,
        user: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use khetnet_retention::record::{Input, Origin};
    use proptest::prelude::*;

    const EXPORTER: &str = "10.1.0.1";
    /// Export time of every test packet: 2026-11-21T04:00:00Z.
    const EXPORT_SECS: u32 = 1_795_233_600;
    /// Exporter uptime at export: 100 s.
    const UPTIME_MS: u32 = 100_000;

    fn receipt() -> Receipt {
        Receipt {
            receive_time: "2026-11-21T04:00:01Z".parse().unwrap(),
            origin: Origin {
                input: Input::Netflow,
                peer: Some(EXPORTER.parse().unwrap()),
                import_sha256: None,
            },
            school: None,
        }
    }

    fn show(records: &[Record]) -> Vec<String> {
        records
            .iter()
            .map(|r| match &r.body {
                Body::Flow(f) => format!(
                    "p={} {}:{}>{}:{} bytes={} pkts={} start={} end={} exp={} nat={}:{}",
                    f.protocol,
                    f.src_ip,
                    f.src_port.map_or("-".into(), |p| p.to_string()),
                    f.dst_ip,
                    f.dst_port.map_or("-".into(), |p| p.to_string()),
                    f.bytes.map_or("-".into(), |p| p.to_string()),
                    f.packets.map_or("-".into(), |p| p.to_string()),
                    f.start.map_or("-".into(), |t| t.to_string()),
                    f.end.map_or("-".into(), |t| t.to_string()),
                    f.exporter.map_or("-".into(), |t| t.to_string()),
                    f.nat_src_ip.map_or("-".into(), |t| t.to_string()),
                    f.nat_src_port.map_or("-".into(), |p| p.to_string()),
                ),
                Body::Raw(raw) => format!(
                    "raw {} octets: {}",
                    raw.data.len(),
                    raw.reason.as_deref().unwrap_or("-")
                ),
                other => format!("{other:?}"),
            })
            .collect()
    }

    fn check(decoder: &mut FlowDecoder, datagram: &[u8], expected: &[&str]) {
        assert_eq!(show(&decoder.decode(datagram, &receipt())), expected);
    }

    fn ip4(s: &str) -> [u8; 4] {
        s.parse::<std::net::Ipv4Addr>().unwrap().octets()
    }

    /// A NetFlow v5 datagram (Cisco's v5 export format: 24-octet header, 48-octet records).
    /// Each record: src, dst, sport, dport, proto, octets, packets, first, last (uptime ms).
    /// src, dst, sport, dport, proto, octets, packets, first, last (uptime ms).
    type V5Record<'a> = (&'a str, &'a str, u16, u16, u8, u32, u32, u32, u32);

    fn v5(records: &[V5Record<'_>]) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend(5u16.to_be_bytes());
        p.extend(u16::try_from(records.len()).unwrap().to_be_bytes());
        p.extend(UPTIME_MS.to_be_bytes());
        p.extend(EXPORT_SECS.to_be_bytes());
        p.extend(0u32.to_be_bytes()); // unix_nsecs
        p.extend(1u32.to_be_bytes()); // flow_sequence
        p.extend([0, 0, 0, 0]); // engine type, id, sampling
        for &(src, dst, sport, dport, proto, octets, pkts, first, last) in records {
            p.extend(ip4(src));
            p.extend(ip4(dst));
            p.extend([0; 4]); // next hop
            p.extend([0; 4]); // input, output ifIndex
            p.extend(pkts.to_be_bytes());
            p.extend(octets.to_be_bytes());
            p.extend(first.to_be_bytes());
            p.extend(last.to_be_bytes());
            p.extend(sport.to_be_bytes());
            p.extend(dport.to_be_bytes());
            p.extend([0, 0x02, proto, 0]); // pad, tcp flags, protocol, tos
            p.extend([0; 4]); // src/dst AS
            p.extend([24, 0, 0, 0]); // masks, pad
        }
        p
    }

    /// Template 256, in the order the data records below use: src v4, dst v4, sport, dport,
    /// proto, in bytes, in pkts, first switched, last switched, post-NAT src v4, post-NAPT sport.
    const TEMPLATE: &[(u16, u16)] = &[
        (8, 4),
        (12, 4),
        (7, 2),
        (11, 2),
        (4, 1),
        (1, 4),
        (2, 4),
        (22, 4),
        (21, 4),
        (225, 4),
        (227, 2),
    ];

    fn v9_record(
        src: &str,
        dst: &str,
        sport: u16,
        dport: u16,
        nat: &str,
        nat_port: u16,
    ) -> Vec<u8> {
        let mut r = Vec::new();
        r.extend(ip4(src));
        r.extend(ip4(dst));
        r.extend(sport.to_be_bytes());
        r.extend(dport.to_be_bytes());
        r.push(6);
        r.extend(1500u32.to_be_bytes());
        r.extend(3u32.to_be_bytes());
        r.extend(40_000u32.to_be_bytes()); // first: 60 s before export
        r.extend(90_000u32.to_be_bytes()); // last: 10 s before export
        r.extend(ip4(nat));
        r.extend(nat_port.to_be_bytes());
        r
    }

    fn padded(mut set: Vec<u8>) -> Vec<u8> {
        while !set.len().is_multiple_of(4) {
            set.push(0);
        }
        let len = u16::try_from(set.len()).unwrap().to_be_bytes();
        set[2] = len[0];
        set[3] = len[1];
        set
    }

    fn template_set(set_id: u16, template: &[(u16, u16)]) -> Vec<u8> {
        let mut s = Vec::new();
        s.extend(set_id.to_be_bytes());
        s.extend([0, 0]);
        s.extend(256u16.to_be_bytes());
        s.extend(u16::try_from(template.len()).unwrap().to_be_bytes());
        for (id, len) in template {
            s.extend(id.to_be_bytes());
            s.extend(len.to_be_bytes());
        }
        padded(s)
    }

    fn data_set(records: &[Vec<u8>]) -> Vec<u8> {
        let mut s = Vec::new();
        s.extend(256u16.to_be_bytes());
        s.extend([0, 0]);
        for r in records {
            s.extend(r);
        }
        padded(s)
    }

    /// A v9 datagram (RFC 3954): header, then the given flowsets; `count` is the record count.
    fn v9(count: u16, sets: &[Vec<u8>]) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend(9u16.to_be_bytes());
        p.extend(count.to_be_bytes());
        p.extend(UPTIME_MS.to_be_bytes());
        p.extend(EXPORT_SECS.to_be_bytes());
        p.extend(7u32.to_be_bytes()); // sequence
        p.extend(0u32.to_be_bytes()); // source id
        for s in sets {
            p.extend(s);
        }
        p
    }

    /// An IPFIX message (RFC 7011): 16-octet header with total length, then the sets.
    fn ipfix(sets: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = sets.concat();
        let mut p = Vec::new();
        p.extend(10u16.to_be_bytes());
        p.extend(u16::try_from(16 + body.len()).unwrap().to_be_bytes());
        p.extend(EXPORT_SECS.to_be_bytes());
        p.extend(7u32.to_be_bytes());
        p.extend(0u32.to_be_bytes());
        p.extend(body);
        p
    }

    fn decoder() -> FlowDecoder {
        FlowDecoder::new(EXPORTER.parse().unwrap())
    }

    #[test]
    fn netflow_v5() {
        let mut d = decoder();
        check(
            &mut d,
            &v5(&[
                (
                    "10.0.0.5", "1.2.3.4", 51234, 443, 6, 1500, 3, 40_000, 90_000,
                ),
                ("10.0.0.7", "8.8.8.8", 5353, 53, 17, 72, 1, 99_000, 99_000),
            ]),
            &[
                "p=6 10.0.0.5:51234>1.2.3.4:443 bytes=1500 pkts=3 start=2026-11-21T03:59:00Z end=2026-11-21T03:59:50Z exp=10.1.0.1 nat=-:-",
                "p=17 10.0.0.7:5353>8.8.8.8:53 bytes=72 pkts=1 start=2026-11-21T03:59:59Z end=2026-11-21T03:59:59Z exp=10.1.0.1 nat=-:-",
            ],
        );
        // Uptime wrapped between the flow's first packet and the export.
        check(
            &mut d,
            &v5(&[(
                "10.0.0.5",
                "1.2.3.4",
                1,
                2,
                6,
                1,
                1,
                u32::MAX - 19_999,
                50_000,
            )]),
            &[
                "p=6 10.0.0.5:1>1.2.3.4:2 bytes=1 pkts=1 start=2026-11-21T03:58:00Z end=2026-11-21T03:59:10Z exp=10.1.0.1 nat=-:-",
            ],
        );
        assert_eq!(
            d.counters(),
            FlowCounters {
                datagrams: 2,
                flows: 3,
                malformed: 0,
                missing_template: 0
            }
        );
    }

    #[test]
    fn netflow_v9_with_template_and_nat() {
        let mut d = decoder();
        let data = data_set(&[
            v9_record("10.0.0.5", "1.2.3.4", 51234, 443, "203.0.113.9", 40001),
            v9_record("10.0.0.6", "1.2.3.5", 51000, 80, "0.0.0.0", 0),
        ]);
        check(
            &mut d,
            &v9(3, &[template_set(0, TEMPLATE), data.clone()]),
            &[
                "p=6 10.0.0.5:51234>1.2.3.4:443 bytes=1500 pkts=3 start=2026-11-21T03:59:00Z end=2026-11-21T03:59:50Z exp=10.1.0.1 nat=203.0.113.9:40001",
                "p=6 10.0.0.6:51000>1.2.3.5:80 bytes=1500 pkts=3 start=2026-11-21T03:59:00Z end=2026-11-21T03:59:50Z exp=10.1.0.1 nat=-:-",
            ],
        );
        // Later datagrams need no template.
        check(
            &mut d,
            &v9(2, &[data]),
            &[
                "p=6 10.0.0.5:51234>1.2.3.4:443 bytes=1500 pkts=3 start=2026-11-21T03:59:00Z end=2026-11-21T03:59:50Z exp=10.1.0.1 nat=203.0.113.9:40001",
                "p=6 10.0.0.6:51000>1.2.3.5:80 bytes=1500 pkts=3 start=2026-11-21T03:59:00Z end=2026-11-21T03:59:50Z exp=10.1.0.1 nat=-:-",
            ],
        );
        assert_eq!(
            d.counters(),
            FlowCounters {
                datagrams: 2,
                flows: 4,
                malformed: 0,
                missing_template: 0
            }
        );
    }

    #[test]
    fn data_before_template_is_kept_raw_and_counted() {
        let mut d = decoder();
        let data = data_set(&[v9_record(
            "10.0.0.5",
            "1.2.3.4",
            51234,
            443,
            "203.0.113.9",
            40001,
        )]);
        let early = v9(1, std::slice::from_ref(&data));
        check(
            &mut d,
            &early,
            &[&format!(
                "raw {} octets: 1 data set(s) arrived before their template",
                early.len()
            )],
        );
        assert_eq!(
            d.counters(),
            FlowCounters {
                datagrams: 1,
                flows: 0,
                malformed: 1,
                missing_template: 1
            }
        );
        check(&mut d, &v9(1, &[template_set(0, TEMPLATE)]), &[]);
        check(
            &mut d,
            &v9(1, &[data]),
            &[
                "p=6 10.0.0.5:51234>1.2.3.4:443 bytes=1500 pkts=3 start=2026-11-21T03:59:00Z end=2026-11-21T03:59:50Z exp=10.1.0.1 nat=203.0.113.9:40001",
            ],
        );
    }

    #[test]
    fn templates_are_per_exporter() {
        let mut a = decoder();
        let mut b = FlowDecoder::new("10.2.0.1".parse().unwrap());
        check(&mut a, &v9(1, &[template_set(0, TEMPLATE)]), &[]);
        let data = v9(
            1,
            &[data_set(&[v9_record(
                "10.0.0.5",
                "1.2.3.4",
                1,
                2,
                "203.0.113.9",
                3,
            )])],
        );
        assert_eq!(show(&a.decode(&data, &receipt())).len(), 1);
        assert!(
            show(&b.decode(&data, &receipt()))[0].starts_with("raw "),
            "exporter b never sent the template"
        );
    }

    #[test]
    fn ipfix_with_absolute_times_and_nat() {
        let template: &[(u16, u16)] = &[
            (8, 4),
            (12, 4),
            (7, 2),
            (11, 2),
            (4, 1),
            (1, 8),
            (2, 8),
            (152, 8),
            (153, 8),
            (225, 4),
            (227, 2),
        ];
        let mut r = Vec::new();
        r.extend(ip4("10.0.0.5"));
        r.extend(ip4("1.2.3.4"));
        r.extend(51234u16.to_be_bytes());
        r.extend(443u16.to_be_bytes());
        r.push(6);
        r.extend(6_000_000_000u64.to_be_bytes());
        r.extend(4_000_000u64.to_be_bytes());
        r.extend(1_795_233_540_250u64.to_be_bytes());
        r.extend(1_795_233_590_500u64.to_be_bytes());
        r.extend(ip4("203.0.113.9"));
        r.extend(40001u16.to_be_bytes());
        let mut d = decoder();
        check(
            &mut d,
            &ipfix(&[template_set(2, template), data_set(&[r])]),
            &[
                "p=6 10.0.0.5:51234>1.2.3.4:443 bytes=6000000000 pkts=4000000 start=2026-11-21T03:59:00.25Z end=2026-11-21T03:59:50.5Z exp=10.1.0.1 nat=203.0.113.9:40001",
            ],
        );
    }

    #[test]
    fn ipfix_ipv6_with_seconds() {
        let template: &[(u16, u16)] = &[
            (27, 16),
            (28, 16),
            (7, 2),
            (11, 2),
            (4, 1),
            (1, 4),
            (2, 4),
            (150, 4),
            (151, 4),
        ];
        let mut r = Vec::new();
        r.extend(
            "2001:db8::5"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        r.extend(
            "2001:db8:1::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        r.extend(51234u16.to_be_bytes());
        r.extend(443u16.to_be_bytes());
        r.push(17);
        r.extend(999u32.to_be_bytes());
        r.extend(2u32.to_be_bytes());
        r.extend((EXPORT_SECS - 60).to_be_bytes());
        r.extend((EXPORT_SECS - 10).to_be_bytes());
        let mut d = decoder();
        check(
            &mut d,
            &ipfix(&[template_set(2, template), data_set(&[r])]),
            &[
                "p=17 2001:db8::5:51234>2001:db8:1::1:443 bytes=999 pkts=2 start=2026-11-21T03:59:00Z end=2026-11-21T03:59:50Z exp=10.1.0.1 nat=-:-",
            ],
        );
    }

    #[test]
    fn undecodable_datagrams_are_kept_raw() {
        let mut d = decoder();
        check(&mut d, b"", &["raw 0 octets: empty datagram"]);
        let garbage = b"\x00\x2a hello";
        let got = show(&d.decode(garbage, &receipt()));
        assert_eq!(got.len(), 1);
        assert!(got[0].starts_with("raw 8 octets: not decodable"), "{got:?}");
        let mut truncated = v5(&[("10.0.0.5", "1.2.3.4", 1, 2, 6, 1, 1, 1, 1)]);
        truncated.truncate(50);
        let got = show(&d.decode(&truncated, &receipt()));
        assert_eq!(got.len(), 1);
        assert!(
            got[0].starts_with("raw 50 octets: not decodable"),
            "{got:?}"
        );
        assert_eq!(d.counters().malformed, 3);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(datagram in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut d = decoder();
            let records = d.decode(&datagram, &receipt());
            // Whatever was not understood is kept whole.
            let flows = records.iter().filter(|r| matches!(r.body, Body::Flow(_))).count();
            if flows == 0 {
                let kept_whole = records.iter().any(|r| matches!(&r.body, Body::Raw(raw) if raw.data == datagram));
                let v9_template_only = datagram.len() >= 2 && (datagram[..2] == [0, 9] || datagram[..2] == [0, 10]);
                prop_assert!(kept_whole || v9_template_only || records.is_empty() && datagram.len() >= 2 && datagram[..2] == [0, 5]);
            }
        }

        #[test]
        fn versioned_random_bodies_never_panic(version in prop_oneof![Just(5u16), Just(9u16), Just(10u16)], body in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut d = decoder();
            let mut datagram = version.to_be_bytes().to_vec();
            datagram.extend(body);
            let _ = d.decode(&datagram, &receipt());
            let _ = d.decode(&datagram, &receipt());
        }
    }
}
