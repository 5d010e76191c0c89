//! A lossless short form for user agents in stored records.
//!
//! A browser's user agent is 70–150 bytes, most of them the same few fragments in every
//! browser ("Mozilla/5.0 (", "AppleWebKit/537.36 (KHTML, like Gecko) ", …). Each fragment below
//! is stored as one control byte (0x01–0x1F), which never occurs in a stored user agent (`clip`
//! drops control characters). A Chrome user agent shrinks from 111 bytes to 9, which keeps a
//! session record inside the 224-byte allocation class of Redis (see "Scale" in the README).
//!
//! The table is part of the stored format: entries may be appended, never changed or reordered.
//! A value that does contain a control byte is stored as 0x00 followed by the value unchanged,
//! so decoding is exact for every input.

/// Fragment `i` is stored as the byte `i + 1`.
const FRAGMENTS: [&str; 31] = [
    "Mozilla/5.0 (",
    "Windows NT 10.0; Win64; x64) ",
    "Windows NT 10.0; Win64; x64; rv:",
    "Macintosh; Intel Mac OS X 10_15_7) ",
    "Macintosh; Intel Mac OS X 10.15; rv:",
    "X11; Linux x86_64) ",
    "X11; Linux x86_64; rv:",
    "X11; Ubuntu; Linux x86_64; rv:",
    "Linux; Android 10; K) ",
    "iPhone; CPU iPhone OS ",
    "iPad; CPU OS ",
    " like Mac OS X) ",
    "AppleWebKit/537.36 (KHTML, like Gecko) ",
    "AppleWebKit/605.1.15 (KHTML, like Gecko) ",
    "Chrome/",
    ".0.0.0",
    " Safari/537.36",
    " Safari/604.1",
    "Safari/605.1.15",
    "Mobile/15E148",
    " Mobile",
    "Version/",
    "Gecko/20100101 Firefox/",
    " Edg/",
    " OPR/",
    "CriOS/",
    "FxiOS/",
    "SamsungBrowser/",
    "curl/",
    "okhttp/",
    "python-requests/",
];

/// The short form of `ua`.
pub fn encode(ua: &str) -> String {
    if ua.bytes().any(|b| b < 0x20) {
        return format!("\0{ua}");
    }
    let mut out = String::with_capacity(ua.len());
    let mut rest = ua;
    while !rest.is_empty() {
        let longest = FRAGMENTS
            .iter()
            .enumerate()
            .filter(|(_, f)| rest.starts_with(**f))
            .max_by_key(|(_, f)| f.len());
        match longest {
            Some((i, f)) => {
                out.push(char::from(i as u8 + 1));
                rest = &rest[f.len()..];
            }
            None => {
                let c = rest.chars().next().expect("rest is not empty");
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out
}

/// The user agent a short form stands for.
pub fn decode(stored: &str) -> String {
    if let Some(literal) = stored.strip_prefix('\0') {
        return literal.to_owned();
    }
    let mut out = String::with_capacity(stored.len() * 3);
    for c in stored.chars() {
        match c as u32 {
            code @ 1..=31 => out.push_str(FRAGMENTS[code as usize - 1]),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn common_browsers_shrink_to_a_few_bytes() {
        let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
        let safari = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
        for (ua, at_most) in [(chrome, 9), (firefox, 15), (safari, 24)] {
            let short = encode(ua);
            assert!(short.len() <= at_most, "{ua}: {} bytes", short.len());
            assert_eq!(decode(&short), ua);
        }
    }

    #[test]
    fn values_with_control_bytes_are_kept_literally() {
        for ua in ["a\u{1}b", "\0", "Chrome/\u{7}"] {
            assert_eq!(decode(&encode(ua)), ua);
        }
        assert_eq!(encode(""), "");
    }

    proptest! {
        #[test]
        fn every_value_round_trips(ua in "\\PC{0,200}|[ -~\u{1}-\u{1f}]{0,80}") {
            prop_assert_eq!(decode(&encode(&ua)), ua);
        }

        #[test]
        fn fragments_round_trip_in_any_mix(parts in proptest::collection::vec(0usize..31, 0..12), glue in "[a-z0-9 ./;()]{0,3}") {
            let ua: String = parts.iter().map(|&i| format!("{}{glue}", FRAGMENTS[i])).collect();
            prop_assert_eq!(decode(&encode(&ua)), ua.clone());
            prop_assert!(encode(&ua).len() <= ua.len());
        }
    }
}
