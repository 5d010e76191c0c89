//! Operation-bound step-up grants: single use, bound to one operation's digest.

use super::*;

impl SessionService {
    /// Issues a single-use grant for one operation (identified by its digest).
    pub async fn grant(
        &self,
        session: &Session,
        digest: &str,
        acr: Acr,
        ttl_ms: i64,
    ) -> Result<(), StoreError> {
        self.store.put_grant(&session.id, digest, acr, ttl_ms).await
    }

    /// Spends the grant for this operation, if there is one; returns its level.
    pub async fn take_grant(
        &self,
        session: &Session,
        digest: &str,
    ) -> Result<Option<Acr>, StoreError> {
        self.store.take_grant(&session.id, digest).await
    }
}
