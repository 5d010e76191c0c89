//! Every input from the network is hostile: each gets a clear JSON error, never a 500 or an echo.

use crate::helpers::*;

async fn session_with_cookie_header(app: &TestApp, cookie: &str) -> reqwest::Response {
    app.client
        .get(format!("{}/v1/session", app.public))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn malformed_forged_and_truncated_credentials_get_401_without_echo() {
    let redis = RedisServer::shared();
    let app = spawn_app(&redis).await;
    let real = app.create_session("alice").await.token;
    let (head, secret) = real.rsplit_once('.').unwrap();
    let id = head.trim_start_matches("tsr_s_");
    let forged_secret = format!("{head}.{}", "A".repeat(43));
    let truncated = real[..real.len() - 5].to_owned();
    let refresh_type = real.replacen("tsr_s_", "tsr_r_", 1);
    let unknown_region = real.replacen("_eu_", "_ap_", 1);
    let unknown_version = real.replacen("tsr_s_v1_", "tsr_s_v9_", 1);
    let wrong_tag = {
        let parts: Vec<&str> = id.splitn(4, '_').collect();
        format!(
            "tsr_s_{}_{}_{}_{}.{secret}",
            parts[0], parts[1], "0000", parts[3]
        )
    };
    let huge = format!("tsr_s_{}", "A".repeat(4000));
    let cases = [
        "garbage".to_owned(),
        String::new(),
        forged_secret,
        truncated,
        refresh_type,
        unknown_region,
        unknown_version,
        wrong_tag,
        huge,
        format!("{real}x"),
        format!("\"{real}\""),
        "tsr_s_..".into(),
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.".into(),
    ];
    for case in &cases {
        for response in [
            session_with_cookie_header(&app, &format!("__Host-tessera={case}")).await,
            app.get_session_with_bearer(case).await,
        ] {
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            assert!(matches!(status, 400 | 401), "{case}: {status} {text}");
            let body: serde_json::Value = serde_json::from_str(&text).expect("JSON error body");
            assert!(
                body["error"].is_string() && body["message"].is_string(),
                "{text}"
            );
            assert!(!text.contains(secret), "secret echoed for {case}");
            if case.len() > 8 {
                assert!(!text.contains(case.as_str()), "credential echoed: {text}");
            }
        }
    }
    // The real one still works: nothing above harmed it.
    assert_eq!(app.get_session_with_bearer(&real).await.status(), 200);
}

#[tokio::test]
async fn cookie_names_are_matched_exactly_and_never_twice() {
    let redis = RedisServer::shared();
    let app = spawn_app(&redis).await;
    let real = app.create_session("alice").await.token;

    let encoded = session_with_cookie_header(&app, &format!("%5F%5FHost-tessera={real}")).await;
    assert_eq!(error_code(encoded).await, (401, "no_session".into()));

    let two = session_with_cookie_header(
        &app,
        &format!("__Host-tessera={real}; __Host-tessera={real}"),
    )
    .await;
    assert_eq!(
        error_code(two).await,
        (400, "duplicate_session_cookie".into())
    );

    let among_others =
        session_with_cookie_header(&app, &format!("theme=dark; __Host-tessera={real}; lang=en"))
            .await;
    assert_eq!(among_others.status(), 200);
}

#[tokio::test]
async fn credentials_in_the_query_string_are_ignored() {
    let redis = RedisServer::shared();
    let app = spawn_app(&redis).await;
    let real = app.create_session("alice").await.token;
    for param in ["session", "token", "access_token", "__Host-tessera"] {
        let response = app
            .client
            .get(format!("{}/v1/session?{param}={real}", app.public))
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(response).await, (401, "no_session".into()));
    }
}

#[tokio::test]
async fn bad_bodies_get_400_413_and_415() {
    let redis = RedisServer::shared();
    let app = spawn_app(&redis).await;
    let url = format!("{}/admin/sessions", app.admin);
    let post = |body: String, content_type: &'static str| {
        app.client
            .post(&url)
            .bearer_auth(ADMIN_KEY)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let post = |body: String, content_type: &'static str| {
        let fut = post(body, content_type);
        async move { fut.await.unwrap() }
    };
    let cases = [
        (
            post("{not json".into(), "application/json").await,
            400,
            "invalid_json",
        ),
        (
            post(r#"{"user_id": 5}"#.into(), "application/json").await,
            400,
            "invalid_request",
        ),
        (
            post(r#"{"user_id": "a b"}"#.into(), "application/json").await,
            400,
            "invalid_user_id",
        ),
        (
            post(r#"{"user_id": "a", "extra": 1}"#.into(), "application/json").await,
            400,
            "invalid_request",
        ),
        (
            post(
                r#"{"user_id": "a", "ip": "not-an-ip"}"#.into(),
                "application/json",
            )
            .await,
            400,
            "invalid_request",
        ),
        (
            post(
                r#"{"user_id": "a", "acr": "superuser"}"#.into(),
                "application/json",
            )
            .await,
            400,
            "invalid_request",
        ),
        (
            post(r#"{"user_id": "a"}"#.into(), "text/plain").await,
            415,
            "unsupported_media_type",
        ),
        (
            post(
                format!(
                    r#"{{"user_id": "a", "user_agent": "{}"}}"#,
                    "x".repeat(40_000)
                ),
                "application/json",
            )
            .await,
            413,
            "payload_too_large",
        ),
    ];
    for (response, status, code) in cases {
        assert_eq!(error_code(response).await, (status, code.to_owned()));
    }
    let secret_typed = post(
        r#"{"user_id": ["hunter2-secret"]}"#.into(),
        "application/json",
    )
    .await;
    let text = secret_typed.text().await.unwrap();
    assert!(!text.contains("hunter2"), "values are not echoed: {text}");

    let real = app.create_session("alice").await.token;
    let token_garbage = app
        .client
        .post(format!("{}/v1/token", app.public))
        .bearer_auth(&real)
        .header("content-type", "application/json")
        .body("[[[")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(token_garbage).await,
        (400, "invalid_json".into())
    );
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_in_json() {
    let redis = RedisServer::shared();
    let app = spawn_app(&redis).await;
    let missing = app
        .client
        .get(format!("{}/nope", app.public))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(missing).await, (404, "not_found".into()));
    let wrong_method = app
        .client
        .delete(format!("{}/v1/session", app.public))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(wrong_method).await,
        (405, "method_not_allowed".into())
    );
}

#[tokio::test]
async fn oversized_headers_are_refused_by_the_server_itself() {
    let redis = RedisServer::shared();
    let app = spawn_app(&redis).await;
    let response = app
        .client
        .get(format!("{}/v1/session", app.public))
        .header("cookie", format!("__Host-tessera={}", "A".repeat(100_000)))
        .send()
        .await;
    match response {
        Ok(r) => assert!(
            matches!(r.status().as_u16(), 400 | 401 | 431),
            "{}",
            r.status()
        ),
        Err(e) => assert!(e.is_request() || e.is_connect() || e.is_body(), "{e}"),
    }
    // And the server is still fine.
    assert_eq!(
        app.client
            .get(format!("{}/healthz", app.public))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn admin_path_user_ids_are_validated() {
    let redis = RedisServer::shared();
    let app = spawn_app(&redis).await;
    let response = app.admin_get("/admin/users/a%7Bb%7D/sessions").await;
    assert_eq!(error_code(response).await, (400, "invalid_user_id".into()));
}
