//! Browser sessions: tower-sessions over our database, so sessions survive restarts and are
//! shared by every instance. Only SHA-256 of a session id is stored.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

use crate::clock::SharedClock;
use crate::store::Store;

/// Session key under which the login state lives.
pub const LOGIN_KEY: &str = "login";

/// What a session records about a signed-in doctor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LoginState {
    /// The user.
    pub user_id: String,
    /// The clinic whose certificate the login came through.
    pub clinic_id: String,
    /// Unix seconds.
    pub login_at: i64,
}

/// The tower-sessions store over [`Store`].
///
/// Expiry is computed here from the injected clock (`now + idle_secs`), not taken from the
/// record: tower-sessions stamps `expiry_date` with the system clock, and mixing the two would
/// let a test clock (or a skewed one) expire every new session at once.
#[derive(Clone)]
pub struct DbSessionStore {
    store: Store,
    clock: SharedClock,
    idle_secs: i64,
}

impl std::fmt::Debug for DbSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DbSessionStore")
    }
}

impl DbSessionStore {
    /// A store writing to `store`, expiring sessions `idle_secs` after their last save by `clock`.
    pub fn new(store: Store, clock: SharedClock, idle_secs: i64) -> Self {
        Self { store, clock, idle_secs }
    }
}

/// SHA-256 of a session id: what the database keeps, and what card challenges are bound to.
pub(crate) fn id_hash(id: &Id) -> [u8; 32] {
    Sha256::digest(id.0.to_le_bytes()).into()
}

fn backend(e: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

#[async_trait]
impl SessionStore for DbSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let data = serde_json::to_string(&record.data).map_err(|e| session_store::Error::Encode(e.to_string()))?;
        let now = self.clock.unix();
        // A collision of 128-bit random ids is practically impossible, but never overwrite one.
        while !self
            .store
            .session_create(&id_hash(&record.id), &data, now + self.idle_secs, now)
            .await
            .map_err(backend)?
        {
            record.id = Id::default();
        }
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let data = serde_json::to_string(&record.data).map_err(|e| session_store::Error::Encode(e.to_string()))?;
        let now = self.clock.unix();
        self.store
            .session_save(&id_hash(&record.id), &data, now + self.idle_secs, now)
            .await
            .map_err(backend)
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let Some((data, expires_at)) = self.store.session_load(&id_hash(id), self.clock.unix()).await.map_err(backend)?
        else {
            return Ok(None);
        };
        let data = serde_json::from_str(&data).map_err(|e| session_store::Error::Decode(e.to_string()))?;
        let expiry_date = OffsetDateTime::from_unix_timestamp(expires_at).map_err(backend)?;
        Ok(Some(Record { id: *id, data, expiry_date }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.store.session_delete(&id_hash(id)).await.map_err(backend)
    }
}
