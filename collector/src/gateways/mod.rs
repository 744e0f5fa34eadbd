//! Parsers for what school gateways write to syslog, one submodule per source, and the
//! dispatcher that tries them in turn.
//!
//! Each parser takes one message ([`Line`]) and returns the record body it means, or `None`
//! when the line is not its format (the caller then keeps the message raw). Parsers look for
//! their format in the message text rather than trusting the syslog header alone: gateways
//! fill the header inconsistently (RouterOS puts its topics where a hostname belongs).

pub mod dhcpd;
pub mod dnsmasq;
pub mod filterlog;
pub mod fortigate;
pub mod kea;
pub mod mikrotik;
pub mod netfilter;
pub mod squid;

use std::net::IpAddr;

use jiff::Timestamp;
use khetnet_retention::record::Body;

/// One syslog message, as the gateway parsers see it.
#[derive(Debug, Clone, Copy)]
pub struct Line<'a> {
    /// When it happened: the header's timestamp, else the receive time.
    pub time: Timestamp,
    /// The header's hostname (the gateway's name), if any.
    pub host: Option<&'a str>,
    /// The header's APP-NAME or TAG, if any.
    pub app: Option<&'a str>,
    /// The message text.
    pub text: &'a str,
}

/// What a parser made of a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub body: Body,
    /// The event's time when the line carries its own, more precise than the header's (Squid,
    /// FortiGate).
    pub event_time: Option<Timestamp>,
}

impl Parsed {
    fn new(body: Body) -> Self {
        Parsed {
            body,
            event_time: None,
        }
    }
}

/// One parser: recognises its format or declines.
type Parser = fn(&Line<'_>) -> Option<Parsed>;

/// The parsers in the order they are tried. Each checks a cheap marker of its format first.
const PARSERS: &[(&str, Parser)] = &[
    ("filterlog", filterlog::parse),
    ("fortigate", fortigate::parse),
    ("netfilter", netfilter::parse),
    ("mikrotik", mikrotik::parse),
    ("dhcpd", dhcpd::parse),
    ("kea", kea::parse),
    ("dnsmasq", dnsmasq::parse),
    ("squid", squid::parse),
];

/// Tries every gateway parser; `None` when none recognises the line.
pub fn parse(line: &Line<'_>) -> Option<Parsed> {
    PARSERS.iter().find_map(|(_, parser)| parser(line))
}

/// Strings one of which every line recognised by a parser other than Squid's holds: each
/// parser's first test looks for one of them in the text (filterlog's also in the app name).
/// `IN=` stands for netfilter's `IN=` and ` IN=`, `): logged ` and `user ` for RouterOS'
/// hotspot lines, `DHCPACK`, `DHCPRELEASE` and `DHCP4_` for dhcpd's, dnsmasq's and Kea's.
/// A parser that tests for anything else first must add its string here (the
/// `parse_or_whole_agrees` test fails otherwise).
const MARKERS: [&str; 9] = [
    "filterlog",
    "srcip=",
    "IN=",
    "proto ",
    "): logged ",
    "user ",
    "DHCPACK",
    "DHCPRELEASE",
    "DHCP4_",
];

/// The same as `parse(line)`, then `parse` of the line with `whole` as its text, but for most
/// lines at the cost of one search: `whole` is the received line, of which the line's text,
/// host and app are parts, so a line in which no parser's marker ([`MARKERS`]) occurs can only
/// be Squid's, whose test is cheap. The syslog decoder calls it for every message.
pub fn parse_or_whole(line: &Line<'_>, whole: &str) -> Option<Parsed> {
    static SEARCH: std::sync::OnceLock<aho_corasick::AhoCorasick> = std::sync::OnceLock::new();
    let search = SEARCH.get_or_init(|| {
        // Leftmost semantics let it search with SIMD (Teddy) rather than byte by byte.
        aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostFirst)
            .build(MARKERS)
            .expect("the markers are a valid automaton")
    });
    let with_whole = Line {
        text: whole,
        ..*line
    };
    if search.is_match(whole) {
        parse(line).or_else(|| parse(&with_whole))
    } else {
        squid::parse(line).or_else(|| squid::parse(&with_whole))
    }
}

/// A fixed string to look for, its searcher built once. Every message goes through every
/// parser's first test, so that test must be cheap: `str::find` sets up a two-way searcher on
/// each call, which costs more than the search of a line this short; memchr's `Finder`, built
/// on first use, searches for the needle's rarest bytes with SIMD.
pub(crate) struct Needle {
    text: &'static str,
    finder: std::sync::OnceLock<memchr::memmem::Finder<'static>>,
}

impl Needle {
    pub(crate) const fn new(text: &'static str) -> Needle {
        Needle {
            text,
            finder: std::sync::OnceLock::new(),
        }
    }

    /// Where the needle first occurs in `haystack` (as `str::find`).
    pub(crate) fn find(&self, haystack: &str) -> Option<usize> {
        self.finder
            .get_or_init(|| memchr::memmem::Finder::new(self.text))
            .find(haystack.as_bytes())
    }
}

/// The name of the parser that recognises `line`, for counters and the import summary.
pub fn recognised_by(line: &Line<'_>) -> Option<&'static str> {
    PARSERS
        .iter()
        .find(|(_, parser)| parser(line).is_some())
        .map(|(name, _)| *name)
}

/// IP protocol number from a name as gateways print it (`TCP`, `udp`, `icmp`, `47`, ...).
fn protocol_number(name: &str) -> Option<u8> {
    if let Ok(n) = name.parse::<u8>() {
        return Some(n);
    }
    Some(match name.to_ascii_lowercase().as_str() {
        "icmp" => 1,
        "igmp" => 2,
        "tcp" => 6,
        "udp" => 17,
        "gre" => 47,
        "esp" => 50,
        "ah" => 51,
        "icmpv6" | "ipv6-icmp" | "icmp6" => 58,
        "sctp" => 132,
        "udplite" => 136,
        _ => return None,
    })
}

/// An address with an optional port: `10.0.0.5`, `10.0.0.5:51234`, `[2001:db8::1]:443`,
/// `2001:db8::1`.
fn endpoint(text: &str) -> Option<(IpAddr, Option<u16>)> {
    let text = text.trim();
    if let Some(rest) = text.strip_prefix('[') {
        let (ip, rest) = rest.split_once(']')?;
        let ip = ip.parse().ok()?;
        return match rest.strip_prefix(':') {
            Some(port) => Some((ip, Some(port.parse().ok()?))),
            None if rest.is_empty() => Some((ip, None)),
            None => None,
        };
    }
    if let Ok(ip) = text.parse() {
        return Some((ip, None));
    }
    let (ip, port) = text.rsplit_once(':')?;
    Some((ip.parse().ok()?, Some(port.parse().ok()?)))
}

/// `key=value` pairs separated by spaces, values optionally in double quotes (FortiGate,
/// netfilter). Tokens without `=` are skipped.
fn key_values(text: &str) -> Vec<(&str, &str)> {
    let mut pairs = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return pairs;
        }
        let token_end = rest.find([' ', '=']).unwrap_or(rest.len());
        if rest[token_end..].starts_with('=') {
            let key = &rest[..token_end];
            let after = &rest[token_end + 1..];
            let (value, next) = match after.strip_prefix('"') {
                Some(quoted) => match quoted.find('"') {
                    Some(end) => (&quoted[..end], &quoted[end + 1..]),
                    None => (quoted, ""),
                },
                None => {
                    let end = after.find(' ').unwrap_or(after.len());
                    (&after[..end], &after[end..])
                }
            };
            pairs.push((key, value));
            rest = next;
        } else {
            rest = &rest[token_end..];
        }
    }
}

fn lookup<'a>(pairs: &[(&str, &'a str)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use khetnet_retention::record::{Body, LeaseAction, SessionStatus};
    use proptest::prelude::*;

    pub(crate) const TIME: &str = "2026-11-21T04:00:00Z";

    /// One line per record, every field a user would look for, `-` when absent.
    pub(crate) fn show(parsed: Option<Parsed>) -> String {
        let Some(parsed) = parsed else {
            return "none".into();
        };
        fn o<T: std::fmt::Display>(v: &Option<T>) -> String {
            v.as_ref().map_or("-".into(), ToString::to_string)
        }
        fn ep(ip: &IpAddr, port: &Option<u16>) -> String {
            match (ip, port) {
                (IpAddr::V6(_), Some(port)) => format!("[{ip}]:{port}"),
                (_, Some(port)) => format!("{ip}:{port}"),
                (_, None) => ip.to_string(),
            }
        }
        let at = match parsed.event_time {
            Some(t) => format!(" @{t}"),
            None => String::new(),
        };
        let body = match parsed.body {
            Body::Flow(f) => format!(
                "flow p={} {}>{} bytes={} pkts={} nat={} act={} start={} end={} exp={}",
                f.protocol,
                ep(&f.src_ip, &f.src_port),
                ep(&f.dst_ip, &f.dst_port),
                o(&f.bytes),
                o(&f.packets),
                f.nat_src_ip
                    .map_or("-".into(), |ip| ep(&ip, &f.nat_src_port)),
                o(&f.action),
                o(&f.start),
                o(&f.end),
                o(&f.exporter),
            ),
            Body::Nat(n) => format!(
                "nat p={} in={} out={} dst={}",
                o(&n.protocol),
                ep(&n.inside_ip, &n.inside_port),
                ep(&n.outside_ip, &n.outside_port),
                n.dst_ip.map_or("-".into(), |ip| ep(&ip, &n.dst_port)),
            ),
            Body::Session(s) => format!(
                "session {} user={} ip={} mac={} nas={} id={} in={} out={} secs={} cause={}",
                match s.status {
                    SessionStatus::Start => "start",
                    SessionStatus::Interim => "interim",
                    SessionStatus::Stop => "stop",
                },
                s.user,
                o(&s.ip),
                o(&s.mac),
                o(&s.nas),
                o(&s.session_id),
                o(&s.input_octets),
                o(&s.output_octets),
                o(&s.duration_secs),
                o(&s.terminate_cause),
            ),
            Body::Lease(l) => format!(
                "lease {} {} {} host={} start={} end={} server={}",
                match l.action {
                    LeaseAction::Assign => "assign",
                    LeaseAction::Renew => "renew",
                    LeaseAction::Release => "release",
                    LeaseAction::Expire => "expire",
                },
                l.ip,
                l.mac,
                o(&l.hostname),
                o(&l.start),
                o(&l.end),
                o(&l.server),
            ),
            Body::Proxy(p) => format!(
                "proxy {} user={} {} {} status={} bytes={} ms={} server={}",
                p.client_ip,
                o(&p.user),
                p.method,
                p.url,
                o(&p.status),
                o(&p.bytes),
                o(&p.duration_ms),
                o(&p.server_ip),
            ),
            other => format!("{other:?}"),
        };
        body + &at
    }

    /// Runs `parser` on `text` as sent by host `gw` with app `app`, at [`TIME`].
    pub(crate) fn run(parser: Parser, app: Option<&str>, text: &str) -> String {
        let line = Line {
            time: TIME.parse().unwrap(),
            host: Some("gw"),
            app,
            text,
        };
        show(parser(&line))
    }

    fn check(text: &str, expected: &str) {
        assert_eq!(run(parse, None, text), expected, "text {text:?}");
    }

    #[test]
    fn endpoints() {
        let show = |t: &str| format!("{:?}", endpoint(t));
        assert_eq!(show("10.0.0.5:51234"), "Some((10.0.0.5, Some(51234)))");
        assert_eq!(show("10.0.0.5"), "Some((10.0.0.5, None))");
        assert_eq!(show("[2001:db8::1]:443"), "Some((2001:db8::1, Some(443)))");
        assert_eq!(show("2001:db8::1"), "Some((2001:db8::1, None))");
        assert_eq!(show("10.0.0.5:99999"), "None");
        assert_eq!(show("host:80"), "None");
        assert_eq!(show("[2001:db8::1]x"), "None");
    }

    #[test]
    fn key_value_pairs() {
        assert_eq!(
            key_values(r#"a=1 b="two words" flag c= d="" e="unterminated"#),
            [
                ("a", "1"),
                ("b", "two words"),
                ("c", ""),
                ("d", ""),
                ("e", "unterminated")
            ]
        );
    }

    /// The dispatcher routes each vendor's line to its parser, and declines everything else.
    #[test]
    fn dispatch() {
        check(
            "DHCPACK on 10.0.0.5 to aa:bb:cc:dd:ee:ff via eth1",
            "lease assign 10.0.0.5 aa:bb:cc:dd:ee:ff host=- start=2026-11-21T04:00:00Z end=- server=gw",
        );
        check(
            "DHCPACK(br0) 10.0.0.5 aa:bb:cc:dd:ee:ff",
            "lease assign 10.0.0.5 aa:bb:cc:dd:ee:ff host=- start=2026-11-21T04:00:00Z end=- server=gw",
        );
        check(
            "student1 (10.5.50.9): logged in",
            "session start user=student1 ip=10.5.50.9 mac=- nas=gw id=- in=- out=- secs=- cause=-",
        );
        check(
            "pam_unix(sshd:session): session opened for user root(uid=0)",
            "none",
        );
        check("user root logged in", "none");
        check("", "none");
        check("ผู้ใช้ทดสอบ 10.0.0.5", "none");
    }

    #[test]
    fn recognised_by_names_the_parser() {
        let name = |text| {
            recognised_by(&Line {
                time: TIME.parse().unwrap(),
                host: None,
                app: None,
                text,
            })
        };
        assert_eq!(
            name("DHCPACK(br0) 10.0.0.5 aa:bb:cc:dd:ee:ff"),
            Some("dnsmasq")
        );
        assert_eq!(
            name("IN=eth0 OUT= SRC=10.0.0.5 DST=1.2.3.4 LEN=60 PROTO=UDP SPT=1 DPT=2"),
            Some("netfilter")
        );
        assert_eq!(name("hello"), None);
    }

    proptest! {
        #[test]
        fn never_panics(text in "\\PC{0,200}") {
            let _ = run(parse, None, &text);
        }

        /// The shortcut gives what both full passes give, for every line whose text, host and
        /// app are parts of the whole line (as the syslog header parser makes them).
        #[test]
        fn parse_or_whole_agrees(
            whole in "(DHCPACK|DHCPRELEASE|DHCP4_LEASE_ALLOC |DHCP4_RELEASE |\\[hwtype=1 |IN=| IN=|SRC=|DST=|PROTO=|srcip=|dstip=|proto=6 |type=traffic |filterlog|filterlog: |NAT \\(|proto |TCP|\\)|\\(|->|:|,|=|\"| |[0-9.]{1,15}|[a-f0-9:]{1,17}|logged (in|out)|\\): logged in|hotspot|user |lease |on |of |to |via |block|in|4|1795233598.500 |TCP_MISS/200 |GET |http://x/ ){0,30}",
            cut in 0usize..400,
            app_at in proptest::option::of((0usize..400, 0usize..20)),
            host_at in proptest::option::of((0usize..400, 0usize..20)),
        ) {
            let boundary = |mut i: usize| {
                i = i.min(whole.len());
                while !whole.is_char_boundary(i) {
                    i -= 1;
                }
                i
            };
            let part = |at: usize, len: usize| {
                let start = boundary(at);
                &whole[start..boundary(start + len).max(start)]
            };
            let line = Line {
                time: TIME.parse().unwrap(),
                host: host_at.map(|(at, len)| part(at, len)),
                app: app_at.map(|(at, len)| part(at, len)),
                text: part(cut, whole.len()),
            };
            let full = parse(&line).or_else(|| parse(&Line { text: &whole, ..line }));
            prop_assert_eq!(parse_or_whole(&line, &whole), full);
        }

        #[test]
        fn find_agrees_with_str_find(text in "( |IN=| IN=|DHCPACK on |proto |x|é|\\)){0,20}") {
            for needle in [" IN=", "IN=", "DHCPACK on ", "proto ", "): logged in", "é)"] {
                prop_assert_eq!(Needle::new(needle).find(&text), text.find(needle), "{:?} in {:?}", needle, text);
            }
        }

        #[test]
        fn never_panics_on_near_misses(text in "(DHCPACK|DHCPRELEASE|IN=|SRC=|srcip=|NAT \\(|proto |\\)|\\(|->|:|,|=|\"| |[0-9.]{1,15}|[a-f0-9:]{1,17}|logged (in|out)|lease |hwtype=1 ){0,30}") {
            let _ = run(parse, Some("filterlog"), &text);
            let _ = run(parse, None, &text);
        }
    }
}
