//! MAC addresses as the store keeps them: lower-case `aa:bb:cc:dd:ee:ff`.
//!
//! Gateways and RADIUS clients write them in every common notation (`AA-BB-CC-DD-EE-FF`,
//! `aabb.ccdd.eeff`, `aabbccddeeff`, `AA:BB:...`); attribution joins on them, so they are
//! normalised once, here.

/// Normalises a MAC address written in any common notation, or `None` if it is not one.
///
/// Accepted: six octets separated by `:` or `-`, three groups of four hex digits separated by
/// `.` (Cisco) or `-`, or twelve hex digits with no separator. Surrounding whitespace is ignored.
pub fn normalise(text: &str) -> Option<String> {
    let text = text.trim();
    let digits: String = match text.len() {
        // aa:bb:cc:dd:ee:ff or aa-bb-cc-dd-ee-ff
        17 => {
            let sep = text.as_bytes()[2];
            if sep != b':' && sep != b'-' {
                return None;
            }
            let mut out = String::with_capacity(12);
            for (i, part) in text.split(sep as char).enumerate() {
                if i >= 6 || part.len() != 2 {
                    return None;
                }
                out.push_str(part);
            }
            out
        }
        // aabb.ccdd.eeff or aabb-ccdd-eeff
        14 => {
            let sep = text.as_bytes()[4];
            if sep != b'.' && sep != b'-' {
                return None;
            }
            let mut out = String::with_capacity(12);
            for (i, part) in text.split(sep as char).enumerate() {
                if i >= 3 || part.len() != 4 {
                    return None;
                }
                out.push_str(part);
            }
            out
        }
        12 => text.to_owned(),
        _ => return None,
    };
    if digits.len() != 12 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let lower = digits.to_ascii_lowercase();
    let mut out = String::with_capacity(17);
    for (i, pair) in lower.as_bytes().chunks(2).enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push(pair[0] as char);
        out.push(pair[1] as char);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(input: &str, expected: Option<&str>) {
        assert_eq!(normalise(input).as_deref(), expected, "input {input:?}");
    }

    #[test]
    fn notations() {
        check("aa:bb:cc:dd:ee:ff", Some("aa:bb:cc:dd:ee:ff"));
        check("AA:BB:CC:DD:EE:0F", Some("aa:bb:cc:dd:ee:0f"));
        check("AA-BB-CC-DD-EE-FF", Some("aa:bb:cc:dd:ee:ff"));
        check("aabb.ccdd.eeff", Some("aa:bb:cc:dd:ee:ff"));
        check("AABB-CCDD-EEFF", Some("aa:bb:cc:dd:ee:ff"));
        check("AABBCCDDEEFF", Some("aa:bb:cc:dd:ee:ff"));
        check(" 00:0c:29:aa:bb:cc\t", Some("00:0c:29:aa:bb:cc"));
    }

    #[test]
    fn not_macs() {
        check("", None);
        check("aa:bb:cc:dd:ee", None);
        check("aa:bb:cc:dd:ee:gg", None);
        check("aa:bb-cc:dd:ee:ff", None);
        check("aab:bc:cd:de:ef:f0", None);
        check("aabb.ccdd-eeff", None);
        check("10.0.0.5:51234", None);
        check("student1", None);
        check("ผู้ใช้ทดสอบ", None);
    }

    proptest! {
        #[test]
        fn never_panics_and_output_is_canonical(text in "\\PC{0,20}") {
            if let Some(mac) = normalise(&text) {
                prop_assert_eq!(mac.len(), 17);
                prop_assert_eq!(normalise(&mac), Some(mac.clone()));
                prop_assert!(!mac.bytes().any(|b| b.is_ascii_uppercase()));
            }
        }

        #[test]
        fn every_notation_of_one_address_agrees(octets in any::<[u8; 6]>()) {
            let hex: Vec<String> = octets.iter().map(|o| format!("{o:02X}")).collect();
            let canonical = hex.join(":").to_ascii_lowercase();
            let cisco = format!("{}{}.{}{}.{}{}", hex[0], hex[1], hex[2], hex[3], hex[4], hex[5]);
            for notation in [hex.join(":"), hex.join("-"), hex.concat(), cisco] {
                prop_assert_eq!(normalise(&notation), Some(canonical.clone()));
            }
        }
    }
}
