//! Linux iptables and nftables `LOG` target lines (kernel log, facility kern).
//!
//! ```text
//! [12345.678901] DROP-OUT: IN=eth1 OUT=eth0 MAC=... SRC=10.0.0.5 DST=1.2.3.4 LEN=60 TOS=0x00 PREC=0x00 TTL=63 ID=54321 DF PROTO=TCP SPT=51234 DPT=443 WINDOW=64240 RES=0x00 SYN URGP=0
//! ```
//!
//! nftables' `log prefix "..."` writes the same fields. The log prefix, if any, is kept as the
//! flow's action (it is how administrators name their rules: `DROP`, `ACCEPT-WEB`, ...).

use khetnet_retention::record::{Body, Flow};

use super::{Line, Needle, Parsed, key_values, lookup, protocol_number};

static IN: Needle = Needle::new(" IN=");

/// Recognises a netfilter LOG line.
pub fn parse(line: &Line<'_>) -> Option<Parsed> {
    let text = line.text;
    let at = if text.starts_with("IN=") {
        0
    } else {
        IN.find(text)? + 1
    };
    let pairs = key_values(&text[at..]);
    let src_ip = lookup(&pairs, "SRC")?.parse().ok()?;
    let dst_ip = lookup(&pairs, "DST")?.parse().ok()?;
    let protocol = protocol_number(lookup(&pairs, "PROTO")?)?;
    let port = |key| lookup(&pairs, key).and_then(|p| p.parse().ok());
    let bytes = lookup(&pairs, "LEN").and_then(|l| l.parse().ok());
    let prefix = strip_kernel_time(&text[..at])
        .trim()
        .trim_end_matches(':')
        .trim();
    Some(Parsed::new(Body::Flow(Flow {
        protocol,
        src_ip,
        src_port: port("SPT"),
        dst_ip,
        dst_port: port("DPT"),
        bytes,
        packets: Some(1),
        start: None,
        end: None,
        exporter: None,
        nat_src_ip: None,
        nat_src_port: None,
        action: (!prefix.is_empty()).then(|| prefix.to_owned()),
        user: None,
    })))
}

/// Drops the `[12345.678901]` uptime stamp the kernel puts before each line.
fn strip_kernel_time(text: &str) -> &str {
    let t = text.trim_start();
    match t.strip_prefix('[').and_then(|r| r.split_once(']')) {
        Some((stamp, rest))
            if stamp
                .trim()
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'.') =>
        {
            rest
        }
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::run;

    fn check(text: &str, expected: &str) {
        assert_eq!(
            run(super::parse, Some("kernel"), text),
            expected,
            "text {text:?}"
        );
    }

    #[test]
    fn netfilter_fixtures() {
        check(
            "[12345.678901] DROP-OUT: IN=eth1 OUT=eth0 MAC=00:0c:29:aa:bb:cc:00:0c:29:dd:ee:ff:08:00 SRC=10.0.0.5 DST=1.2.3.4 LEN=60 TOS=0x00 PREC=0x00 TTL=63 ID=54321 DF PROTO=TCP SPT=51234 DPT=443 WINDOW=64240 RES=0x00 SYN URGP=0",
            "flow p=6 10.0.0.5:51234>1.2.3.4:443 bytes=60 pkts=1 nat=- act=DROP-OUT start=- end=- exp=-",
        );
        check(
            "IN=eth0 OUT= MAC=00:0c:29:aa:bb:cc:4c:5e:0c:11:22:33:08:00 SRC=198.51.100.20 DST=203.0.113.9 LEN=84 TOS=0x00 PREC=0x00 TTL=54 ID=0 DF PROTO=ICMP TYPE=8 CODE=0 ID=1 SEQ=1",
            "flow p=1 198.51.100.20>203.0.113.9 bytes=84 pkts=1 nat=- act=- start=- end=- exp=-",
        );
        // nftables with a prefix, UDP.
        check(
            "[ 8.1] nft-drop IN=br0 OUT=ppp0 SRC=10.0.0.7 DST=8.8.8.8 LEN=72 TOS=0x00 PREC=0x00 TTL=63 ID=1 PROTO=UDP SPT=5353 DPT=53 LEN=52",
            "flow p=17 10.0.0.7:5353>8.8.8.8:53 bytes=72 pkts=1 nat=- act=nft-drop start=- end=- exp=-",
        );
        // IPv6 and a numeric protocol.
        check(
            "IN=eth0 OUT=eth1 SRC=2001:0db8:0000:0000:0000:0000:0000:0005 DST=2001:0db8:0001:0000:0000:0000:0000:0001 LEN=80 TC=0 HOPLIMIT=64 FLOWLBL=0 PROTO=TCP SPT=51234 DPT=443 WINDOW=64800 RES=0x00 SYN URGP=0",
            "flow p=6 [2001:db8::5]:51234>[2001:db8:1::1]:443 bytes=80 pkts=1 nat=- act=- start=- end=- exp=-",
        );
        check(
            "IN=eth0 OUT=eth1 SRC=10.0.0.5 DST=1.2.3.4 LEN=100 PROTO=47",
            "flow p=47 10.0.0.5>1.2.3.4 bytes=100 pkts=1 nat=- act=- start=- end=- exp=-",
        );
    }

    #[test]
    fn netfilter_near_misses() {
        check("IN=eth0 OUT=eth1 SRC=10.0.0.5 LEN=100 PROTO=TCP", "none");
        check("IN=eth0 OUT=eth1 SRC=10.0.0.5 DST=1.2.3.4 LEN=100", "none");
        check("IN=eth0 SRC=10.0.0.5 DST=host PROTO=TCP", "none");
        check("LOGIN=ok SRC=10.0.0.5 DST=1.2.3.4 PROTO=TCP", "none");
    }
}
