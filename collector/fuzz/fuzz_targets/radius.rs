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
        Outcome::Accepted { response, .. } => {
            // An Accounting-Response: code 5, the request's identifier, its own length in the
            // header, and the request's Proxy-State attributes echoed after the 20-byte header.
            assert_eq!(response[..2], [5, 1]);
            assert_eq!(usize::from(u16::from_be_bytes([response[2], response[3]])), response.len());
            let proxy_state: usize = attributes(attrs).filter(|a| a[0] == 33).map(<[u8]>::len).sum();
            assert_eq!(response.len(), 20 + proxy_state);
        }
        Outcome::Malformed { .. } => {}
    }
});

/// The well-formed attributes at the start of `attrs` (type, length, value), as whole slices.
fn attributes(mut attrs: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let len = usize::from(*attrs.get(1)?);
        if len < 2 || len > attrs.len() {
            return None;
        }
        let (attr, rest) = attrs.split_at(len);
        attrs = rest;
        Some(attr)
    })
}
