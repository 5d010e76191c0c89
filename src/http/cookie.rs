//! The `Set-Cookie` headers Tessera sends.
//!
//! Why these attributes: `HttpOnly` keeps the session out of reach of page scripts; `Secure` and
//! the `__Host-` prefix pin it to HTTPS, this exact host and `Path=/`; `SameSite=Lax` stops it
//! riding along on cross-site subrequests and POSTs while top-level navigation still works.
//! `Max-Age` never outlives the session's absolute deadline.
//!
//! With `cookie_domain` (opt-in), the cookie is `__Secure-tessera` with that `Domain`: sent to
//! every host under the domain, so apps on sibling subdomains share the session. The trade-off:
//! any host under that domain (a forgotten staging host, a user-content host) receives the
//! session credential and can set a cookie of the same name that shadows it; `__Host-` rules
//! both out. Use it only when every host under the domain is yours and trusted.

use cookie::{Cookie, SameSite};

/// The session cookie's name in the default mode: this exact host only.
pub const HOST_COOKIE: &str = "__Host-tessera";
/// Its name with `cookie_domain`.
pub const DOMAIN_COOKIE: &str = "__Secure-tessera";

/// How this deployment names and scopes its session cookie.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionCookie {
    domain: Option<String>,
}

impl SessionCookie {
    pub fn new(domain: Option<String>) -> Self {
        Self { domain }
    }

    pub fn name(&self) -> &'static str {
        if self.domain.is_some() {
            DOMAIN_COOKIE
        } else {
            HOST_COOKIE
        }
    }

    fn build(&self, value: String) -> cookie::CookieBuilder<'static> {
        let builder = Cookie::build((self.name(), value))
            .http_only(true)
            .secure(true)
            .same_site(SameSite::Lax)
            .path("/");
        match &self.domain {
            Some(domain) => builder.domain(domain.clone()),
            None => builder,
        }
    }

    pub fn set(&self, value: String, max_age_secs: i64) -> Cookie<'static> {
        self.build(value)
            .max_age(cookie::time::Duration::seconds(max_age_secs.max(0)))
            .build()
    }

    /// Expires the cookie with the same attributes it was set with (browsers match on them).
    pub fn removal(&self) -> Cookie<'static> {
        let mut c = self.build(String::new()).build();
        c.make_removal();
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_cookie_has_every_protective_attribute() {
        let text = SessionCookie::default()
            .set("tsr_s_x.y".into(), 60)
            .to_string();
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
        let text = SessionCookie::default().removal().to_string();
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

    #[test]
    fn the_domain_mode_is_a_secure_cookie_for_every_host_under_the_domain() {
        let jar = SessionCookie::new(Some("example.com".into()));
        let text = jar.set("tsr_s_x.y".into(), 60).to_string();
        for part in [
            "__Secure-tessera=tsr_s_x.y",
            "Domain=example.com",
            "HttpOnly",
            "Secure",
            "SameSite=Lax",
            "Path=/",
        ] {
            assert!(text.contains(part), "{text} lacks {part}");
        }
        let removal = jar.removal().to_string();
        assert!(removal.contains("Domain=example.com") && removal.contains("Max-Age=0"));
    }
}
