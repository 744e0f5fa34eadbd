//! pfSense and OPNsense `filterlog`: one CSV line per logged packet (Netgate's "Filter Log
//! Format" documentation).
//!
//! ```text
//! rule,sub-rule,anchor,tracker,interface,reason,action,direction,ip-version,...
//! IPv4: ...,tos,ecn,ttl,id,offset,flags,proto-id,proto-text,length,src,dst[,sport,dport,datalen,...]
//! IPv6: ...,class,flow-label,hop-limit,proto-text,proto-id,length,src,dst[,sport,dport,datalen,...]
//! ```
//!
//! OPNsense writes a rule hash as the tracker; the layout is the same. Each line becomes a
//! [`Flow`] of the one packet, with the rule's action (`pass`, `block`, `reject`).

use khetnet_retention::record::{Body, Flow};

use super::{Line, Needle, Parsed};

static FILTERLOG: Needle = Needle::new("filterlog");

/// Recognises a filterlog line (tag `filterlog`, or the tag left in the text).
pub fn parse(line: &Line<'_>) -> Option<Parsed> {
    let csv = if line.app == Some("filterlog") {
        line.text
    } else {
        let at = FILTERLOG.find(line.text)?;
        line.text[at..].split_once(": ")?.1
    };
    let f: Vec<&str> = csv.trim().split(',').collect();
    let action = *f.get(6)?;
    if !matches!(action, "pass" | "block" | "reject") {
        return None;
    }
    // Offsets of protocol id, length and source address for each IP version.
    let (proto_at, len_at, src_at) = match *f.get(8)? {
        "4" => (15, 17, 18),
        "6" => (13, 14, 15),
        _ => return None,
    };
    let protocol: u8 = f.get(proto_at)?.parse().ok()?;
    let bytes = f.get(len_at).and_then(|l| l.parse().ok());
    let src_ip = f.get(src_at)?.parse().ok()?;
    let dst_ip = f.get(src_at + 1)?.parse().ok()?;
    let (src_port, dst_port) = if matches!(protocol, 6 | 17 | 132) {
        (
            f.get(src_at + 2).and_then(|p| p.parse().ok()),
            f.get(src_at + 3).and_then(|p| p.parse().ok()),
        )
    } else {
        (None, None)
    };
    Some(Parsed::new(Body::Flow(Flow {
        protocol,
        src_ip,
        src_port,
        dst_ip,
        dst_port,
        bytes,
        packets: Some(1),
        start: None,
        end: None,
        exporter: None,
        nat_src_ip: None,
        nat_src_port: None,
        action: Some(action.to_owned()),
        user: None,
    })))
}

#[cfg(test)]
mod tests {
    use super::super::tests::run;

    fn check(text: &str, expected: &str) {
        assert_eq!(
            run(super::parse, Some("filterlog"), text),
            expected,
            "text {text:?}"
        );
    }

    #[test]
    fn filterlog_fixtures() {
        // pfSense, IPv4 UDP blocked.
        check(
            "5,,,1000000103,igb1,match,block,in,4,0x0,,64,0,0,DF,17,udp,60,192.168.1.10,8.8.8.8,53124,53,40",
            "flow p=17 192.168.1.10:53124>8.8.8.8:53 bytes=60 pkts=1 nat=- act=block start=- end=- exp=-",
        );
        // pfSense, IPv4 TCP passed, with the TCP tail.
        check(
            "77,,,1419872234,em0,match,pass,out,4,0x0,,63,4242,0,DF,6,tcp,60,10.0.0.5,1.2.3.4,51234,443,0,S,2837654321,,64240,,mss;sackOK;TS;nop;wscale",
            "flow p=6 10.0.0.5:51234>1.2.3.4:443 bytes=60 pkts=1 nat=- act=pass start=- end=- exp=-",
        );
        // OPNsense: rule hash as tracker.
        check(
            "82,,,fae559338f65e11c53669fc3642c93c2,vtnet0,match,pass,out,4,0x0,,64,12345,0,DF,6,tcp,60,10.0.0.5,93.184.216.34,50000,80,0,S,1,,64240,,mss",
            "flow p=6 10.0.0.5:50000>93.184.216.34:80 bytes=60 pkts=1 nat=- act=pass start=- end=- exp=-",
        );
        // ICMP: no ports.
        check(
            "4,,,1000000103,igb0,match,block,in,4,0x0,,54,0,0,none,1,icmp,84,198.51.100.20,203.0.113.9,request,4242,1",
            "flow p=1 198.51.100.20>203.0.113.9 bytes=84 pkts=1 nat=- act=block start=- end=- exp=-",
        );
        // IPv6 TCP.
        check(
            "9,,,1000000105,igb1,match,reject,in,6,0x00,0x00000,64,tcp,6,80,2001:db8::5,2001:db8:1::1,51234,443,0,S,1,,64800,,mss",
            "flow p=6 [2001:db8::5]:51234>[2001:db8:1::1]:443 bytes=80 pkts=1 nat=- act=reject start=- end=- exp=-",
        );
    }

    #[test]
    fn filterlog_tag_left_in_text() {
        assert_eq!(
            run(
                super::parse,
                None,
                "filterlog[4242]: 5,,,1000000103,igb1,match,block,in,4,0x0,,64,0,0,DF,17,udp,60,192.168.1.10,8.8.8.8,53124,53,40"
            ),
            "flow p=17 192.168.1.10:53124>8.8.8.8:53 bytes=60 pkts=1 nat=- act=block start=- end=- exp=-"
        );
        assert_eq!(
            run(super::parse, None, "5,,,1000000103,igb1,match,block,in,4"),
            "none"
        );
    }

    #[test]
    fn filterlog_near_misses() {
        check("", "none");
        check(
            "5,,,1000000103,igb1,match,allow,in,4,0x0,,64,0,0,DF,17,udp,60,192.168.1.10,8.8.8.8,53124,53,40",
            "none",
        );
        check(
            "5,,,1000000103,igb1,match,block,in,5,0x0,,64,0,0,DF,17,udp,60,192.168.1.10,8.8.8.8",
            "none",
        );
        check(
            "5,,,1000000103,igb1,match,block,in,4,0x0,,64,0,0,DF,17,udp,60,192.168.1.10",
            "none",
        );
        check(
            "5,,,1000000103,igb1,match,block,in,4,0x0,,64,0,0,DF,17,udp,60,not-ip,8.8.8.8,1,2,3",
            "none",
        );
    }
}
