//! RFC 6587 framing over an arbitrary byte stream, then every message through the parser and
//! the gateway parsers. The first byte picks the maximum frame size.
#![no_main]

use khetnet_collector::Receipt;
use khetnet_collector::syslog::{self, Framed, Framer};
use khetnet_retention::record::{Body, Input, Origin};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&max, stream)) = data.split_first() else {
        return;
    };
    let receipt = Receipt {
        receive_time: jiff::Timestamp::from_second(1_795_233_600).unwrap(),
        origin: Origin {
            input: Input::SyslogTcp,
            peer: None,
            import_sha256: None,
        },
        school: None,
    };
    let max = usize::from(max) + 1;
    let mut framer = Framer::new(max);
    let mut buf = stream;
    loop {
        let framed = framer.decode(buf);
        match &framed {
            Framed::Message { message, .. } => {
                assert!(message.len() <= max);
                let record = syslog::decode(message, &receipt);
                if let Body::Raw(raw) = &record.body {
                    assert_eq!(&raw.data, message, "raw records keep the bytes whole");
                }
            }
            Framed::Oversized { head, .. } => {
                assert!(head.len() <= max);
                let _ = syslog::oversized(head, &receipt);
            }
            Framed::Skipped { .. } | Framed::Incomplete => {}
        }
        let n = framed.consumed();
        assert!(n <= buf.len());
        if n == 0 {
            break;
        }
        buf = &buf[n..];
    }
    let _ = framer.finish(buf);
});
