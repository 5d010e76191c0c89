//! JSON shapes of the HTTP API.

use crate::session::device::device_summary;
use crate::session::{Acr, Session, SessionRecord, UnixMillis};
use serde::Serialize;
use std::borrow::Cow;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A session as clients and admins see it (DESIGN §3). Never contains a secret.
#[derive(Debug, Serialize)]
pub struct SessionView {
    pub id: String,
    pub user_id: String,
    pub created_at: String,
    pub last_seen_at: String,
    pub expires_at: String,
    pub idle_expires_at: String,
    pub auth_time: String,
    pub acr: &'static str,
    pub amr: Vec<String>,
    pub elevated_at: Option<String>,
    pub elevated_acr: Option<&'static str>,
    pub ip: String,
    pub user_agent: String,
    pub device: String,
    pub device_name: String,
    pub region: String,
    pub roles: Vec<String>,
    pub current: bool,
}

impl SessionView {
    pub fn new(session: &Session, current: bool) -> Self {
        Self::of(
            session.id.as_str(),
            session.id.region(),
            &ViewInputs::of(&session.record),
            current,
        )
    }

    /// Built from the inputs alone, so that equal inputs give an equal view (what lets
    /// `GET /v1/session` reuse a rendering; see `ViewInputs`).
    pub(super) fn of(id: &str, region: &str, v: &ViewInputs<'_>, current: bool) -> Self {
        let [created, last_seen, expires, idle_expires, auth_time] = v.seconds.map(seconds);
        Self {
            id: id.to_owned(),
            user_id: v.user_id.to_string(),
            created_at: created,
            last_seen_at: last_seen,
            expires_at: expires,
            idle_expires_at: idle_expires,
            auth_time,
            acr: v.acr.as_str(),
            amr: v.amr.to_vec(),
            elevated_at: v.elevated_at.map(seconds),
            elevated_acr: v.elevated_acr.map(|a| a.as_str()),
            ip: v.ip.to_string(),
            user_agent: v.ua.to_string(),
            device: device_summary(&v.ua),
            device_name: v.device_name.to_string(),
            region: region.to_owned(),
            roles: v.roles.to_vec(),
            current,
        }
    }
}

/// What a session's view shows of its record, at the precision it shows it (whole seconds).
/// `SessionView` is built from this alone, so two records with equal inputs have equal views;
/// it leaves out what the view never shows (the secret's and refresh token's hashes, the
/// anomaly mark, versions), so a copy kept to compare with (`into_owned`) holds no hash.
#[derive(Clone, Debug, PartialEq)]
pub struct ViewInputs<'a> {
    user_id: Cow<'a, str>,
    /// Created, last seen, expires, idle expires (never past expires), authenticated.
    seconds: [i64; 5],
    elevated_at: Option<i64>,
    acr: Acr,
    elevated_acr: Option<Acr>,
    amr: Cow<'a, [String]>,
    ip: Cow<'a, str>,
    ua: Cow<'a, str>,
    device_name: Cow<'a, str>,
    roles: Cow<'a, [String]>,
}

impl<'a> ViewInputs<'a> {
    pub fn of(r: &'a SessionRecord) -> Self {
        let s = |ms: UnixMillis| ms.div_euclid(1000);
        Self {
            user_id: r.user_id.as_str().into(),
            seconds: [
                s(r.created_at),
                s(r.last_seen_at),
                s(r.expires_at),
                s(r.idle_expires_at.min(r.expires_at)),
                s(r.auth_time),
            ],
            elevated_at: (r.elevated_at > 0).then(|| s(r.elevated_at)),
            acr: r.acr,
            elevated_acr: r.elevated_acr,
            amr: r.amr.as_slice().into(),
            ip: r.ip.as_str().into(),
            ua: r.ua.as_str().into(),
            device_name: r.device_name.as_str().into(),
            roles: r.roles.as_slice().into(),
        }
    }

    /// A copy that outlives the record.
    pub fn into_owned(self) -> ViewInputs<'static> {
        ViewInputs {
            user_id: Cow::Owned(self.user_id.into_owned()),
            seconds: self.seconds,
            elevated_at: self.elevated_at,
            acr: self.acr,
            elevated_acr: self.elevated_acr,
            amr: Cow::Owned(self.amr.into_owned()),
            ip: Cow::Owned(self.ip.into_owned()),
            ua: Cow::Owned(self.ua.into_owned()),
            device_name: Cow::Owned(self.device_name.into_owned()),
            roles: Cow::Owned(self.roles.into_owned()),
        }
    }
}

/// RFC 3339 UTC of whole seconds since the epoch.
fn seconds(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// RFC 3339 UTC with second precision.
pub fn rfc3339(ms: UnixMillis) -> String {
    seconds(ms.div_euclid(1000))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::session::{Region, SessionId, SessionSecret, UserId};

    /// A browser session of `alice` (also used by `http::session`'s tests).
    pub(crate) fn session() -> Session {
        let user = UserId::parse("alice").unwrap();
        Session {
            id: SessionId::generate(&Region::parse("eu").unwrap(), &user),
            record: SessionRecord {
                user_id: user,
                credential_version: 1,
                created_at: 1_700_000_000_000,
                last_seen_at: 1_700_000_000_000,
                idle_expires_at: 1_700_003_600_000,
                expires_at: 1_700_086_400_000,
                auth_time: 1_700_000_000_000,
                acr: Acr::Pwd,
                amr: vec!["pwd".into()],
                elevated_at: 0,
                elevated_acr: None,
                anomaly_at: 0,
                secret_hash: SessionSecret::generate().hash(),
                ip: "192.0.2.1".into(),
                ua: "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0".into(),
                device_name: "laptop".into(),
                idle_timeout_ms: 0,
                refresh: None,
                roles: vec![],
                from_users_file: false,
            },
        }
    }

    fn json(s: &Session) -> String {
        serde_json::to_string(&SessionView::new(s, true)).unwrap()
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_999), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }

    /// Every change to a record: the inputs differ exactly when the views differ, and a kept
    /// copy compares equal to what it was made from.
    #[test]
    fn view_inputs_change_exactly_when_the_view_does() {
        type Change = fn(&mut SessionRecord);
        let changes: [(&str, Change); 22] = [
            ("user", |r| r.user_id = UserId::parse("bob").unwrap()),
            ("created", |r| r.created_at += 1_000),
            ("created, same second", |r| r.created_at += 999),
            ("last seen", |r| r.last_seen_at += 60_000),
            ("last seen, same second", |r| r.last_seen_at += 500),
            ("expires", |r| r.expires_at += 1_000),
            ("idle expires", |r| r.idle_expires_at += 1_000),
            ("idle past expires", |r| {
                r.idle_expires_at = r.expires_at + 5_000
            }),
            ("auth time", |r| r.auth_time += 1_000),
            ("acr", |r| r.acr = Acr::Mfa),
            ("amr", |r| r.amr.push("otp".into())),
            ("elevated", |r| r.elevated_at = r.created_at + 1_000),
            ("elevated acr", |r| r.elevated_acr = Some(Acr::Mfa)),
            ("ip", |r| r.ip = "192.0.2.2".into()),
            ("ua", |r| r.ua = "curl/8.5.0".into()),
            ("device name", |r| r.device_name = "phone".into()),
            ("roles", |r| r.roles.push("admin".into())),
            ("secret", |r| {
                r.secret_hash = SessionSecret::generate().hash()
            }),
            ("anomaly mark", |r| r.anomaly_at = r.created_at),
            ("credential version", |r| r.credential_version += 1),
            ("idle timeout", |r| r.idle_timeout_ms = 60_000),
            ("users file", |r| r.from_users_file = true),
        ];
        let base = session();
        for (what, change) in changes {
            let mut changed = base.clone();
            change(&mut changed.record);
            let same_inputs = ViewInputs::of(&base.record) == ViewInputs::of(&changed.record);
            assert_eq!(same_inputs, json(&base) == json(&changed), "{what}");
            let kept = ViewInputs::of(&changed.record).into_owned();
            assert_eq!(kept, ViewInputs::of(&changed.record), "{what}");
        }
    }
}
