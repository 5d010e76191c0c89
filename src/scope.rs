//! What an admin API key may do. Named by the configuration (`admin_keys[].scopes`) and
//! enforced by the admin listener, so it lives below both.

/// What an admin key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Sessions,
    Introspect,
    Revoke,
    Revocations,
    Keys,
    Audit,
}

impl Scope {
    pub const ALL: [Scope; 6] = [
        Scope::Sessions,
        Scope::Introspect,
        Scope::Revoke,
        Scope::Revocations,
        Scope::Keys,
        Scope::Audit,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Sessions => "sessions",
            Scope::Introspect => "introspect",
            Scope::Revoke => "revoke",
            Scope::Revocations => "revocations",
            Scope::Keys => "keys",
            Scope::Audit => "audit",
        }
    }
}
