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
                        };
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
            records.push(receipt.raw(None, RAW_PROTOCOL, datagram, Some(&reason)));
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
        nat_src_ip: nat_src.filter(|ip| !ip.is_unspecified()),
        nat_src_port: nat_src.and(nat_port),
        action: None,
    })
}
