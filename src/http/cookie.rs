//! The `Set-Cookie` headers Tessera sends.
//!
//! Why these attributes: `HttpOnly` keeps the session out of reach of page scripts; `Secure` and
//! the `__Host-` prefix pin it to HTTPS, this exact host and `Path=/`; `SameSite=Lax` stops it
//! riding along on cross-site subrequests and POSTs while top-level navigation still works.
//! `Max-Age` never outlives the session's absolute deadline.

use super::credential::COOKIE_NAME;
use cookie::{Cookie, SameSite};

pub fn session_cookie(value: String, max_age_secs: i64) -> Cookie<'static> {
    Cookie::build((COOKIE_NAME, value))
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Lax)
        .path("/")
        .max_age(cookie::time::Duration::seconds(max_age_secs.max(0)))
        .build()
}

/// Expires the cookie with the same attributes it was set with (browsers match on them).
pub fn removal_cookie() -> Cookie<'static> {
    let mut c = Cookie::build((COOKIE_NAME, ""))
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Lax)
        .path("/")
        .build();
    c.make_removal();
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_cookie_has_every_protective_attribute() {
        let text = session_cookie("tsr_s_x.y".into(), 60).to_string();
        for part in [
            "__Host-tessera=tsr_s_x.y",
            "HttpOnly",
            "Secure",
            "SameSite=Lax",
            "Path=/",
            "Max-Age=60",
        ] {
            assert!(text.contains(part), "{text} lacks {part}");
        }
        assert!(!text.contains("Domain"));
    }

    #[test]
    fn removal_keeps_the_attributes_and_expires() {
        let text = removal_cookie().to_string();
        for part in [
            "__Host-tessera=",
            "HttpOnly",
            "Secure",
            "SameSite=Lax",
            "Path=/",
            "Max-Age=0",
        ] {
            assert!(text.contains(part), "{text} lacks {part}");
        }
    }
}
