//! NetFlow/IPFIX decoding with template state: the input is a sequence of datagrams, each
//! prefixed by a two-octet length, fed to one exporter's decoder in turn.
#![no_main]

use khetnet_collector::Receipt;
use khetnet_collector::netflow::FlowDecoder;
use khetnet_retention::record::{Input, Origin};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let receipt = Receipt {
        receive_time: jiff::Timestamp::from_second(1_795_233_600).unwrap(),
        origin: Origin {
            input: Input::Netflow,
            peer: None,
            import_sha256: None,
        },
        school: None,
    };
    let mut decoder = FlowDecoder::new("10.1.0.1".parse().unwrap());
    let mut rest = data;
    while let [hi, lo, tail @ ..] = rest {
        let n = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let _ = decoder.decode(&tail[..n], &receipt);
        rest = &tail[n..];
    }
    let counters = decoder.counters();
    assert!(counters.malformed <= counters.datagrams);
});
