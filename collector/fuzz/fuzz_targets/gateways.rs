//! The gateway log parsers on arbitrary text, with and without a header's app name.
#![no_main]

use khetnet_collector::gateways::{self, Line};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for app in [None, Some("filterlog"), Some("kernel"), Some("squid")] {
        let line = Line {
            time: jiff::Timestamp::from_second(1_795_233_600).unwrap(),
            host: Some("gw"),
            app,
            text,
        };
        let _ = gateways::parse(&line);
    }
});
