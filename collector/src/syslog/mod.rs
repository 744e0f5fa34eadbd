//! Syslog: stream framing (RFC 6587), message parsing (RFC 3164, RFC 5424) and the step that
//! turns one received message into one record.
//!
//! A listener feeds datagrams (UDP) or framed messages ([`framing::Framer`], for TCP and TLS) to
//! [`decode`]. Every message becomes exactly one record: the gateway's event when a
//! [`gateways`](mod@crate::gateways) parser recognises it, otherwise a raw record holding the bytes
//! exactly as received.

pub mod framing;
pub mod message;

pub use framing::{DEFAULT_MAX_FRAME, Framed, Framer};
pub use message::{Protocol, SyslogMessage, parse};

use khetnet_retention::record::Record;

use crate::Receipt;
use crate::gateways::{self, Line};

/// The `protocol` name raw syslog records carry.
pub const RAW_PROTOCOL: &str = "syslog";

/// Why a message was kept raw.
pub const REASON_NOT_UTF8: &str = "message is not valid UTF-8";
/// Why a message was kept raw.
pub const REASON_UNRECOGNISED: &str = "no gateway format recognised";
/// Why an oversized frame's head was kept raw.
pub const REASON_OVERSIZED: &str = "frame longer than the maximum; only its head was kept";

/// Turns one syslog message into the record to store.
///
/// The event time is the gateway line's own time when it has one (Squid), else the syslog
/// header's, else the receive time. Never fails: unrecognised or non-UTF-8 messages become raw
/// records with the bytes kept whole and the reason.
pub fn decode(data: &[u8], receipt: &Receipt) -> Record {
    let Ok(text) = std::str::from_utf8(data) else {
        let header_time = parse(data, receipt.receive_time).timestamp;
        return receipt.raw(header_time, RAW_PROTOCOL, data, Some(REASON_NOT_UTF8));
    };
    let header = message::header(text, receipt.receive_time);
    let header_time = header.timestamp;
    let line = Line {
        time: header_time.unwrap_or(receipt.receive_time),
        host: header.hostname,
        app: header.app,
        text: header.msg,
    };
    // RFC 3164 has no reliable end of the tag: a loose parser can take part of a gateway's
    // text for the tag (RouterOS hotspot: `student1 (10.5.50.9): logged in`). So when the
    // message text matches nothing, the parsers get the whole line.
    match gateways::parse_or_whole(&line, text) {
        Some(parsed) => receipt.record(parsed.event_time.or(header_time), parsed.body),
        None => receipt.raw(header_time, RAW_PROTOCOL, data, Some(REASON_UNRECOGNISED)),
    }
}

/// The record for the head of an oversized frame ([`Framed::Oversized`]).
pub fn oversized(head: &[u8], receipt: &Receipt) -> Record {
    receipt.raw(None, RAW_PROTOCOL, head, Some(REASON_OVERSIZED))
}

#[cfg(test)]
mod tests {
    use super::*;
    use khetnet_retention::record::{Body, Input, Origin};
    use proptest::prelude::*;

    fn receipt() -> Receipt {
        Receipt {
            receive_time: "2026-11-21T04:00:00Z".parse().unwrap(),
            origin: Origin {
                input: Input::SyslogUdp,
                peer: Some("10.1.0.1".parse().unwrap()),
                import_sha256: None,
            },
            school: Some("1010100001".into()),
        }
    }

    /// The record's kind, event time and the key facts, one line.
    fn show(record: &Record) -> String {
        let what = match &record.body {
            Body::Raw(raw) => format!(
                "raw[{}] {:?}",
                raw.reason.as_deref().unwrap_or("-"),
                String::from_utf8_lossy(&raw.data)
            ),
            Body::Nat(n) => format!("nat {}->{}", n.inside_ip, n.outside_ip),
            Body::Flow(f) => format!("flow {}->{} {:?}", f.src_ip, f.dst_ip, f.action),
            Body::Session(s) => format!("session {:?} {} {:?}", s.status, s.user, s.nas),
            Body::Lease(l) => format!("lease {:?} {} {} {:?}", l.action, l.ip, l.mac, l.server),
            Body::Proxy(p) => format!("proxy {} {}", p.client_ip, p.url),
            other => format!("{other:?}"),
        };
        format!("{} @{}", what, record.event_time)
    }

    fn check(input: &[u8], expected: &str) {
        let record = decode(input, &receipt());
        assert_eq!(record.receive_time, receipt().receive_time);
        assert_eq!(record.school.as_deref(), Some("1010100001"));
        assert_eq!(
            show(&record),
            expected,
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }

    #[test]
    fn gateway_lines_over_syslog() {
        // RouterOS sends no hostname: its topics land where a hostname would be.
        check(b"<134>Nov 21 10:59:59 firewall,info forward: in:ether2 out:ether1, proto TCP (SYN), 10.0.0.5:51234->1.2.3.4:443, NAT (10.0.0.5:51234->203.0.113.9:51234)->1.2.3.4:443, len 60",
            "nat 10.0.0.5->203.0.113.9 @2026-11-21T03:59:59Z");
        check(
            b"<134>Nov 21 10:59:59 hotspot,account,info,debug student1 (10.5.50.9): logged in",
            "session Start student1 None @2026-11-21T03:59:59Z",
        );
        check(b"<134>Nov 21 10:59:59 router hotspot,account,info,debug student1 (10.5.50.9): logged out: user request",
            "session Stop student1 Some(\"router\") @2026-11-21T03:59:59Z");
        check(b"<134>Nov 21 10:59:59 pfsense filterlog[123]: 5,,,1000000103,igb1,match,block,in,4,0x0,,64,0,0,DF,17,udp,60,192.168.1.10,8.8.8.8,53124,53,40",
            "flow 192.168.1.10->8.8.8.8 Some(\"block\") @2026-11-21T03:59:59Z");
        check(b"<4>Nov 21 10:59:59 fw kernel: [ 1234.567890] DROP IN=eth1 OUT=eth0 SRC=10.0.0.5 DST=1.2.3.4 LEN=60 PROTO=TCP SPT=1 DPT=2",
            "flow 10.0.0.5->1.2.3.4 Some(\"DROP\") @2026-11-21T03:59:59Z");
        // FortiOS' default format has no syslog timestamp or host: the line's own date counts.
        check(b"<189>date=2026-11-21 time=10:59:50 devname=\"FGT\" type=\"traffic\" srcip=10.0.0.5 srcport=1 dstip=1.2.3.4 dstport=443 proto=6 action=\"close\" tz=\"+0700\"",
            "flow 10.0.0.5->1.2.3.4 Some(\"close\") @2026-11-21T03:59:50Z");
        check(b"<30>Nov 21 10:59:59 dhcp dhcpd[812]: DHCPACK on 10.0.0.5 to aa:bb:cc:dd:ee:ff (pc) via eth1",
            "lease Assign 10.0.0.5 aa:bb:cc:dd:ee:ff Some(\"dhcp\") @2026-11-21T03:59:59Z");
        check(b"<30>1 2026-11-21T10:59:59+07:00 dhcp kea-dhcp4 900 - - INFO  [kea-dhcp4.leases/900.1] DHCP4_LEASE_ALLOC [hwtype=1 aa:bb:cc:dd:ee:ff], cid=[no info], tid=0x1: lease 10.0.0.5 has been allocated for 600 seconds",
            "lease Assign 10.0.0.5 aa:bb:cc:dd:ee:ff Some(\"dhcp\") @2026-11-21T03:59:59Z");
        check(b"<30>Nov 21 10:59:59 gw dnsmasq-dhcp[4242]: DHCPACK(br0) 10.0.0.5 aa:bb:cc:dd:ee:ff pc",
            "lease Assign 10.0.0.5 aa:bb:cc:dd:ee:ff Some(\"gw\") @2026-11-21T03:59:59Z");
        // Squid's own time wins over the header's.
        check(b"<150>Nov 21 11:00:00 proxy squid[99]: 1795233598.500 12 10.0.0.5 TCP_MISS/200 100 GET http://example.com/ - HIER_DIRECT/1.2.3.4 -",
            "proxy 10.0.0.5 http://example.com/ @2026-11-21T03:59:58.5Z");
    }

    #[test]
    fn lines_from_imported_files() {
        // A squid access.log line has no syslog header at all.
        check(b"1795233598.500 12 10.0.0.5 TCP_MISS/200 100 GET http://example.com/ - HIER_DIRECT/1.2.3.4 -",
            "proxy 10.0.0.5 http://example.com/ @2026-11-21T03:59:58.5Z");
        // A file written by a log server: RFC 3164 without PRI.
        check(b"Nov 21 10:59:59 dhcp dhcpd[812]: DHCPRELEASE of 10.0.0.5 from aa:bb:cc:dd:ee:ff via eth1 (found)",
            "lease Release 10.0.0.5 aa:bb:cc:dd:ee:ff Some(\"dhcp\") @2026-11-21T03:59:59Z");
    }

    #[test]
    fn unparsed_messages_are_kept_whole() {
        check(
            b"<13>Nov 21 10:59:59 host sshd[1]: Accepted password for root",
            "raw[no gateway format recognised] \"<13>Nov 21 10:59:59 host sshd[1]: Accepted password for root\" @2026-11-21T03:59:59Z",
        );
        check(
            b"garbage",
            "raw[no gateway format recognised] \"garbage\" @2026-11-21T04:00:00Z",
        );
        check(
            b"",
            "raw[no gateway format recognised] \"\" @2026-11-21T04:00:00Z",
        );
        // TIS-620 Thai bytes (not UTF-8): kept byte for byte, even when the text would match.
        let tis620 = b"<134>Nov 21 10:59:59 hotspot \xca\xc1\xa8\xd2\xc2 (10.5.50.9): logged in";
        let record = decode(tis620, &receipt());
        assert!(
            matches!(&record.body, Body::Raw(raw) if raw.data == tis620 && raw.reason.as_deref() == Some(REASON_NOT_UTF8))
        );
        assert_eq!(record.event_time.to_string(), "2026-11-21T03:59:59Z");
    }

    #[test]
    fn oversized_frames_are_marked() {
        let record = oversized(b"<13>abc", &receipt());
        assert!(
            matches!(&record.body, Body::Raw(raw) if raw.data == b"<13>abc" && raw.reason.as_deref() == Some(REASON_OVERSIZED))
        );
    }

    proptest! {
        #[test]
        fn raw_records_keep_the_exact_bytes(input in proptest::collection::vec(any::<u8>(), 0..300)) {
            let record = decode(&input, &receipt());
            if let Body::Raw(raw) = &record.body {
                prop_assert_eq!(&raw.data, &input);
            }
        }

        #[test]
        fn framed_stream_never_panics(input in proptest::collection::vec(any::<u8>(), 0..600), max in 1usize..128) {
            let mut framer = Framer::new(max);
            let mut buf = &input[..];
            loop {
                let framed = framer.decode(buf);
                match &framed {
                    Framed::Message { message, .. } => { let _ = decode(message, &receipt()); }
                    Framed::Oversized { head, .. } => { let _ = oversized(head, &receipt()); }
                    _ => {}
                }
                if framed.consumed() == 0 {
                    break;
                }
                buf = &buf[framed.consumed()..];
            }
        }
    }
}
