//! RFC 6587 framing of syslog over a byte stream (TCP, TLS).
//!
//! Senders use one of two framings, and some mix them: octet counting (`LEN SP MSG`, what
//! rsyslog and syslog-ng send with RFC 5424) and non-transparent framing (the message ends at LF;
//! what `logger --tcp` and most gateways send). The framing is detected per frame: a frame that
//! starts with a non-zero digit is octet-counted, anything else runs to the next LF.
//!
//! [`Framer::decode`] never blocks and never fails: given the bytes buffered so far it says
//! whether a whole frame is there ([`Framed::Incomplete`] otherwise) and how many bytes to drop
//! from the buffer. A frame longer than the maximum is not buffered whole: its first `max` bytes
//! are handed out as [`Framed::Oversized`] (to be kept as a raw record) and the rest is skipped.

/// The default largest frame: RFC 5425 asks receivers to take at least 2048 octets and
/// recommends 8192; gateways' long firewall lines stay well under 64 KiB.
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024;

/// Octet counts longer than this many digits are not octet counts.
const MAX_LEN_DIGITS: usize = 10;

/// What [`Framer::decode`] found at the start of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framed<'a> {
    /// No whole frame yet: read more bytes and call again with the same buffer, extended.
    Incomplete,
    /// One message (without its length prefix or LF trailer). Drop `consumed` bytes.
    Message { message: &'a [u8], consumed: usize },
    /// The first bytes of a frame longer than the maximum; the rest of it is skipped by the
    /// following calls. `declared` is the octet count when the sender gave one.
    Oversized {
        head: &'a [u8],
        consumed: usize,
        declared: Option<usize>,
    },
    /// Bytes that carry no message (empty lines, the tail of an oversized frame). Drop them.
    Skipped { consumed: usize },
}

impl Framed<'_> {
    /// How many bytes of the buffer this outcome used (0 for [`Framed::Incomplete`]).
    pub fn consumed(&self) -> usize {
        match self {
            Framed::Incomplete => 0,
            Framed::Message { consumed, .. }
            | Framed::Oversized { consumed, .. }
            | Framed::Skipped { consumed } => *consumed,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    Nothing,
    Octets(usize),
    ToNewline,
}

/// The framing state of one connection.
#[derive(Debug, Clone)]
pub struct Framer {
    max: usize,
    skip: Skip,
}

impl Default for Framer {
    fn default() -> Self {
        Framer::new(DEFAULT_MAX_FRAME)
    }
}

impl Framer {
    /// A framer that hands out messages of at most `max` bytes (at least 1).
    pub fn new(max: usize) -> Self {
        Framer {
            max: max.max(1),
            skip: Skip::Nothing,
        }
    }

    /// Looks for one frame at the start of `buf`.
    ///
    /// The caller drops [`Framed::consumed`] bytes from its buffer and calls again until
    /// [`Framed::Incomplete`].
    pub fn decode<'a>(&mut self, buf: &'a [u8]) -> Framed<'a> {
        match self.skip {
            Skip::Octets(left) => {
                if buf.is_empty() {
                    return Framed::Incomplete;
                }
                let n = left.min(buf.len());
                self.skip = if n == left {
                    Skip::Nothing
                } else {
                    Skip::Octets(left - n)
                };
                return Framed::Skipped { consumed: n };
            }
            Skip::ToNewline => {
                if buf.is_empty() {
                    return Framed::Incomplete;
                }
                return match memchr::memchr(b'\n', buf) {
                    Some(i) => {
                        self.skip = Skip::Nothing;
                        Framed::Skipped { consumed: i + 1 }
                    }
                    None => Framed::Skipped {
                        consumed: buf.len(),
                    },
                };
            }
            Skip::Nothing => {}
        }
        match buf.first() {
            None => Framed::Incomplete,
            Some(b'1'..=b'9') => match self.octet_count(buf) {
                Some(outcome) => outcome,
                None => self.line(buf),
            },
            Some(_) => self.line(buf),
        }
    }

    /// The message left at the end of a stream that closed without a final LF, if any.
    pub fn finish<'a>(&mut self, buf: &'a [u8]) -> Option<&'a [u8]> {
        let skipping = self.skip != Skip::Nothing;
        self.skip = Skip::Nothing;
        let rest = trim_line_end(buf);
        (!skipping && !rest.is_empty()).then_some(rest)
    }

    /// `LEN SP MSG`; `None` when the digits are not followed by a space (so not a count).
    fn octet_count<'a>(&mut self, buf: &'a [u8]) -> Option<Framed<'a>> {
        let digits = buf.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits > MAX_LEN_DIGITS {
            return None;
        }
        match buf.get(digits) {
            None => return Some(Framed::Incomplete),
            Some(b' ') => {}
            Some(_) => return None,
        }
        // At most ten ASCII digits: always fits in u64.
        let len: u64 = std::str::from_utf8(&buf[..digits]).ok()?.parse().ok()?;
        let start = digits + 1;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > self.max {
            let available = buf.len() - start;
            if available < self.max {
                return Some(Framed::Incomplete);
            }
            self.skip = Skip::Octets(len - self.max);
            return Some(Framed::Oversized {
                head: &buf[start..start + self.max],
                consumed: start + self.max,
                declared: Some(len),
            });
        }
        if buf.len() - start < len {
            return Some(Framed::Incomplete);
        }
        Some(Framed::Message {
            message: trim_line_end(&buf[start..start + len]),
            consumed: start + len,
        })
    }

    fn line<'a>(&mut self, buf: &'a [u8]) -> Framed<'a> {
        let window = &buf[..buf.len().min(self.max + 2)];
        match memchr::memchr(b'\n', window) {
            Some(i) => {
                let message = trim_line_end(&buf[..i]);
                if message.len() > self.max {
                    // Only possible with a CR before the LF pushing it past the window's edge.
                    return Framed::Oversized {
                        head: &message[..self.max],
                        consumed: i + 1,
                        declared: None,
                    };
                }
                if message.is_empty() {
                    Framed::Skipped { consumed: i + 1 }
                } else {
                    Framed::Message {
                        message,
                        consumed: i + 1,
                    }
                }
            }
            None if buf.len() >= self.max + 2 => {
                self.skip = Skip::ToNewline;
                Framed::Oversized {
                    head: &buf[..self.max],
                    consumed: self.max,
                    declared: None,
                }
            }
            None => Framed::Incomplete,
        }
    }
}

/// Drops a trailing CR/LF (and a NUL, which some senders use as the trailer).
fn trim_line_end(mut bytes: &[u8]) -> &[u8] {
    while let [rest @ .., b'\r' | b'\n' | b'\0'] = bytes {
        bytes = rest;
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `input` in one piece and renders every outcome until Incomplete.
    fn run(max: usize, input: &[u8]) -> Vec<String> {
        let mut framer = Framer::new(max);
        let mut out = Vec::new();
        let mut buf = input;
        loop {
            let framed = framer.decode(buf);
            let shown = match &framed {
                Framed::Incomplete => {
                    out.push(format!("incomplete({})", String::from_utf8_lossy(buf)));
                    break;
                }
                Framed::Message { message, .. } => {
                    format!("msg({})", String::from_utf8_lossy(message))
                }
                Framed::Oversized { head, declared, .. } => {
                    format!("big({},{declared:?})", String::from_utf8_lossy(head))
                }
                Framed::Skipped { consumed } => format!("skip({consumed})"),
            };
            out.push(shown);
            buf = &buf[framed.consumed()..];
        }
        out
    }

    fn check(max: usize, input: &str, expected: &[&str]) {
        assert_eq!(run(max, input.as_bytes()), expected, "input {input:?}");
    }

    #[test]
    fn framing() {
        check(64, "", &["incomplete()"]);
        check(64, "<13>hello\n", &["msg(<13>hello)", "incomplete()"]);
        check(
            64,
            "<13>a\r\n<13>b\n",
            &["msg(<13>a)", "msg(<13>b)", "incomplete()"],
        );
        check(64, "<13>a\n<13>b", &["msg(<13>a)", "incomplete(<13>b)"]);
        check(
            64,
            "\n\n<13>a\n",
            &["skip(1)", "skip(1)", "msg(<13>a)", "incomplete()"],
        );
        check(64, "5 <13>a", &["msg(<13>a)", "incomplete()"]);
        check(
            64,
            "5 <13>a6 <13>bc",
            &["msg(<13>a)", "msg(<13>bc)", "incomplete()"],
        );
        check(64, "5 <13>", &["incomplete(5 <13>)"]);
        check(64, "12", &["incomplete(12)"]);
        // Mixed in one stream: counted, then LF, then counted.
        check(
            64,
            "5 <13>a<13>b\n5 <13>c",
            &["msg(<13>a)", "msg(<13>b)", "msg(<13>c)", "incomplete()"],
        );
        // Counted frame whose content ends with LF (rsyslog can add one).
        check(64, "6 <13>a\n", &["msg(<13>a)", "incomplete()"]);
        // Digits not followed by a space: not a count, a line.
        check(64, "123abc\n", &["msg(123abc)", "incomplete()"]);
        check(
            64,
            "12345678901 x\n",
            &["msg(12345678901 x)", "incomplete()"],
        );
        check(64, "0 x\n", &["msg(0 x)", "incomplete()"]);
    }

    #[test]
    fn oversized() {
        // Line longer than max: head kept, rest up to the LF skipped, next frame intact.
        check(
            4,
            "abcdefgh\nxy\n",
            &["big(abcd,None)", "skip(5)", "msg(xy)", "incomplete()"],
        );
        // Counted frame longer than max: head kept, the declared rest skipped.
        check(
            4,
            "8 abcdefgh3 xyz",
            &["big(abcd,Some(8))", "skip(4)", "msg(xyz)", "incomplete()"],
        );
        // Not enough buffered to know: wait.
        check(4, "8 abc", &["incomplete(8 abc)"]);
        check(4, "abcd", &["incomplete(abcd)"]);
        check(4, "abcd\n", &["msg(abcd)", "incomplete()"]);
        check(4, "abcd\r\n", &["msg(abcd)", "incomplete()"]);
    }

    #[test]
    fn byte_by_byte_equals_all_at_once() {
        let input = b"11 <13>counted<14>line one\r\n\n7 <15>lf\n<16>tail\n";
        let mut framer = Framer::new(64);
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for &b in input {
            buf.push(b);
            loop {
                let framed = framer.decode(&buf);
                if let Framed::Message { message, .. } = &framed {
                    got.push(String::from_utf8_lossy(message).into_owned());
                }
                let n = framed.consumed();
                if n == 0 {
                    break;
                }
                buf.drain(..n);
            }
        }
        assert_eq!(got, ["<13>counted", "<14>line one", "<15>lf", "<16>tail"]);
    }

    #[test]
    fn finish() {
        let mut framer = Framer::new(8);
        assert_eq!(framer.finish(b"<13>x\r"), Some(&b"<13>x"[..]));
        assert_eq!(framer.finish(b""), None);
        assert_eq!(
            framer.decode(b"0123456789"),
            Framed::Oversized {
                head: b"01234567",
                consumed: 8,
                declared: None
            }
        );
        assert_eq!(
            framer.finish(b"89"),
            None,
            "the tail of an oversized line is not a message"
        );
    }

    proptest! {
        #[test]
        fn never_panics_and_always_progresses(max in 1usize..64, input in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut framer = Framer::new(max);
            let mut buf = &input[..];
            loop {
                let framed = framer.decode(buf);
                if let Framed::Message { message, .. } | Framed::Oversized { head: message, .. } = &framed {
                    prop_assert!(message.len() <= max);
                }
                let n = framed.consumed();
                prop_assert!(n <= buf.len());
                if n == 0 {
                    break;
                }
                buf = &buf[n..];
            }
            let _ = framer.finish(buf);
        }
    }
}
