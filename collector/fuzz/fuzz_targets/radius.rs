//! RADIUS accounting decoding: the input as a whole datagram, and the input as the attributes
//! of a correctly signed Accounting-Request (so attribute parsing is reached, not just the
//! authenticator check).
#![no_main]

use khetnet_collector::Receipt;
use khetnet_collector::radius::{self, Outcome};
use khetnet_retention::record::{Input, Origin};
use libfuzzer_sys::fuzz_target;
use md5::{Digest, Md5};

const SECRET: &[u8] = b"fuzzing";

fuzz_target!(|data: &[u8]| {
    let receipt = Receipt {
        receive_time: jiff::Timestamp::from_second(1_795_233_600).unwrap(),
        origin: Origin {
            input: Input::Radius,
            peer: None,
            import_sha256: None,
        },
        school: None,
    };
    let _ = radius::decode(data, SECRET, &receipt);

    let attrs = &data[..data.len().min(4096 - 20)];
    let len = u16::try_from(20 + attrs.len()).unwrap();
    let mut packet = vec![4, 1];
    packet.extend_from_slice(&len.to_be_bytes());
    let mut md5 = Md5::new();
    md5.update(&packet);
    md5.update([0u8; 16]);
    md5.update(attrs);
    md5.update(SECRET);
    packet.extend_from_slice(&md5.finalize());
    packet.extend_from_slice(attrs);
    match radius::decode(&packet, SECRET, &receipt) {
        Outcome::BadAuthenticator { .. } => panic!("a correctly signed request was refused"),
        Outcome::Accepted { response, .. } => assert_eq!(response.len(), 20),
        Outcome::Malformed { .. } => {}
    }
});
