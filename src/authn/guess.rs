//! A guess (a password, a second-factor code) reserved before it is checked: it counts as a
//! failure until the check says otherwise. One that is never checked, because the client left
//! or a fault cut the request short, is taken back when the guard drops: nothing was learned
//! from it, and keeping it would let anyone who can slow a request turn a right password into
//! a counted failure.

use super::ports::{AuthStore, CodePath};
use crate::session::{StoreError, UserId};
use std::sync::Arc;

enum Counted {
    Password { username: String, network: String },
    Code { user: UserId, path: CodePath },
}

pub struct Reserved {
    store: Arc<dyn AuthStore>,
    counted: Option<Counted>,
}

impl Reserved {
    pub fn password(store: Arc<dyn AuthStore>, username: &str, network: &str) -> Self {
        Self {
            store,
            counted: Some(Counted::Password {
                username: username.to_owned(),
                network: network.to_owned(),
            }),
        }
    }

    pub fn code(store: Arc<dyn AuthStore>, user: &UserId, path: CodePath) -> Self {
        Self {
            store,
            counted: Some(Counted::Code {
                user: user.clone(),
                path,
            }),
        }
    }

    /// The guess was wrong: it stays counted.
    pub fn wrong(mut self) {
        self.counted = None;
    }

    /// The guess was right: its reservation is taken back (a right password also clears its
    /// network's count).
    pub async fn right(mut self) -> Result<(), StoreError> {
        match self.counted.take() {
            Some(Counted::Password { username, network }) => {
                self.store.password_was_right(&username, &network).await
            }
            Some(Counted::Code { user, path }) => self.store.code_was_right(&user, path).await,
            None => Ok(()),
        }
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        let Some(counted) = self.counted.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let store = self.store.clone();
        runtime.spawn(async move {
            let undone = match counted {
                Counted::Password { username, network } => {
                    store.password_guess_unchecked(&username, &network).await
                }
                // A code reservation is a single counter: "right" takes it back the same way.
                Counted::Code { user, path } => store.code_was_right(&user, path).await,
            };
            if let Err(e) = undone {
                tracing::warn!(error = %e, "an unchecked guess could not be taken back");
            }
        });
    }
}
