//! The OpenAPI document describes routes that exist, on the listener it says.

use crate::helpers::*;
use serde_json::Value;

/// The document the public listener serves.
async fn openapi(app: &TestApp) -> Value {
    app.public_json("/openapi.json").await
}

#[tokio::test]
async fn every_documented_operation_exists_on_its_listener() {
    let redis = RedisServer::shared();
    let app = spawn_app(&redis).await;
    let doc = openapi(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 25);
    for (path, ops) in paths {
        let concrete = path
            .replace("{user_id}", "alice")
            .replace("{id}", "v1_eu_abcd_AAAAAAAAAAAAAAAAAAAAAA");
        let admin = path.starts_with("/admin") || path == "/metrics";
        let base = if admin { &app.admin } else { &app.public };
        for method in ops.as_object().unwrap().keys() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = app
                .client
                .request(method.clone(), format!("{base}{concrete}"))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            assert_ne!(status, 405, "{method} {path}: documented but not routed");
            assert!(
                !body.contains("no such endpoint"),
                "{method} {path}: documented but missing"
            );
        }
    }
}

#[tokio::test]
async fn every_405_names_the_documented_methods_in_allow() {
    let redis = RedisServer::shared();
    let app = spawn_app(&redis).await;
    let doc = openapi(&app).await;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{user_id}", "alice")
            .replace("{id}", "v1_eu_abcd_AAAAAAAAAAAAAAAAAAAAAA");
        let admin = path.starts_with("/admin") || path == "/metrics";
        let base = if admin { &app.admin } else { &app.public };
        let mut documented: Vec<String> = ops
            .as_object()
            .unwrap()
            .keys()
            .map(|m| m.to_uppercase())
            .collect();
        documented.sort();
        let response = app
            .client
            .patch(format!("{base}{concrete}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "PATCH {path}");
        let allow = response
            .headers()
            .get("allow")
            .unwrap_or_else(|| panic!("PATCH {path}: 405 without Allow"))
            .to_str()
            .unwrap()
            .to_owned();
        let mut allowed: Vec<String> = allow.split(',').map(|m| m.trim().to_owned()).collect();
        allowed.sort();
        assert_eq!(allowed, documented, "{path}: Allow {allow}");
        assert_eq!(error_code(response).await.1, "method_not_allowed");
    }
}

#[tokio::test]
async fn every_route_is_documented_with_exactly_its_methods() {
    let redis = RedisServer::shared();
    let app = spawn_app(&redis).await;
    let doc = openapi(&app).await;
    let paths = doc["paths"].as_object().unwrap();
    let routes = tessera::http::fallback::registered_routes();
    assert!(routes.len() >= 25, "{routes:?}");
    for (path, allow) in routes {
        let ops = paths
            .get(&path)
            .unwrap_or_else(|| panic!("{path} is routed but not documented"));
        let mut documented: Vec<String> = ops
            .as_object()
            .unwrap()
            .keys()
            .map(|m| m.to_uppercase())
            .collect();
        documented.sort();
        let mut routed: Vec<String> = allow.split(", ").map(str::to_owned).collect();
        routed.sort();
        assert_eq!(routed, documented, "{path}");
    }
}

/// Every operation lists the statuses it answers, never a catch-all `default`; every error
/// status has the `{"error", "message"}` body. And the answers schemathesis found undocumented
/// (scripts/contract) are each sent again here: 401 from login, MFA and refresh, 409 from a
/// rejected session limit.
#[tokio::test]
async fn every_operation_lists_its_statuses_and_these_answers_are_among_them() {
    let (_redis, app) = app_with_users(|s| {
        s.max_sessions_per_user = 1;
        s.on_session_limit = tessera::session::policy::OnLimit::Reject;
    })
    .await;
    let doc = openapi(&app).await;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            assert!(!responses.contains_key("default"), "{method} {path}");
            assert!(!responses.contains_key("500"), "{method} {path}");
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    let reference = response["$ref"].as_str().unwrap_or_default();
                    let target = reference.rsplit('/').next().unwrap_or_default();
                    let schema = &doc["components"]["responses"][target]["content"]
                        ["application/json"]["schema"]["$ref"];
                    assert_eq!(
                        schema, "#/components/schemas/Error",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
    let documented = |path: &str, method: &str, status: u16| {
        doc["paths"][path][method]["responses"]
            .get(status.to_string())
            .is_some()
    };
    let answers = [
        ("/v1/login", app.login("alice", "wrong").await),
        (
            "/v1/login/mfa",
            app.login_mfa("not-a-ticket", "123456").await,
        ),
        ("/v1/token/refresh", app.refresh("tsr_r_bogus").await),
    ];
    for (path, response) in answers {
        let status = response.status().as_u16();
        assert_eq!(status, 401, "{path}");
        assert!(documented(path, "post", status), "{path} {status}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"].is_string() && body["message"].is_string());
    }
    // The limit rejects a second session: 409, documented on both ways in.
    let first = app.login("alice", crate::users::ALICE_PW).await;
    assert_eq!(first.status(), 200);
    let second = app.login("alice", crate::users::ALICE_PW).await;
    assert_eq!(second.status(), 409);
    assert!(documented("/v1/login", "post", 409));
    let admin = app
        .admin_post(
            "/admin/sessions",
            &serde_json::json!({"user_id": "u-alice", "acr": "pwd"}),
        )
        .await;
    assert_eq!(admin.status(), 409);
    assert!(documented("/admin/sessions", "post", 409));
}
