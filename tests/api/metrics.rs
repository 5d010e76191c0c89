//! Request metrics: a latency histogram per route template, method and status, whose labels stay
//! as few as the routes whatever paths clients send.

use crate::helpers::*;
use std::collections::BTreeSet;

#[tokio::test]
async fn every_route_label_is_a_template_whatever_the_paths() {
    let redis = RedisServer::shared();
    let app = spawn_app(&redis).await;
    let created = app.create_session("metrics-user").await;
    let mut sent = Vec::new();
    for _ in 0..25 {
        let user = random_name("user-");
        let session = random_name("v1_eu_ab12_");
        let junk = random_name("junk-");
        sent.extend([user.clone(), session.clone(), junk.clone()]);
        app.admin_get(&format!("/admin/users/{user}/sessions"))
            .await;
        app.client
            .delete(format!("{}/v1/sessions/{session}", app.public))
            .bearer_auth(&created.token)
            .send()
            .await
            .unwrap();
        app.client
            .get(format!("{}/{junk}?token={junk}", app.public))
            .send()
            .await
            .unwrap();
    }
    app.get_session_with_cookie(&created.token).await;
    let text = app.admin_get("/metrics").await.text().await.unwrap();

    let mut routes = BTreeSet::new();
    let mut statuses = BTreeSet::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("tessera_http_request_duration_seconds_bucket{"))
    {
        let label = |name: &str| {
            let start = line.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
            line[start..][..line[start..].find('"').unwrap()].to_owned()
        };
        routes.insert(label("route"));
        statuses.insert(label("status"));
    }
    for value in &sent {
        assert!(!text.contains(value.as_str()), "{value} became a label");
    }
    for route in [
        "/admin/users/{user_id}/sessions",
        "/v1/sessions/{id}",
        "/v1/session",
        "(no route)",
    ] {
        assert!(routes.contains(route), "{route} missing from {routes:?}");
    }
    // 75 distinct paths, a handful of series.
    assert!(routes.len() <= 8, "{routes:?}");
    assert!(statuses.iter().all(|s| s.len() == 3), "{statuses:?}");
    assert!(text.contains("# TYPE tessera_http_request_duration_seconds histogram"));
}
