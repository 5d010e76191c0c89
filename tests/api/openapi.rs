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
