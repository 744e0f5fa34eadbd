//! Syslog message parsing: RFC 5424 and RFC 3164 (BSD), as gateways really send them.
//!
//! Parsing is loose (syslog_loose): what cannot be read as a header is left in the message text,
//! so nothing is dropped. RFC 3164 timestamps carry no year and no zone; they are read as
//! Asia/Bangkok time (+07:00, no daylight saving) in the year that puts them nearest to when the
//! message was received, so a line stamped `Dec 31 23:59:59` received just after New Year
//! belongs to the old year.

use chrono::FixedOffset;
use jiff::Timestamp;
use syslog_loose::{IncompleteDate, Variant};

/// UTC offset of Asia/Bangkok, in seconds. Thailand has no daylight saving time.
const BANGKOK_OFFSET_SECS: i32 = 7 * 3600;

/// Which RFC the header followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Rfc3164,
    Rfc5424,
}

/// A syslog message with its header read.
///
/// Text fields are valid UTF-8; bytes that were not are replaced (U+FFFD) here, and
/// [`SyslogMessage::utf8`] says so, so the caller keeps the original bytes instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogMessage {
    pub protocol: Protocol,
    pub facility: Option<u8>,
    pub severity: Option<u8>,
    /// When the sender says it happened, resolved to an instant.
    pub timestamp: Option<Timestamp>,
    pub hostname: Option<String>,
    /// APP-NAME (RFC 5424) or TAG (RFC 3164), e.g. `filterlog`, `dnsmasq-dhcp`, `kernel`.
    pub app: Option<String>,
    pub procid: Option<String>,
    pub msgid: Option<String>,
    /// The free-form message text.
    pub msg: String,
    /// Whether the received bytes were valid UTF-8.
    pub utf8: bool,
}

/// Parses one syslog message (already framed) received at `received`.
///
/// Never fails: a message with no recognisable header comes back with every header field
/// `None` and the whole text as [`SyslogMessage::msg`].
pub fn parse(data: &[u8], received: Timestamp) -> SyslogMessage {
    let (text, utf8) = match std::str::from_utf8(data) {
        Ok(text) => (std::borrow::Cow::Borrowed(text), true),
        Err(_) => (String::from_utf8_lossy(data), false),
    };
    let h = header(&text, received);
    SyslogMessage {
        protocol: h.protocol,
        facility: h.facility,
        severity: h.severity,
        timestamp: h.timestamp,
        hostname: h.hostname.map(str::to_owned),
        app: h.app.map(str::to_owned),
        procid: h.procid.map(|p| p.to_string()),
        msgid: h.msgid.map(str::to_owned),
        msg: h.msg.to_owned(),
        utf8,
    }
}

/// A message's header as [`parse`] reads it, borrowing from the text: what
/// [`super::decode`] needs of every message, without copying its fields.
#[derive(Debug)]
pub(crate) struct Header<'a> {
    pub protocol: Protocol,
    pub facility: Option<u8>,
    pub severity: Option<u8>,
    pub timestamp: Option<Timestamp>,
    /// Never holds a comma (see [`parse`]).
    pub hostname: Option<&'a str>,
    pub app: Option<&'a str>,
    pub procid: Option<syslog_loose::ProcId<&'a str>>,
    pub msgid: Option<&'a str>,
    /// The message text, a part of `text` (a byte-order mark before it left out).
    pub msg: &'a str,
}

/// Reads the header of `text` received at `received`; every field borrows from `text`.
pub(crate) fn header(text: &str, received: Timestamp) -> Header<'_> {
    let bangkok = FixedOffset::east_opt(BANGKOK_OFFSET_SECS).expect("+07:00 is a valid offset");
    let (year, month) = bangkok_year_month(received);
    let get_year = move |(msg_month, ..): IncompleteDate| nearest_year(year, month, msg_month);
    let loose = |text| {
        if surely_headerless(text) {
            unparsed(text)
        } else {
            syslog_loose::parse_message_with_year_tz(text, get_year, Some(bangkok), Variant::Either)
        }
    };
    let mut parsed = loose(text);
    // A PRI followed by no header syslog_loose knows (FortiOS' default format:
    // `<189>date=... time=...`): take the PRI and read the rest on its own.
    let mut pri = None;
    if parsed.facility.is_none()
        && let Some((value, rest)) = leading_pri(text)
    {
        pri = Some(value);
        parsed = loose(rest);
    }
    let protocol = match parsed.protocol {
        syslog_loose::Protocol::RFC3164 => Protocol::Rfc3164,
        syslog_loose::Protocol::RFC5424(_) => Protocol::Rfc5424,
    };
    let timestamp = parsed.timestamp.and_then(|t| {
        let nanos = i32::try_from(t.timestamp_subsec_nanos()).ok()?;
        Timestamp::new(t.timestamp(), nanos).ok()
    });
    let msg = parsed.msg.strip_prefix('\u{feff}').unwrap_or(parsed.msg);
    Header {
        protocol,
        facility: parsed.facility.map(|f| f as u8).or(pri.map(|p| p >> 3)),
        severity: parsed.severity.map(|s| s as u8).or(pri.map(|p| p & 7)),
        timestamp,
        // RouterOS sends no hostname; its topics (`firewall,info`) land in that place. A comma
        // is never part of a hostname, so such a value is not one.
        hostname: parsed.hostname.filter(|h| !h.contains(',')),
        app: parsed.appname,
        procid: parsed.procid,
        msgid: parsed.msgid,
        msg,
    }
}

/// What syslog_loose makes of a text it cannot read a header from: no field but the text.
fn unparsed(text: &str) -> syslog_loose::Message<&str> {
    syslog_loose::Message {
        protocol: syslog_loose::Protocol::RFC3164,
        facility: None,
        severity: None,
        timestamp: None,
        hostname: None,
        appname: None,
        procid: None,
        msgid: None,
        structured_data: Vec::new(),
        msg: text,
    }
}

/// Whether syslog_loose surely reads no header from `text` (it would return [`unparsed`]),
/// told without running it: after an optional `<PRI>` comes a word that starts with a digit,
/// is not all digits (so not RFC 5424's version), and has no time-zone offset (`Z` or a third
/// `-`) or no space after it (so not RFC 3339); a month name (RFC 3164) starts with a letter.
/// syslog_loose takes such a text through every timestamp form it knows, each failure
/// allocating its error message, and the caller then tries the text again without its PRI:
/// loggen's `<38>2026-11-21T17:05:05 host ...` cost twice as much to parse as a line with a
/// header. `false` means "not sure"; the `surely_headerless_is_sure` test checks the rest.
fn surely_headerless(text: &str) -> bool {
    let text = text.trim();
    let rest = match text.strip_prefix('<') {
        Some(after) => {
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            if !(1..=3).contains(&digits) || after.as_bytes().get(digits) != Some(&b'>') {
                return false;
            }
            &after[digits + 1..]
        }
        None => text,
    };
    if !rest.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        return false;
    }
    // Byte by byte: the word is short, and `str`'s char patterns cost more than the search.
    let bytes = rest.as_bytes();
    let word_end = bytes
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(bytes.len());
    if bytes[..word_end].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let Some(space) = memchr::memchr(b' ', bytes) else {
        return true;
    };
    let token = &bytes[..space];
    !token.iter().any(|&b| matches!(b, b'Z' | b'z' | b'+'))
        && token.iter().filter(|&&b| b == b'-').count() <= 2
}

/// `<PRI>` at the start of `text` (0..=191), and what follows it.
fn leading_pri(text: &str) -> Option<(u8, &str)> {
    let rest = text.trim_start().strip_prefix('<')?;
    let (digits, rest) = rest.split_once('>')?;
    if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: u8 = digits.parse().ok()?;
    (value <= 191).then_some((value, rest))
}

fn bangkok_year_month(at: Timestamp) -> (i32, u32) {
    let offset = jiff::tz::Offset::constant(7);
    let dt = offset.to_datetime(at);
    (i32::from(dt.year()), u32::from(dt.month().unsigned_abs()))
}

/// The year for a month given without one: the current year, unless that puts it more than
/// half a year away from the receive month.
fn nearest_year(year: i32, received_month: u32, month: u32) -> i32 {
    if month > received_month + 6 {
        year - 1
    } else if month + 6 < received_month {
        year + 1
    } else {
        year
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const RECEIVED: &str = "2026-11-21T04:00:00Z"; // 11:00 in Bangkok

    /// Renders the fields a user would see, `|`-separated: protocol, pri, time, host, app, msg.
    fn show(m: &SyslogMessage) -> String {
        format!(
            "{:?}|{}|{}|{}|{}|{}{}",
            m.protocol,
            match (m.facility, m.severity) {
                (Some(f), Some(s)) => format!("{f}.{s}"),
                _ => "-".into(),
            },
            m.timestamp.map_or("-".into(), |t| t.to_string()),
            m.hostname.as_deref().unwrap_or("-"),
            m.app.as_deref().unwrap_or("-"),
            m.msg,
            if m.utf8 { "" } else { "|not-utf8" },
        )
    }

    fn check_at(received: &str, input: &[u8], expected: &str) {
        let m = parse(input, received.parse().unwrap());
        assert_eq!(
            show(&m),
            expected,
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }

    fn check(input: &str, expected: &str) {
        check_at(RECEIVED, input.as_bytes(), expected);
    }

    #[test]
    fn rfc3164() {
        check(
            "<134>Nov 21 10:59:58 gw1 filterlog[123]: 5,,,1000,igb1",
            "Rfc3164|16.6|2026-11-21T03:59:58Z|gw1|filterlog|5,,,1000,igb1",
        );
        check(
            "<13>Nov  1 00:00:00 host app: x",
            "Rfc3164|1.5|2026-10-31T17:00:00Z|host|app|x",
        );
        check(
            "<6>Nov 21 11:00:00 fw kernel: [1234.5] DROP IN=eth0",
            "Rfc3164|0.6|2026-11-21T04:00:00Z|fw|kernel|[1234.5] DROP IN=eth0",
        );
        // Zone given in an ISO timestamp (rsyslog's forward format) is honoured.
        check(
            "<13>2026-11-21T10:00:00.250+00:00 host app: x",
            "Rfc3164|1.5|2026-11-21T10:00:00.25Z|host|app|x",
        );
    }

    #[test]
    fn rfc3164_year_is_nearest_to_receipt() {
        check_at(
            "2027-01-01T00:00:05+07:00",
            b"<13>Dec 31 23:59:59 h a: m",
            "Rfc3164|1.5|2026-12-31T16:59:59Z|h|a|m",
        );
        check_at(
            "2026-12-31T23:59:59+07:00",
            b"<13>Jan  1 00:00:01 h a: m",
            "Rfc3164|1.5|2026-12-31T17:00:01Z|h|a|m",
        );
        check_at(
            "2026-06-15T12:00:00+07:00",
            b"<13>Jan  1 00:00:01 h a: m",
            "Rfc3164|1.5|2025-12-31T17:00:01Z|h|a|m",
        );
    }

    #[test]
    fn rfc5424() {
        check(
            "<165>1 2026-11-21T11:00:00.003+07:00 gw2 dnsmasq-dhcp 99 ID47 - DHCPACK(br0) 10.0.0.5",
            "Rfc5424|20.5|2026-11-21T04:00:00.003Z|gw2|dnsmasq-dhcp|DHCPACK(br0) 10.0.0.5",
        );
        check(
            "<14>1 2026-11-21T04:00:00Z h app - - [ex@32473 a=\"b\"] \u{feff}hello",
            "Rfc5424|1.6|2026-11-21T04:00:00Z|h|app|hello",
        );
        check("<14>1 - - - - - - bare", "Rfc5424|1.6|-|-|-|bare");
    }

    #[test]
    fn odd_headers() {
        // FortiOS default format: PRI, then key=value with no timestamp or host.
        check(
            "<189>date=2026-11-21 time=10:59:50 devname=\"FGT\"",
            "Rfc3164|23.5|-|-|-|date=2026-11-21 time=10:59:50 devname=\"FGT\"",
        );
        // RouterOS: topics where the hostname would be.
        check(
            "<134>Nov 21 10:59:59 firewall,info forward: in:ether2 out:ether1",
            "Rfc3164|16.6|2026-11-21T03:59:59Z|-|forward|in:ether2 out:ether1",
        );
        check("<999>x", "Rfc3164|-|-|-|-|<999>x");
    }

    #[test]
    fn no_header() {
        check("just text", "Rfc3164|-|-|-|-|just text");
        // loggen's lines: an RFC 3339 time without a zone is no header syslog_loose knows.
        check(
            "<38>2026-11-21T17:05:05 localhost prg00000[1234]: seq: 0000000000, thread: 0000",
            "Rfc3164|4.6|-|-|-|2026-11-21T17:05:05 localhost prg00000[1234]: seq: 0000000000, thread: 0000",
        );
        check("", "Rfc3164|-|-|-|-|");
    }

    #[test]
    fn not_utf8_is_flagged() {
        check_at(
            RECEIVED,
            b"<13>Nov 21 11:00:00 host app: caf\xe9",
            "Rfc3164|1.5|2026-11-21T04:00:00Z|host|app|caf\u{fffd}|not-utf8",
        );
    }

    #[test]
    fn thai_text_survives() {
        check(
            "<13>Nov 21 11:00:00 host app: ผู้ใช้ สมชาย เข้าระบบ",
            "Rfc3164|1.5|2026-11-21T04:00:00Z|host|app|ผู้ใช้ สมชาย เข้าระบบ",
        );
    }

    proptest! {
        #[test]
        fn never_panics(input in proptest::collection::vec(any::<u8>(), 0..300), secs in 0i64..4_000_000_000) {
            let m = parse(&input, Timestamp::from_second(secs).unwrap());
            prop_assert_eq!(m.utf8, std::str::from_utf8(&input).is_ok());
        }

        /// Where the shortcut says syslog_loose reads no header, it reads none.
        #[test]
        fn surely_headerless_is_sure(input in "[ ]?(<[0-9]{1,4}>|<x>|<>)?[ \t]?([0-9]{1,5}|-|[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2})?(\\.[0-9]{1,9})?)?([Zz]|[+-][0-9]{2}(:?[0-9]{2})?|UTC|GMT| GMT| \\+0700)?|[A-Za-z]{3} [0-9 ][0-9] [0-9:]{8})([ \t][ -~]{0,40})?") {
            let received: Timestamp = "2026-11-21T04:00:00Z".parse().unwrap();
            let bangkok = FixedOffset::east_opt(BANGKOK_OFFSET_SECS).unwrap();
            let (year, month) = bangkok_year_month(received);
            let get_year = move |(m, ..): IncompleteDate| nearest_year(year, month, m);
            if surely_headerless(&input) {
                let loose = syslog_loose::parse_message_with_year_tz(&input, get_year, Some(bangkok), Variant::Either);
                prop_assert_eq!(loose, unparsed(&input));
            }
        }

        #[test]
        fn never_panics_on_header_like_text(input in "<[0-9]{1,3}>(1 )?[A-Za-z0-9:. +-]{0,40} [ -~]{0,60}") {
            let _ = parse(input.as_bytes(), Timestamp::from_second(1_763_697_600).unwrap());
        }
    }
}
