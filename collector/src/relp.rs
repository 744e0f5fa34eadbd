//! RELP, the Reliable Event Logging Protocol of rsyslog's `omrelp`: framing of the stream into
//! commands and the responses the collector sends. Pure functions over bytes, no I/O.
//!
//! A frame is `TXNR SP COMMAND SP DATALEN [SP DATA] LF`: a transaction number (1 to 999999999),
//! a command of letters (`open`, `syslog`, `close`, ...), the data length in decimal and that
//! many bytes of data. The receiver answers each transaction with `TXNR rsp DATALEN SP DATA LF`
//! whose data starts with a status code (`200 OK`). The sender keeps every message until its
//! `rsp` arrives and sends the unanswered ones again after a reconnect, so the collector
//! answers a `syslog` command only once the message is durable.

/// The largest data part accepted (rsyslog's default maximum message size is 8 KiB; librelp
/// allows up to 128 KiB).
pub const MAX_DATA: usize = 256 * 1024;

/// The longest number (TXNR, DATALEN) RELP allows: nine digits.
const MAX_DIGITS: usize = 9;

/// The longest command name.
const MAX_COMMAND: usize = 32;

/// One RELP command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    pub txnr: u64,
    pub command: &'a str,
    pub data: &'a [u8],
}

/// What [`decode`] found at the start of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// No whole frame yet: read more.
    Incomplete,
    /// One frame; drop `consumed` bytes.
    Frame { frame: Frame<'a>, consumed: usize },
    /// Not RELP: the stream cannot be resynchronised and the connection must end.
    Malformed(String),
}

/// Looks for one frame at the start of `buf`.
pub fn decode(buf: &[u8]) -> Decoded<'_> {
    let mut at = 0;
    // Line ends between frames are tolerated (some senders put one after the trailer).
    while matches!(buf.get(at), Some(b'\n' | b'\r')) {
        at += 1;
    }
    let txnr = match number(buf, &mut at, "TXNR") {
        Ok(Some(n)) => n,
        Ok(None) => return Decoded::Incomplete,
        Err(e) => return Decoded::Malformed(e),
    };
    match space(buf, &mut at, "after TXNR") {
        Ok(true) => {}
        Ok(false) => return Decoded::Incomplete,
        Err(e) => return Decoded::Malformed(e),
    }
    let start = at;
    while at < buf.len() && buf[at].is_ascii_alphabetic() {
        at += 1;
        if at - start > MAX_COMMAND {
            return Decoded::Malformed(format!("command longer than {MAX_COMMAND} letters"));
        }
    }
    if at == buf.len() {
        return Decoded::Incomplete;
    }
    if at == start {
        return Decoded::Malformed("no command after TXNR".into());
    }
    // Letters only, so this is ASCII and cannot fail.
    let command = std::str::from_utf8(&buf[start..at]).unwrap_or_default();
    match space(buf, &mut at, "after the command") {
        Ok(true) => {}
        Ok(false) => return Decoded::Incomplete,
        Err(e) => return Decoded::Malformed(e),
    }
    let len = match number(buf, &mut at, "DATALEN") {
        Ok(Some(n)) => n as usize,
        Ok(None) => return Decoded::Incomplete,
        Err(e) => return Decoded::Malformed(e),
    };
    if len > MAX_DATA {
        return Decoded::Malformed(format!("DATALEN {len} is over the maximum of {MAX_DATA}"));
    }
    let data = match buf.get(at) {
        None => return Decoded::Incomplete,
        Some(b'\n') if len == 0 => &buf[at..at],
        Some(b' ') => {
            at += 1;
            if buf.len() < at + len {
                return Decoded::Incomplete;
            }
            let data = &buf[at..at + len];
            at += len;
            data
        }
        Some(other) => {
            return Decoded::Malformed(format!(
                "expected a space or LF after DATALEN, found byte {other:#04x}"
            ));
        }
    };
    match buf.get(at) {
        None => Decoded::Incomplete,
        Some(b'\n') => Decoded::Frame {
            frame: Frame {
                txnr,
                command,
                data,
            },
            consumed: at + 1,
        },
        Some(other) => Decoded::Malformed(format!(
            "expected the LF trailer after {len} bytes of data, found byte {other:#04x}"
        )),
    }
}

/// Reads a decimal number of at most nine digits. `Ok(None)`: the buffer ends inside it.
fn number(buf: &[u8], at: &mut usize, what: &str) -> Result<Option<u64>, String> {
    let start = *at;
    while *at < buf.len() && buf[*at].is_ascii_digit() {
        *at += 1;
        if *at - start > MAX_DIGITS {
            return Err(format!("{what} longer than {MAX_DIGITS} digits"));
        }
    }
    if *at == buf.len() {
        return Ok(None);
    }
    if *at == start {
        return Err(format!(
            "expected {what} digits, found byte {:#04x}",
            buf[*at]
        ));
    }
    let digits = std::str::from_utf8(&buf[start..*at]).unwrap_or_default();
    digits
        .parse()
        .map(Some)
        .map_err(|_| format!("{what} is not a number"))
}

fn space(buf: &[u8], at: &mut usize, what: &str) -> Result<bool, String> {
    match buf.get(*at) {
        None => Ok(false),
        Some(b' ') => {
            *at += 1;
            Ok(true)
        }
        Some(other) => Err(format!("expected a space {what}, found byte {other:#04x}")),
    }
}

/// A response frame: `TXNR rsp LEN DATA LF`.
pub fn response(txnr: u64, data: &str) -> Vec<u8> {
    format!("{txnr} rsp {} {data}\n", data.len()).into_bytes()
}

/// The answer to `open`: what this side offers. Only `syslog` is supported.
pub fn open_response(txnr: u64) -> Vec<u8> {
    response(
        txnr,
        concat!(
            "200 OK\nrelp_version=0\nrelp_software=khetnet-collector,",
            env!("CARGO_PKG_VERSION"),
            "\ncommands=syslog"
        ),
    )
}

/// What the server sends before it closes the connection on its own (shutdown).
pub const SERVER_CLOSE: &[u8] = b"0 serverclose 0\n";

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn show(buf: &[u8]) -> String {
        match decode(buf) {
            Decoded::Incomplete => "incomplete".into(),
            Decoded::Frame { frame, consumed } => format!(
                "{} {} {:?} +{consumed}",
                frame.txnr,
                frame.command,
                String::from_utf8_lossy(frame.data)
            ),
            Decoded::Malformed(reason) => format!("malformed: {reason}"),
        }
    }

    fn check(input: &[u8], expected: &str) {
        assert_eq!(
            show(input),
            expected,
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }

    #[test]
    fn frames() {
        check(b"1 open 86 relp_version=0\nrelp_software=librelp,1.11.0,http://librelp.adiscon.com\ncommands=syslog\n",
            "1 open \"relp_version=0\\nrelp_software=librelp,1.11.0,http://librelp.adiscon.com\\ncommands=syslog\" +97");
        check(b"2 syslog 5 hello\n", "2 syslog \"hello\" +17");
        check(b"2 syslog 5 hello\n3 syslog", "2 syslog \"hello\" +17");
        check(b"3 close 0\n", "3 close \"\" +10");
        check(b"3 close 0 \n", "3 close \"\" +11");
        check(b"\n4 syslog 1 x\n", "4 syslog \"x\" +14");
        // Data may hold LF and any byte.
        check(b"5 syslog 3 a\n\xff\n", "5 syslog \"a\\n\u{fffd}\" +15");
    }

    #[test]
    fn incomplete_frames() {
        for cut in [
            &b""[..],
            b"1",
            b"12 ",
            b"12 sys",
            b"12 syslog",
            b"12 syslog ",
            b"12 syslog 5",
            b"12 syslog 5 hel",
            b"12 syslog 5 hello",
            b"3 close 0",
        ] {
            check(cut, "incomplete");
        }
    }

    #[test]
    fn malformed_frames() {
        check(
            b"x syslog 1 a\n",
            "malformed: expected TXNR digits, found byte 0x78",
        );
        check(
            b"1234567890 syslog 1 a\n",
            "malformed: TXNR longer than 9 digits",
        );
        check(b"1  syslog 1 a\n", "malformed: no command after TXNR");
        check(
            b"1 syslog x\n",
            "malformed: expected DATALEN digits, found byte 0x78",
        );
        check(
            b"1 syslog 1 ab\n",
            "malformed: expected the LF trailer after 1 bytes of data, found byte 0x62",
        );
        check(
            b"1 syslog 999999999 a",
            "malformed: DATALEN 999999999 is over the maximum of 262144",
        );
        check(
            b"1 syslog 1\n",
            "malformed: expected a space or LF after DATALEN, found byte 0x0a",
        );
    }

    #[test]
    fn responses() {
        assert_eq!(response(7, "200 OK"), b"7 rsp 6 200 OK\n");
        let open = open_response(1);
        match decode(&open) {
            Decoded::Frame { frame, consumed } => {
                assert_eq!(consumed, open.len());
                assert_eq!(frame.command, "rsp");
                let data = std::str::from_utf8(frame.data).unwrap();
                assert!(data.starts_with("200 OK\n"), "{data}");
                assert!(data.ends_with("commands=syslog"), "{data}");
            }
            other => panic!("{other:?}"),
        }
    }

    proptest! {
        #[test]
        fn never_panics_and_consumes_within_the_buffer(input in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Decoded::Frame { consumed, .. } = decode(&input) {
                prop_assert!(consumed <= input.len() && consumed > 0);
            }
        }

        #[test]
        fn frames_round_trip(txnr in 1u64..999_999_999, data in proptest::collection::vec(any::<u8>(), 0..100)) {
            let mut wire = format!("{txnr} syslog {} ", data.len()).into_bytes();
            wire.extend_from_slice(&data);
            wire.push(b'\n');
            match decode(&wire) {
                Decoded::Frame { frame, consumed } => {
                    prop_assert_eq!(frame.txnr, txnr);
                    prop_assert_eq!(frame.data, &data[..]);
                    prop_assert_eq!(consumed, wire.len());
                }
                other => prop_assert!(false, "{:?}", other),
            }
            // Every strict prefix is incomplete.
            for cut in 0..wire.len() {
                prop_assert_eq!(decode(&wire[..cut]), Decoded::Incomplete);
            }
        }
    }
}
