//! The PostgreSQL backend's parts (issue #18; docs/high-availability.md is the design):
//! connecting ([`connect`]), the versioned schema applied at start ([`migrate`]), the
//! leader's lease with its epoch and trust deadline ([`lease`]), and the run claims with
//! their fenced writes and the history written with the claim's end ([`claims`]), and
//! `history import`'s idempotent copy of JSON Lines history ([`import`]).
//!
//! The run's composer reaches it through [`crate::runner::store::RunStore`], the readers
//! through [`crate::records::Records`], the daemon through its leadership task.

pub mod claims;
pub mod import;
pub mod leadership;
pub mod lease;
pub mod migrate;
pub mod records;

use crate::secret::Secret;
use std::time::Duration;
use tokio_postgres::{Client, NoTls};

/// What went wrong talking to PostgreSQL. The URL is never part of it.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("PostgreSQL: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error("PostgreSQL did not answer within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error(
        "the database's schema is version {found}, newer than this version of the program knows ({known}); \
         upgrade this instance to the version the others run"
    )]
    SchemaTooNew { found: i32, known: i32 },
    #[error("cannot encode a value for PostgreSQL: {0}; this is a bug, please report it")]
    Encode(String),
}

/// The `application_name` the sessions carry, so a DBA sees who is connected.
const APPLICATION_NAME: &str = "jellyfin-export-scheduler";

/// A connection to the database at `url` (checked by the config loader), its I/O driven
/// by a task of its own. `timeout` bounds the connect; keepalives notice a dead peer.
pub async fn connect(url: &Secret, timeout: Duration) -> Result<Client, PgError> {
    let mut config: tokio_postgres::Config = url.expose().parse()?;
    config
        .application_name(APPLICATION_NAME)
        .connect_timeout(timeout)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(5));
    let (client, connection) = tokio::time::timeout(timeout, config.connect(NoTls))
        .await
        .map_err(|_| PgError::Timeout(timeout))??;
    tokio::spawn(async move {
        // The connection ends when the client is dropped or the server goes away; each
        // statement on the client then fails and says why.
        let _ = connection.await;
    });
    Ok(client)
}

/// One connection shared by its users (statements pipeline on it), opened at the first use
/// and opened again once it has closed (the server went away, a statement broke it).
#[derive(Debug)]
pub struct Session {
    url: Secret,
    timeout: Duration,
    client: tokio::sync::Mutex<Option<std::sync::Arc<Client>>>,
}

impl Session {
    /// A session on `url`; `timeout` bounds each connect.
    pub fn new(url: Secret, timeout: Duration) -> Session {
        Session {
            url,
            timeout,
            client: tokio::sync::Mutex::new(None),
        }
    }

    /// The open connection, or a new one.
    pub async fn client(&self) -> Result<std::sync::Arc<Client>, PgError> {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        *slot = None;
        let c = std::sync::Arc::new(connect(&self.url, self.timeout).await?);
        *slot = Some(c.clone());
        Ok(c)
    }

    /// `work` on the connection, given at most `self.timeout` (a half-open connection
    /// must not hold a caller forever): a connection that timed out is dropped, so the
    /// next use connects again.
    pub async fn with<T, F>(
        &self,
        work: impl FnOnce(std::sync::Arc<Client>) -> F,
    ) -> Result<T, PgError>
    where
        F: std::future::Future<Output = Result<T, PgError>>,
    {
        let client = self.client().await?;
        match tokio::time::timeout(self.timeout, work(client)).await {
            Ok(result) => result,
            Err(_) => {
                *self.client.lock().await = None;
                Err(PgError::Timeout(self.timeout))
            }
        }
    }
}
