//! Where each region's sessions live: `regions` (a list of names on the one `redis_url`, or a
//! table with a Redis per region) and `TESSERA_REGION_REDIS`.

use crate::session::Region;
use crate::store::connection::Topology;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `regions` in the file: `regions = ["eu", "us"]` (every region on `redis_url`), or
/// `[regions.eu] redis_url = "…"` / `cluster = true` (a Redis or a Redis Cluster per region).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum RegionsSetting {
    Names(Vec<Region>),
    Table(BTreeMap<Region, RegionRedis>),
}

impl Default for RegionsSetting {
    fn default() -> Self {
        Self::Names(Vec::new())
    }
}

/// One region's Redis.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RegionRedis {
    /// `redis://`, `rediss://`, `redis+cluster://h:p,h:p`; absent: the top-level `redis_url`.
    pub redis_url: Option<String>,
    /// The URL lists the seed nodes of a Redis Cluster (same as the `+cluster` scheme).
    pub cluster: bool,
}

/// A region and the Redis that holds its sessions, as a node connects to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionTarget {
    pub region: Region,
    pub url: String,
    pub cluster: bool,
}

/// Reads `TESSERA_REGION_REDIS=eu=redis://a:1,us=redis+cluster://b:1,c:1`. A comma starts a
/// new region only when what follows is `<region>=<scheme>://`; otherwise it continues the
/// previous URL (the node list of a cluster).
pub fn parse_region_redis(raw: &str) -> Result<Vec<(Region, String)>, String> {
    let mut out: Vec<(Region, String)> = Vec::new();
    let redact = crate::store::connection::redact_url;
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((name, url)) = part.split_once('=') {
            if url.contains("://") && !name.contains("://") && Region::parse(name).is_err() {
                return Err(format!(
                    "'{name}' is not a region name (1-32 characters of a-z, 0-9 and '-')"
                ));
            }
        }
        let named = part
            .split_once('=')
            .filter(|(name, url)| url.contains("://") && Region::parse(name).is_ok());
        match (named, out.last_mut()) {
            (Some((name, url)), _) => {
                let region = Region::parse(name).map_err(|e| e.to_string())?;
                if out.iter().any(|(r, _)| *r == region) {
                    return Err(format!("names region '{name}' twice"));
                }
                out.push((region, url.to_owned()));
            }
            (None, Some((_, url))) => {
                url.push(',');
                url.push_str(part);
            }
            (None, None) => {
                return Err(format!(
                    "'{}' is not <region>=<redis url> (e.g. eu=redis://10.0.0.5:6379)",
                    redact(part)
                ))
            }
        }
    }
    Ok(out)
}

/// Every configured region with its Redis, the home region first, the others by name.
/// `base_url`/`base_cluster` is where a region without its own Redis lives.
pub fn targets(
    home: &Region,
    regions: &RegionsSetting,
    region_redis: &str,
    base_url: &str,
    base_cluster: bool,
) -> Result<Vec<RegionTarget>, (&'static str, String)> {
    let mut table: BTreeMap<Region, (Option<String>, bool)> = BTreeMap::new();
    match regions {
        RegionsSetting::Names(names) => {
            for name in names {
                table.insert(name.clone(), (None, false));
            }
        }
        RegionsSetting::Table(entries) => {
            for (name, entry) in entries {
                table.insert(name.clone(), (entry.redis_url.clone(), entry.cluster));
            }
        }
    }
    let overrides = parse_region_redis(region_redis).map_err(|e| ("region_redis", e))?;
    for (region, url) in overrides {
        let slot = table.entry(region).or_insert((None, false));
        slot.0 = Some(url);
    }
    if table.is_empty() {
        table.insert(home.clone(), (None, false));
    }
    if !table.contains_key(home) {
        return Err((
            "regions",
            format!("must include the home region `region` ('{home}')"),
        ));
    }
    let mut out = Vec::with_capacity(table.len());
    for (region, (url, cluster)) in table {
        let (url, cluster) = match url {
            Some(url) => (url, cluster),
            None => (base_url.to_owned(), base_cluster || cluster),
        };
        let field = if url == base_url {
            "redis_url"
        } else {
            "regions"
        };
        Topology::parse(&url, cluster).map_err(|e| {
            (
                field,
                format!(
                    "region '{region}': {} {e}",
                    crate::store::connection::redact_url(&url)
                ),
            )
        })?;
        out.push(RegionTarget {
            region,
            url,
            cluster,
        });
    }
    out.sort_by_key(|t| (t.region != *home, t.region.clone()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(name: &str) -> Region {
        Region::parse(name).unwrap()
    }

    #[test]
    fn the_environment_list_keeps_cluster_node_lists_whole() {
        let parsed = parse_region_redis(
            "eu=redis://:p=w@a:1, us=redis+cluster://b:1,c:2,d:3,ap=rediss://e:4",
        )
        .unwrap();
        assert_eq!(
            parsed,
            vec![
                (region("eu"), "redis://:p=w@a:1".to_owned()),
                (region("us"), "redis+cluster://b:1,c:2,d:3".to_owned()),
                (region("ap"), "rediss://e:4".to_owned()),
            ]
        );
        assert!(parse_region_redis("redis://a:1")
            .unwrap_err()
            .contains("<region>="));
        let err = parse_region_redis("redis://:s3cret@h:1").unwrap_err();
        assert!(!err.contains("s3cret"), "{err}");
        let err = parse_region_redis("eu=redis://a:1,US=redis://:s3cret@b:1").unwrap_err();
        assert!(
            err.contains("'US' is not a region name") && !err.contains("s3cret"),
            "{err}"
        );
        assert!(parse_region_redis("eu=redis://a,eu=redis://b")
            .unwrap_err()
            .contains("twice"));
        assert_eq!(parse_region_redis("").unwrap(), vec![]);
    }

    #[test]
    fn home_first_then_by_name_and_unset_urls_use_redis_url() {
        let table = RegionsSetting::Table(BTreeMap::from([
            (region("eu"), RegionRedis::default()),
            (
                region("us"),
                RegionRedis {
                    redis_url: Some("redis://u:1,u:2".into()),
                    cluster: true,
                },
            ),
            (region("ap"), RegionRedis::default()),
        ]));
        let t = targets(&region("us"), &table, "", "redis://base:6379", false).unwrap();
        let names: Vec<_> = t.iter().map(|t| t.region.as_str()).collect();
        assert_eq!(names, ["us", "ap", "eu"]);
        assert!(t[0].cluster);
        assert_eq!(t[1].url, "redis://base:6379");

        let env = targets(
            &region("eu"),
            &RegionsSetting::default(),
            "eu=redis://e:1,us=redis://u:1",
            "redis://base:6379",
            false,
        )
        .unwrap();
        assert_eq!(env.len(), 2);
        assert_eq!(env[0].url, "redis://e:1");

        let alone = targets(
            &region("eu"),
            &RegionsSetting::default(),
            "",
            "redis://b:1",
            false,
        )
        .unwrap();
        assert_eq!(alone.len(), 1);

        let missing_home = targets(
            &region("eu"),
            &RegionsSetting::Names(vec![region("us")]),
            "",
            "redis://b:1",
            false,
        )
        .unwrap_err();
        assert_eq!(missing_home.0, "regions");
        let bad_url = targets(
            &region("eu"),
            &RegionsSetting::default(),
            "eu=http://x:1",
            "redis://b:1",
            false,
        );
        assert!(bad_url.is_err());
    }
}
