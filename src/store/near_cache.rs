//! The near cache: session records this node has read, kept coherent by Redis.
//!
//! It serves only the low-risk read (`GET /v1/session`, forward auth at `risk=low`); the
//! high-risk guard and every write go to Redis. Redis tells the node of every change to a
//! session key through a tracking connection (`store::tracking`), and the cache is trusted
//! only while every such connection of its Redis is up: a lost or new connection flushes it.
//!
//! A read that misses leaves a *filling* mark under its key before it asks Redis; the answer
//! is kept only if the mark is still there when it arrives. An invalidation or a flush that
//! came in between removed the mark, so an answer older than a change is never kept. Marks
//! live beside the LRU, not in it: reads of made-up session ids never push real entries out.

use crate::session::SessionRecord;
use lru::LruCache;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Shards, so that worker threads rarely wait for each other's lookups.
const SHARDS: usize = 16;

/// A bounded, Redis-invalidated cache of session records. Cheap to clone.
#[derive(Clone)]
pub struct NearCache {
    inner: Arc<Inner>,
}

struct Inner {
    /// What a hit waits on before it is served (armed by the tracker).
    fence: super::fence::Fence,
    shards: Box<[Mutex<Shard>]>,
    /// Picks a key's shard (seeded: the ids' own bits are not spread evenly).
    hasher: std::collections::hash_map::RandomState,
    /// Entries are served and filled only while this holds (every tracking connection up).
    trusted: AtomicBool,
    /// Bumped by every flush; a tracking connection acts only for its own epoch.
    epoch: AtomicU64,
    /// Serializes trust changes: a `trust` racing a `distrust` must not undo it.
    switch: Mutex<()>,
    next_ticket: AtomicU64,
    meters: Meters,
}

struct Shard {
    lru: LruCache<Box<str>, Entry>,
    /// Reads on their way to Redis, by key: the ticket of the latest.
    filling: std::collections::HashMap<Box<str>, u64>,
}

/// A record and the bytes it holds.
struct Entry(Arc<SessionRecord>, usize);

/// Marks per shard beyond which all are dropped (reads abandoned mid-way leave theirs; a
/// dropped mark only means one answer is not kept).
const MAX_FILLING: usize = 4096;

/// What a lookup found.
pub enum Lookup {
    Hit(Arc<SessionRecord>),
    /// Read Redis; with a ticket, hand the answer to `fill`.
    Miss(Option<Ticket>),
}

/// The right to keep the answer of one read, unless its key changed meanwhile.
#[derive(Debug)]
pub struct Ticket(u64);

#[derive(Clone)]
struct Meters {
    hits: metrics::Counter,
    misses: metrics::Counter,
    invalidations: metrics::Counter,
    flushes: metrics::Counter,
    entries: metrics::Gauge,
    bytes: metrics::Gauge,
}

impl Meters {
    fn new(region: &str) -> Self {
        let lookups = |result: &'static str| {
            metrics::counter!("tessera_session_cache_lookups_total",
                "region" => region.to_owned(), "result" => result)
        };
        Self {
            hits: lookups("hit"),
            misses: lookups("miss"),
            invalidations: metrics::counter!("tessera_session_cache_invalidations_total",
                "region" => region.to_owned()),
            flushes: metrics::counter!("tessera_session_cache_flushes_total",
                "region" => region.to_owned()),
            entries: metrics::gauge!("tessera_session_cache_entries", "region" => region.to_owned()),
            bytes: metrics::gauge!("tessera_session_cache_bytes", "region" => region.to_owned()),
        }
    }

    fn added(&self, bytes: usize) {
        self.entries.increment(1.0);
        self.bytes.increment(bytes as f64);
    }

    fn removed(&self, entry: &Entry) {
        self.entries.decrement(1.0);
        self.bytes.decrement(entry.1 as f64);
    }
}

impl NearCache {
    /// A cache of at most `entries` records, untrusted until `trust` is called.
    pub fn new(entries: usize, region: &str) -> Self {
        let per_shard = NonZeroUsize::new(entries.div_ceil(SHARDS).max(1)).expect("not zero");
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    lru: LruCache::new(per_shard),
                    filling: std::collections::HashMap::new(),
                })
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                shards,
                hasher: Default::default(),
                trusted: AtomicBool::new(false),
                epoch: AtomicU64::new(0),
                switch: Mutex::new(()),
                next_ticket: AtomicU64::new(1),
                meters: Meters::new(region),
                fence: super::fence::Fence::default(),
            }),
        }
    }

    /// The shard of `key`, by a hash of all of it (a session id's last character carries only
    /// two random bits).
    fn shard(&self, key: &[u8]) -> MutexGuard<'_, Shard> {
        use std::hash::BuildHasher;
        let at = self.inner.hasher.hash_one(key) as usize % SHARDS;
        self.inner.shards[at]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The read barrier a hit passes before it is served (`store::fence`).
    pub fn fence(&self) -> &super::fence::Fence {
        &self.inner.fence
    }

    /// `lookup`, if the cache is still in `epoch` (the one a fence passed for): an entry filled
    /// under later tracking connections was not covered by that fence.
    pub fn lookup_at(&self, key: &str, epoch: u64) -> Lookup {
        let found = self.lookup(key);
        // Epochs only grow: the same one before and after means no flush in between.
        if self.epoch() == epoch {
            return found;
        }
        if let Lookup::Miss(Some(ticket)) = found {
            self.cancel(key, ticket);
        }
        Lookup::Miss(None)
    }

    /// The record under `key`, or a miss (with a ticket while the cache is trusted).
    pub fn lookup(&self, key: &str) -> Lookup {
        let mut shard = self.shard(key.as_bytes());
        // Read under the shard's lock: a flush distrusts first and then empties every shard,
        // so a lookup that still saw trust finished before its shard was emptied.
        if !self.inner.trusted.load(Ordering::SeqCst) {
            self.inner.meters.misses.increment(1);
            return Lookup::Miss(None);
        }
        if let Some(Entry(record, _)) = shard.lru.get(key) {
            self.inner.meters.hits.increment(1);
            return Lookup::Hit(record.clone());
        }
        self.inner.meters.misses.increment(1);
        let ticket = self.inner.next_ticket.fetch_add(1, Ordering::Relaxed);
        if shard.filling.len() >= MAX_FILLING {
            shard.filling.clear();
        }
        // The latest reader owns the mark: an earlier reader's answer is simply not kept.
        shard.filling.insert(key.into(), ticket);
        Lookup::Miss(Some(Ticket(ticket)))
    }

    /// Keeps `record`, read from Redis for `ticket`, unless `key` changed since the lookup.
    pub fn fill(&self, key: &str, ticket: Ticket, record: &SessionRecord) {
        let mut shard = self.shard(key.as_bytes());
        if shard.filling.get(key) != Some(&ticket.0) {
            return;
        }
        shard.filling.remove(key);
        let bytes = approximate_bytes(key, record);
        let entry = Entry(Arc::new(record.clone()), bytes);
        if let Some((_, old)) = shard.lru.push(key.into(), entry) {
            self.inner.meters.removed(&old);
        }
        self.inner.meters.added(bytes);
    }

    /// Removes the mark of a read that found nothing or failed.
    pub fn cancel(&self, key: &str, ticket: Ticket) {
        let mut shard = self.shard(key.as_bytes());
        if shard.filling.get(key) == Some(&ticket.0) {
            shard.filling.remove(key);
        }
    }

    /// Drops `key` (Redis changed it, or this node is about to).
    pub fn invalidate(&self, key: &[u8]) {
        let Ok(key) = std::str::from_utf8(key) else {
            return; // never a session key of ours
        };
        let mut shard = self.shard(key.as_bytes());
        shard.filling.remove(key);
        if let Some(old) = shard.lru.pop(key) {
            self.inner.meters.removed(&old);
        }
        self.inner.meters.invalidations.increment(1);
    }

    /// Empties the cache and goes on serving (Redis flushed every key).
    pub fn clear(&self) {
        self.empty();
    }

    /// Empties the cache and stops serving from it; returns the new epoch.
    pub fn distrust(&self) -> u64 {
        let epoch = {
            let _switch = self.switch();
            self.inner.trusted.store(false, Ordering::SeqCst);
            self.inner.epoch.fetch_add(1, Ordering::SeqCst) + 1
        };
        self.empty();
        epoch
    }

    /// Empties the cache and serves from it again, if `epoch` is still the current one.
    pub fn trust(&self, epoch: u64) -> bool {
        self.empty();
        let _switch = self.switch();
        if self.inner.epoch.load(Ordering::SeqCst) != epoch {
            return false;
        }
        self.inner.trusted.store(true, Ordering::SeqCst);
        true
    }

    fn switch(&self) -> MutexGuard<'_, ()> {
        self.inner.switch.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Distrusts the cache on behalf of the tracking connection of `epoch` (a connection
    /// from before the last flush has nothing to say).
    pub fn lost(&self, epoch: u64) {
        let current = {
            let _switch = self.switch();
            let current = self.inner.epoch.load(Ordering::SeqCst) == epoch;
            if current {
                self.inner.trusted.store(false, Ordering::SeqCst);
                self.inner.epoch.fetch_add(1, Ordering::SeqCst);
            }
            current
        };
        if current {
            self.empty();
        }
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.inner.epoch.load(Ordering::SeqCst)
    }

    pub fn is_trusted(&self) -> bool {
        self.inner.trusted.load(Ordering::SeqCst)
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).lru.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn empty(&self) {
        self.inner.meters.flushes.increment(1);
        for shard in self.inner.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            shard.filling.clear();
            while let Some((_, old)) = shard.lru.pop_lru() {
                self.inner.meters.removed(&old);
            }
        }
    }
}

/// The bytes one entry holds: the record, its strings, its key and the LRU's node and index
/// slot (an estimate from the types' sizes; the allocator's rounding is not counted).
fn approximate_bytes(key: &str, r: &SessionRecord) -> usize {
    let strings = r.user_id.as_str().len()
        + r.amr
            .iter()
            .map(|s| s.len() + size_of::<String>())
            .sum::<usize>()
        + r.roles
            .iter()
            .map(|s| s.len() + size_of::<String>())
            .sum::<usize>()
        + r.ip.len()
        + r.ua.len()
        + r.device_name.len();
    let refresh = r
        .refresh
        .as_ref()
        .map_or(0, |_| size_of::<crate::session::model::RefreshState>());
    // The LRU node holds key and slot plus two links; its map holds a pointer per node.
    let node = size_of::<Box<str>>() + size_of::<Entry>() + 2 * size_of::<usize>();
    let index = 2 * size_of::<usize>();
    // The `Arc`'s two counts beside the record.
    let arc = 2 * size_of::<usize>() + size_of::<SessionRecord>();
    key.len() + node + index + arc + strings + refresh
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_record(user: &str) -> SessionRecord {
        let json = format!(
            r#"{{"u":"{user}","c":1,"ls":2,"ie":3,"ae":4,"at":1,"acr":"pwd","amr":"pwd","sh":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","ip":"203.0.113.7","ua":"Mozilla/5.0"}}"#
        );
        crate::store::record::StoredSession::from_bytes(json.as_bytes())
            .unwrap()
            .into_domain()
            .unwrap()
    }

    fn trusted(entries: usize) -> NearCache {
        let cache = NearCache::new(entries, "test");
        assert!(cache.trust(cache.epoch()));
        cache
    }

    /// The ticket of a miss on `key` (the test fails on a hit or an untrusted miss).
    fn ticket(cache: &NearCache, key: &str) -> Ticket {
        let Lookup::Miss(Some(ticket)) = cache.lookup(key) else {
            panic!("expected a miss with a ticket")
        };
        ticket
    }

    fn fill(cache: &NearCache, key: &str) {
        cache.fill(key, ticket(cache, key), &test_record("u1"));
    }

    #[test]
    fn a_filled_key_is_a_hit_until_it_is_invalidated() {
        let cache = trusted(100);
        fill(&cache, "tsr:s:{a}:1");
        assert!(matches!(cache.lookup("tsr:s:{a}:1"), Lookup::Hit(_)));
        cache.invalidate(b"tsr:s:{a}:1");
        assert!(matches!(cache.lookup("tsr:s:{a}:1"), Lookup::Miss(Some(_))));
    }

    #[test]
    fn an_answer_is_not_kept_when_its_key_changed_while_it_was_read() {
        let cache = trusted(100);
        let ticket = ticket(&cache, "k1");
        cache.invalidate(b"k1"); // the write landed after the read was served
        cache.fill("k1", ticket, &test_record("u1"));
        assert!(matches!(cache.lookup("k1"), Lookup::Miss(_)));
    }

    #[test]
    fn an_answer_is_not_kept_across_a_flush_even_when_trust_came_back() {
        let cache = trusted(100);
        let ticket = ticket(&cache, "k1");
        let epoch = cache.distrust();
        assert!(cache.trust(epoch));
        cache.fill("k1", ticket, &test_record("u1"));
        assert!(matches!(cache.lookup("k1"), Lookup::Miss(_)));
    }

    #[test]
    fn only_the_latest_reader_of_a_key_fills_it() {
        let cache = trusted(100);
        let first = ticket(&cache, "k1");
        let second = ticket(&cache, "k1");
        cache.fill("k1", first, &test_record("old"));
        assert!(matches!(cache.lookup("k1"), Lookup::Miss(_)));
        let third = ticket(&cache, "k1");
        cache.fill("k1", second, &test_record("u1"));
        cache.fill("k1", third, &test_record("u1"));
        assert!(matches!(cache.lookup("k1"), Lookup::Hit(r) if r.user_id.as_str() == "u1"));
    }

    #[test]
    fn an_untrusted_cache_serves_nothing_and_hands_out_no_tickets() {
        let cache = trusted(100);
        fill(&cache, "k1");
        let epoch = cache.distrust();
        assert!(matches!(cache.lookup("k1"), Lookup::Miss(None)));
        assert!(cache.is_empty());
        assert!(cache.trust(epoch));
        assert!(matches!(cache.lookup("k1"), Lookup::Miss(Some(_))));
    }

    #[test]
    fn a_connection_from_an_older_epoch_can_neither_trust_nor_distrust() {
        let cache = NearCache::new(100, "test");
        let old = cache.distrust();
        let new = cache.distrust();
        assert!(!cache.trust(old));
        assert!(cache.trust(new));
        fill(&cache, "k1");
        cache.lost(old);
        assert!(cache.is_trusted());
        assert!(matches!(cache.lookup("k1"), Lookup::Hit(_)));
        cache.lost(new);
        assert!(!cache.is_trusted());
    }

    fn session_keys(n: usize) -> Vec<String> {
        let region = crate::session::Region::parse("eu").unwrap();
        let user = crate::session::UserId::parse("u1").unwrap();
        (0..n)
            .map(|_| {
                let id = crate::session::SessionId::generate(&region, &user);
                crate::store::keys::KeyLayout::new("tsr").session(&id)
            })
            .collect()
    }

    #[test]
    fn the_cache_keeps_at_most_its_size_and_uses_all_of_it_for_real_session_keys() {
        let cache = trusted(1600);
        for key in session_keys(3000) {
            fill(&cache, &key);
        }
        let held = cache.len();
        assert!(held <= 1600, "{held}");
        assert!(held >= 1300, "only {held} of 1600 places used");
    }

    #[test]
    fn the_least_recently_used_entry_goes_first() {
        let cache = trusted(SHARDS); // one entry per shard
        let keys = session_keys(200);
        let same_shard: Vec<_> = keys
            .iter()
            .filter(|k| {
                use std::hash::BuildHasher;
                let of = |k: &str| cache.inner.hasher.hash_one(k.as_bytes()) as usize % SHARDS;
                of(k) == of(&keys[0])
            })
            .take(2)
            .collect();
        fill(&cache, same_shard[0]);
        fill(&cache, same_shard[1]);
        assert!(matches!(cache.lookup(same_shard[1]), Lookup::Hit(_)));
        assert!(matches!(cache.lookup(same_shard[0]), Lookup::Miss(_)));
    }

    #[test]
    fn reads_of_made_up_keys_push_no_real_entry_out_and_leave_no_mark() {
        let cache = trusted(SHARDS);
        fill(&cache, "real");
        for key in session_keys(2 * SHARDS) {
            let ticket = ticket(&cache, &key);
            cache.cancel(&key, ticket);
        }
        assert!(matches!(cache.lookup("real"), Lookup::Hit(_)));
        for shard in cache.inner.shards.iter() {
            assert!(shard.lock().unwrap().filling.is_empty());
        }
    }

    #[test]
    fn an_entry_counts_its_strings() {
        let mut record = test_record("u1");
        let small = approximate_bytes("k", &record);
        record.ua = "x".repeat(500);
        assert_eq!(
            approximate_bytes("k", &record),
            small + 500 - test_record("u1").ua.len()
        );
    }
}
