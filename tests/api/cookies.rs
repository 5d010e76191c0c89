//! Cookie topology: the default `__Host-` cookie, the opt-in `__Secure-` + `Domain` mode for
//! sibling subdomains, and CORS for a single-page app on another origin of the site.

use crate::helpers::*;
use crate::users::*;
use serde_json::Value;

async fn login(app: &TestApp) -> (String, String, String) {
    login_from(app, &app.public).await
}

/// alice's password login, sent by a page of `origin`.
async fn login_from(app: &TestApp, origin: &str) -> (String, String, String) {
    let response = app
        .client
        .post(format!("{}/v1/login", app.public))
        .header("origin", origin)
        .json(&serde_json::json!({ "username": "alice", "password": ALICE_PW }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let set = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    let (pair, _) = set.split_once(';').unwrap();
    let (name, value) = pair.split_once('=').unwrap();
    (
        format!("{set}|{name}"),
        value.to_owned(),
        body["csrf_token"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn the_domain_mode_sets_a_secure_cookie_for_the_domain_and_reads_only_that_name() {
    let (_redis, app) = app_with_users(|s| s.cookie_domain = Some("example.test".into())).await;
    let (set, token, csrf) = login(&app).await;
    assert!(set.starts_with("__Secure-tessera="), "{set}");
    for part in [
        "Domain=example.test",
        "Secure",
        "HttpOnly",
        "SameSite=Lax",
        "Path=/",
    ] {
        assert!(set.contains(part), "{set} lacks {part}");
    }
    let with = |name: &str| {
        app.client
            .get(format!("{}/v1/session", app.public))
            .header("cookie", format!("{name}={token}"))
            .send()
    };
    assert_eq!(with("__Secure-tessera").await.unwrap().status(), 200);
    assert_eq!(
        with("__Host-tessera").await.unwrap().status(),
        401,
        "only the configured name counts"
    );
    let logout = app
        .client
        .post(format!("{}/v1/logout", app.public))
        .header("cookie", format!("__Secure-tessera={token}"))
        .header("origin", &app.public)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 200);
    let removal = logout.headers()["set-cookie"].to_str().unwrap();
    assert!(
        removal.starts_with("__Secure-tessera=")
            && removal.contains("Domain=example.test")
            && removal.contains("Max-Age=0"),
        "{removal}"
    );
}

#[test]
fn a_cookie_domain_that_is_not_a_domain_name_is_refused_at_start() {
    for bad in [
        "https://example.com",
        ".example.com",
        "localhost",
        "example.com:443",
        "ex ample.com",
    ] {
        let settings = tessera::Settings {
            cookie_domain: Some(bad.into()),
            ..Default::default()
        };
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.contains("cookie_domain"), "{bad}: {err}");
    }
}

#[tokio::test]
async fn an_allowed_origin_gets_cors_with_credentials_and_others_get_nothing() {
    let spa = "https://app.example.test";
    let (_redis, app) = app_with_users(|s| s.allowed_origins = vec![spa.into()]).await;
    let preflight = |origin: &str| {
        app.client
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/v1/logout", app.public),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "x-csrf-token")
            .send()
    };
    let allowed = preflight(spa).await.unwrap();
    assert_eq!(allowed.status(), 204);
    let h = allowed.headers();
    assert_eq!(h["access-control-allow-origin"], spa);
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert!(h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("x-csrf-token"));
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());

    // Listing an app's origin never locks out pages on Tessera's own host.
    login(&app).await;
    // The admin API gets no CORS, whatever the origin.
    let admin = app
        .client
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/admin/sessions", app.admin),
        )
        .header("origin", spa)
        .header("access-control-request-method", "DELETE")
        .send()
        .await
        .unwrap();
    assert!(admin.headers().get("access-control-allow-origin").is_none());
    let (_, token, csrf) = login_from(&app, spa).await;
    let read = app
        .client
        .get(format!("{}/v1/session", app.public))
        .header("cookie", format!("__Host-tessera={token}"))
        .header("origin", spa)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(read.headers()["access-control-allow-origin"], spa);
    assert!(read
        .headers()
        .get_all("vary")
        .iter()
        .any(|v| v.to_str().unwrap().contains("Origin")));
    // From the allowed origin, with the CSRF token: the unsafe request passes the origin check.
    let logout = app
        .client
        .post(format!("{}/v1/logout", app.public))
        .header("cookie", format!("__Host-tessera={token}"))
        .header("origin", spa)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 200);
    // From another origin: refused, and no CORS header lets its page read why.
    let (_, token, csrf) = login_from(&app, spa).await;
    let foreign = app
        .client
        .post(format!("{}/v1/logout", app.public))
        .header("cookie", format!("__Host-tessera={token}"))
        .header("origin", "https://evil.example")
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    assert!(foreign
        .headers()
        .get("access-control-allow-origin")
        .is_none());
}
