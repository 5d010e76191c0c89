//! `docker-compose.yml` cannot run here (no container engine), so its structure is checked:
//! two regions, one a 3-primary cluster, persistent Redis, one node per region that Tessera's
//! own settings code accepts.

use serde_yaml_ng::Value;
use tessera::store::connection::Topology;

fn compose() -> Value {
    let mut doc: Value = serde_yaml_ng::from_str(include_str!("../../docker-compose.yml")).unwrap();
    doc.apply_merge().unwrap();
    // Merges nested one level down (`environment: {<<: *tessera-env, …}`) too.
    let services = doc["services"].as_mapping_mut().unwrap();
    for (_, service) in services.iter_mut() {
        service.apply_merge().unwrap();
    }
    doc
}

fn command(service: &Value) -> String {
    match &service["command"] {
        Value::Sequence(words) => words
            .iter()
            .map(|w| w.as_str().unwrap())
            .collect::<Vec<_>>()
            .join(" "),
        Value::String(s) => s.clone(),
        other => panic!("unexpected command {other:?}"),
    }
}

fn env<'a>(service: &'a Value, name: &str) -> &'a str {
    service["environment"][name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} missing"))
}

#[test]
fn the_compose_file_describes_two_regions_one_of_them_a_cluster() {
    let doc = compose();
    let services = &doc["services"];

    // Every Redis persists (AOF, fsync every second) and never evicts.
    let redis: Vec<&str> = ["redis-eu", "redis-us-1", "redis-us-2", "redis-us-3"].to_vec();
    for name in &redis {
        let cmd = command(&services[*name]);
        for needed in [
            "--appendonly yes",
            "--appendfsync everysec",
            "--maxmemory-policy noeviction",
            // TLS only, with the ACL file that holds Tessera's least-privilege user.
            "--port 0 --tls-port 6379",
            "--tls-ca-cert-file /tls/ca.crt",
            "--aclfile /tls/users.acl",
        ] {
            assert!(cmd.contains(needed), "{name}: {cmd}");
        }
        assert!(
            services[*name]["volumes"].as_sequence().is_some(),
            "{name} keeps its data in a volume"
        );
    }
    assert!(!command(&services["redis-eu"]).contains("cluster-enabled"));
    for name in &redis[1..] {
        assert!(command(&services[*name]).contains("--cluster-enabled yes"));
    }
    // The three us nodes are joined into one cluster, before any node starts.
    let init = command(&services["redis-us-init"]);
    assert!(
        init.contains(
            "--cluster create redis-us-1:6379 redis-us-2:6379 redis-us-3:6379 --cluster-replicas 0"
        ),
        "{init}"
    );

    // The certificates and the ACL file are made once, from the documented rules.
    let tls = command(&services["redis-tls"]);
    assert!(tls.contains("cat /acl/tessera-acl.txt"), "{tls}");
    // No password-less default user (anyone on the network could FLUSHALL or read sessions).
    assert!(tls.contains("user default off"), "{tls}");
    assert!(!tls.contains("nopass"), "{tls}");
    assert!(
        tls.contains("subjectAltName=DNS:localhost,DNS:redis-eu,DNS:redis-us-1"),
        "{tls}"
    );
    assert!(services["redis-tls"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|v| v.as_str() == Some("./deploy/redis/tessera-acl.txt:/acl/tessera-acl.txt:ro")));

    // One node per region, both reading the same regions, prefix and KEK.
    let (eu, us) = (&services["tessera-eu"], &services["tessera-us"]);
    assert_eq!(env(eu, "TESSERA_REGION"), "eu");
    assert_eq!(env(us, "TESSERA_REGION"), "us");
    for key in [
        "TESSERA_REGION_REDIS",
        "TESSERA_KEY_PREFIX",
        "TESSERA_KEK",
        "TESSERA_ADMIN_API_KEY",
        "TESSERA_REDIS_CA_FILE",
    ] {
        assert_eq!(env(eu, key), env(us, key), "{key}");
    }
    for node in [eu, us] {
        assert_eq!(
            node["depends_on"]["redis-us-init"]["condition"].as_str(),
            Some("service_completed_successfully")
        );
        let ports: Vec<&str> = node["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        assert!(
            ports
                .iter()
                .any(|p| p.starts_with("127.0.0.1:") && p.ends_with(":8081")),
            "the admin port stays on loopback: {ports:?}"
        );
    }

    // Tessera's own settings code reads the regions as meant: eu one server, us the cluster.
    for (node, home) in [(eu, "eu"), (us, "us")] {
        let settings = tessera::Settings {
            region: tessera::session::Region::parse(home).unwrap(),
            region_redis: env(node, "TESSERA_REGION_REDIS")
                .replace("${TESSERA_REDIS_PASSWORD}", "pw"),
            redis_url: env(node, "TESSERA_REDIS_URL").replace(
                "${TESSERA_REDIS_PASSWORD:?set TESSERA_REDIS_PASSWORD}",
                "pw",
            ),
            key_prefix: env(node, "TESSERA_KEY_PREFIX").to_owned(),
            ..tessera::Settings::default()
        };
        settings.validate().unwrap();
        let targets = settings.region_targets().unwrap();
        assert_eq!(targets[0].region.as_str(), home, "home first");
        let topology = |region: &str| {
            let t = targets
                .iter()
                .find(|t| t.region.as_str() == region)
                .unwrap();
            Topology::parse(&t.url, t.cluster).unwrap()
        };
        assert_eq!(
            topology("eu"),
            Topology::Single("rediss://tessera:pw@redis-eu:6379".into())
        );
        assert_eq!(
            topology("us"),
            Topology::Cluster(vec![
                "rediss://tessera:pw@redis-us-1:6379".into(),
                "rediss://tessera:pw@redis-us-2:6379".into(),
                "rediss://tessera:pw@redis-us-3:6379".into(),
            ])
        );
    }
}
