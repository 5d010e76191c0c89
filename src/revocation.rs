//! Pushed revocation: every revocation lands in the region's Redis Stream; every node follows
//! the stream and keeps an in-memory set of revoked session ids and per-user minimum credential
//! versions, so the JWT path checks revocation with no Redis round trip.
//!
//! An entry lives until `revoked_at + max token lifetime + leeway`: after that every token it
//! could concern has expired by itself.

use crate::clock::UnixMillis;
use std::collections::HashMap;

/// One entry of the revocation feed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Revocation {
    /// Every token carrying this `sid` is dead.
    Session { sid: String, until: UnixMillis },
    /// Every token of `user` with `ver` below `min_version` is dead: in `region` (versions are
    /// counted per region), or in every region when `region` is absent. A follower fills in
    /// the region of the feed it read the entry from.
    User {
        user: String,
        min_version: u64,
        until: UnixMillis,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        region: Option<String>,
    },
    /// A node is alive and writing; followers measure staleness from these.
    Heartbeat { at: UnixMillis },
}

/// The in-memory view a node (or an embedded verifier) keeps of the feed.
#[derive(Debug, Default)]
pub struct RevokedSet {
    sessions: HashMap<String, UnixMillis>,
    /// By (region, user); region "" stands for every region.
    users: HashMap<(String, String), (u64, UnixMillis)>,
    /// When each followed feed was last heard from (entry or heartbeat), by the local clock;
    /// the feed of one source is keyed "".
    last_heard: HashMap<String, UnixMillis>,
}

/// The region part of a session id (`v1_<region>_<tag>_<random>`), or "" if it has none.
fn region_of(sid: &str) -> &str {
    sid.split('_').nth(1).unwrap_or("")
}

impl RevokedSet {
    /// Applies an entry of the single feed a verifier follows (regions as the entries say).
    pub fn apply(&mut self, entry: &Revocation, now: UnixMillis) {
        // Only heartbeats count as fresh: Tessera's stream withholds them while a region's
        // feed is behind, and a revocation alone does not prove that every region is covered.
        if matches!(entry, Revocation::Heartbeat { .. }) {
            self.heard("", now);
        }
        self.apply_from("", entry, now)
    }

    /// Applies an entry read from `feed`'s feed; a user entry without a region concerns every
    /// region (a follower names the region when its Redis holds one). The follower marks the
    /// feed heard (fresh) itself, only once it has caught up with the feed's backlog.
    pub fn apply_from(&mut self, _feed: &str, entry: &Revocation, now: UnixMillis) {
        match entry {
            Revocation::Session { sid, until } if *until > now => {
                let slot = self.sessions.entry(sid.clone()).or_insert(*until);
                *slot = (*slot).max(*until);
            }
            Revocation::User {
                user,
                min_version,
                until,
                region,
            } if *until > now => {
                let region = region.clone().unwrap_or_default();
                let slot = self
                    .users
                    .entry((region, user.clone()))
                    .or_insert((*min_version, *until));
                if *min_version >= slot.0 {
                    *slot = (*min_version, (*until).max(slot.1));
                }
            }
            _ => {}
        }
    }

    /// Marks a feed as heard from without an entry (e.g. a read that returned nothing).
    pub fn heard(&mut self, feed: &str, now: UnixMillis) {
        self.last_heard.insert(feed.to_owned(), now);
    }

    /// Starts counting a feed as stale until it is first heard from (a node follows every
    /// region's feed; one that never answered must not look fresh).
    pub fn expect(&mut self, feed: &str) {
        self.last_heard.entry(feed.to_owned()).or_insert(0);
    }

    /// Is a token with this `sid`, `sub` and `ver` revoked?
    pub fn is_revoked(&self, sid: &str, user: &str, version: u64, now: UnixMillis) -> bool {
        let session = self.sessions.get(sid).is_some_and(|until| *until > now);
        let below = |region: &str| {
            self.users
                .get(&(region.to_owned(), user.to_owned()))
                .is_some_and(|(min, until)| *until > now && version < *min)
        };
        session || below(region_of(sid)) || below("")
    }

    /// Milliseconds since `feed` was last heard from (`i64::MAX`: never).
    pub fn staleness_of(&self, feed: &str, now: UnixMillis) -> i64 {
        match self.last_heard.get(feed) {
            Some(&at) if at > 0 => now - at,
            _ => i64::MAX,
        }
    }

    /// Every followed feed with its staleness in ms (`None`: never heard), by name.
    pub fn feeds(&self, now: UnixMillis) -> std::collections::BTreeMap<String, Option<i64>> {
        self.last_heard
            .keys()
            .map(|feed| {
                let s = self.staleness_of(feed, now);
                (feed.clone(), (s != i64::MAX).then_some(s))
            })
            .collect()
    }

    /// Milliseconds since the stalest followed feed was last heard from.
    pub fn staleness(&self, now: UnixMillis) -> i64 {
        let oldest = self.last_heard.values().min().copied().unwrap_or(0);
        if oldest == 0 {
            i64::MAX
        } else {
            now - oldest
        }
    }

    /// Drops entries whose tokens have all expired.
    pub fn prune(&mut self, now: UnixMillis) {
        self.sessions.retain(|_, until| *until > now);
        self.users.retain(|_, (_, until)| *until > now);
    }

    pub fn len(&self) -> usize {
        self.sessions.len() + self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// This node's view of the feed, as the session service consults it.
pub struct FollowedFeed {
    pub set: std::sync::Arc<std::sync::RwLock<RevokedSet>>,
    /// Longer than this without an entry or heartbeat, the view is stale.
    pub max_staleness_ms: i64,
}

impl crate::session::ports::PushedRevocations for FollowedFeed {
    fn is_revoked(&self, sid: &str, user: &str, version: u64, now: UnixMillis) -> bool {
        self.set
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_revoked(sid, user, version, now)
    }

    fn is_fresh(&self, now: UnixMillis) -> bool {
        let set = self.set.read().unwrap_or_else(|e| e.into_inner());
        set.staleness(now) <= self.max_staleness_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn session_and_user_revocations_apply_until_they_lapse() {
        let mut set = RevokedSet::default();
        set.apply(
            &Revocation::Session {
                sid: "s1".into(),
                until: 1_000,
            },
            10,
        );
        set.apply(
            &Revocation::User {
                user: "u".into(),
                min_version: 3,
                until: 2_000,
                region: None,
            },
            10,
        );
        assert!(set.is_revoked("s1", "x", 0, 500));
        assert!(
            !set.is_revoked("s1", "x", 0, 1_000),
            "lapsed: every such token expired"
        );
        assert!(set.is_revoked("s2", "u", 2, 500));
        assert!(
            !set.is_revoked("s2", "u", 3, 500),
            "tokens minted after the bump live"
        );
        set.prune(1_500);
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn a_lower_version_never_undoes_a_higher_one() {
        let mut set = RevokedSet::default();
        set.apply(
            &Revocation::User {
                user: "u".into(),
                min_version: 5,
                until: 9_000,
                region: None,
            },
            0,
        );
        set.apply(
            &Revocation::User {
                user: "u".into(),
                min_version: 2,
                until: 9_500,
                region: None,
            },
            0,
        );
        assert!(set.is_revoked("s", "u", 4, 100));
    }

    #[test]
    fn a_minimum_applies_to_its_region_only() {
        let mut set = RevokedSet::default();
        let bump = |region: Option<&str>| Revocation::User {
            user: "u".into(),
            min_version: 50,
            until: 9_000,
            region: region.map(str::to_owned),
        };
        set.apply_from("eu", &bump(Some("eu")), 0);
        assert!(set.is_revoked("v1_eu_abcd_x", "u", 49, 100));
        assert!(
            !set.is_revoked("v1_us_abcd_x", "u", 49, 100),
            "us counts its own versions"
        );
        set.apply_from("eu", &bump(Some("us")), 0);
        assert!(set.is_revoked("v1_us_abcd_x", "u", 49, 100));
        set.apply_from("eu", &bump(None), 0);
        assert!(
            set.is_revoked("v1_ap_abcd_x", "u", 49, 100),
            "no region: every region"
        );
    }

    #[test]
    fn the_stalest_feed_sets_the_staleness() {
        let mut set = RevokedSet::default();
        set.expect("us");
        set.heard("eu", 100);
        assert_eq!(set.staleness(200), i64::MAX, "us was never heard from");
        set.heard("us", 150);
        assert_eq!(set.staleness(1_100), 1_000);
    }

    #[test]
    fn staleness_counts_from_the_last_thing_heard() {
        let mut set = RevokedSet::default();
        assert_eq!(set.staleness(5), i64::MAX);
        set.apply(&Revocation::Heartbeat { at: 100 }, 100);
        assert_eq!(set.staleness(1_100), 1_000);
        // A revocation is applied but proves nothing about the regions the stream may miss.
        set.apply(
            &Revocation::Session {
                sid: "s".into(),
                until: 9_000,
            },
            2_000,
        );
        assert_eq!(set.staleness(2_100), 2_000);
        assert!(set.is_revoked("s", "u", 0, 2_100));
    }

    proptest! {
        #[test]
        fn order_of_arrival_does_not_matter(mut versions in proptest::collection::vec(0u64..20, 1..10), probe in 0u64..25) {
            let max = *versions.iter().max().unwrap();
            let mut a = RevokedSet::default();
            for v in &versions {
                a.apply(&Revocation::User { user: "u".into(), min_version: *v, until: 10_000, region: None }, 0);
            }
            versions.reverse();
            let mut b = RevokedSet::default();
            for v in &versions {
                b.apply(&Revocation::User { user: "u".into(), min_version: *v, until: 10_000, region: None }, 0);
            }
            prop_assert_eq!(a.is_revoked("s", "u", probe, 1), probe < max);
            prop_assert_eq!(b.is_revoked("s", "u", probe, 1), probe < max);
        }
    }
}
