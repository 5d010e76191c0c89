//! Fuzz harnesses for the parsers that read hostile input: the `fuzz/` targets call these, and
//! `tests/api/fuzz_corpus.rs` runs every committed seed and regression input through them in
//! the ordinary suite. Each harness panics only when a property of the parser breaks (a panic
//! of the parser itself is a finding too) and answers whether the parser accepted the input,
//! so the suite can check that the seeds reach both sides; nothing here touches Redis or the
//! network.

use crate::session::{RefreshToken, Region, SessionToken};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use std::net::IpAddr;

fn regions() -> [Region; 2] {
    [
        Region::parse("eu").expect("a valid region"),
        Region::parse("us").expect("a valid region"),
    ]
}

/// Session and refresh credentials (`tsr_s_…`, `tsr_r_…`): whatever parses prints back as the
/// same text, and a session token never parses as a refresh token or the other way round.
pub fn credentials(data: &[u8]) -> bool {
    let Ok(raw) = std::str::from_utf8(data) else {
        return false;
    };
    let known = regions();
    let session = SessionToken::parse(raw, &known);
    let refresh = RefreshToken::parse(raw, &known);
    assert!(
        session.is_err() || refresh.is_err(),
        "one text parsed as both kinds"
    );
    let accepted = session.is_ok() || refresh.is_ok();
    if let Ok(token) = session {
        assert_eq!(token.expose(), raw, "a session token does not round-trip");
    }
    if let Ok(token) = refresh {
        assert_eq!(token.expose(), raw, "a refresh token does not round-trip");
    }
    accepted
}

/// The raw `Cookie` header: the session cookie found is the exact value of the one cookie of
/// that exact name, and a header with two of them is refused.
pub fn cookie_header(data: &[u8]) -> bool {
    use actix_web::http::header::{HeaderValue, COOKIE};
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return false;
    };
    let req = actix_web::test::TestRequest::default()
        .insert_header((COOKIE, value))
        .to_http_request();
    let name = crate::http::credential::COOKIE_NAME;
    let found = crate::http::credential::session_cookie(&req, name);
    // The specification, written independently: the values of the pairs whose name is exactly
    // the session cookie's (bytes, trimmed), whatever else the header holds.
    let exact: Vec<&[u8]> = data
        .split(|b| *b == b';')
        .filter_map(|pair| {
            let eq = pair.iter().position(|b| *b == b'=')?;
            (pair[..eq].trim_ascii() == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
        })
        .collect();
    match found {
        Ok(Some(v)) => {
            assert_eq!(exact, [v.as_bytes()], "not the one session cookie's value");
            assert!(v.is_ascii());
            true
        }
        Ok(None) => {
            assert!(exact.is_empty(), "a session cookie was overlooked");
            false
        }
        Err(_) => {
            assert!(
                exact.len() > 1 || exact.iter().any(|v| !v.is_ascii()),
                "refused a single, textual session cookie"
            );
            false
        }
    }
}

/// An ES256 key made once per process, signing as Tessera signs, for the signed-JWT harness.
struct FuzzKey {
    signer: crate::token::keys::Signer,
    keys: crate::verify::Keys,
}

fn fuzz_key() -> &'static FuzzKey {
    use crate::token::{KeyMaterial, SigningAlg};
    static KEY: std::sync::OnceLock<FuzzKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let key = KeyMaterial::generate(SigningAlg::Es256).expect("key generation");
        let mut jwk = key.public_jwk();
        jwk["kid"] = "fuzz".into();
        FuzzKey {
            signer: key.signer().expect("a signer"),
            keys: crate::verify::Keys::from_jwks(&serde_json::json!({ "keys": [jwk] })),
        }
    })
}

fn rules() -> crate::token::Validation {
    crate::token::Validation {
        issuer: "https://auth.fuzz".into(),
        audiences: vec!["api".into()],
        leeway_secs: 5,
        max_lifetime_secs: 900,
    }
}

/// JWT header and claims validation. The first byte picks the mode: even, the rest is a whole
/// token as received; odd, the rest is `<header JSON> 0x00 <claims JSON>`, signed here with a
/// key the validator trusts, so the fuzzer reaches every header and claims rule behind the
/// signature. Whatever passes must carry Tessera's claim shapes.
pub fn jwt(data: &[u8]) -> bool {
    let Some((&mode, rest)) = data.split_first() else {
        return false;
    };
    let key = fuzz_key();
    let token = if mode % 2 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        let (header, claims) = match rest.iter().position(|b| *b == 0) {
            Some(at) => (&rest[..at], &rest[at + 1..]),
            None => (rest, &[][..]),
        };
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let signature = key.signer.sign(input.as_bytes()).expect("signing");
        format!("{input}.{signature}")
    };
    let _ = crate::token::cache::header_kid(&token);
    let now = 1_800_000_000;
    let Ok(claims) =
        crate::token::validate::validate_access_token(&token, &key.keys, &rules(), now)
    else {
        return false;
    };
    {
        assert_eq!(claims.iss, "https://auth.fuzz");
        let aud = serde_json::to_value(&claims.aud).expect("serializable");
        assert!(aud == "api" || aud.as_array().is_some_and(|a| a.iter().any(|v| v == "api")));
        assert!(!claims.sub.is_empty() && !claims.sid.is_empty());
        for text in [&claims.sub, &claims.sid] {
            assert!(
                !text.contains(['\r', '\n']),
                "a claim that reaches headers holds CR/LF"
            );
        }
    }
    true
}

/// The users file: never a panic, and whatever loads has unique ids and usernames.
pub fn users_file(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(directory) = crate::authn::Directory::parse(text) else {
        return false;
    };
    let ids: std::collections::HashSet<&str> = directory.users().map(|u| u.id.as_str()).collect();
    assert_eq!(ids.len(), directory.len(), "an id appears twice");
    true
}

/// The `X-Forwarded-For` chain. The first byte picks the peer and which networks are trusted;
/// the rest is the header. The answer is the peer or one of the chain's hops, and an untrusted
/// peer is always its own answer.
pub fn forwarded_for(data: &[u8]) -> bool {
    let Some((&pick, rest)) = data.split_first() else {
        return false;
    };
    let Ok(xff) = std::str::from_utf8(rest) else {
        return false;
    };
    let peers: [IpAddr; 4] = [
        [10, 0, 0, 1].into(),
        [203, 0, 113, 9].into(),
        "::1".parse().expect("an address"),
        "2001:db8::7".parse().expect("an address"),
    ];
    let nets: [&[&str]; 4] = [
        &[],
        &["10.0.0.0/8"],
        &["10.0.0.0/8", "::1/128", "192.168.0.0/16"],
        &["0.0.0.0/0", "::/0"],
    ];
    let peer = peers[usize::from(pick & 3)];
    let trusted: Vec<ipnet::IpNet> = nets[usize::from((pick >> 2) & 3)]
        .iter()
        .map(|n| n.parse().expect("a network"))
        .collect();
    let answer = crate::http::client_ip::resolve(peer, Some(xff), &trusted);
    let Some(answer) = answer else { return false };
    if !trusted.iter().any(|n| n.contains(&peer)) {
        assert_eq!(answer, peer, "an untrusted peer's header was believed");
    }
    let hops: Vec<IpAddr> = xff
        .split(',')
        .filter_map(|h| h.trim().parse().ok())
        .collect();
    assert!(
        answer == peer || hops.contains(&answer),
        "{answer} is neither the peer nor a hop"
    );
    // "Accepted": the chain was believed past the peer.
    answer != peer
}
