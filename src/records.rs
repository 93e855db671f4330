//! The recorded runs as the readers see them (the `history` command, the endpoint's
//! `/api/v1/servers/{name}/history`): one interface over the backend `[daemon] backend`
//! selects. With files, the state directory's history JSON Lines ([`crate::history`]);
//! with PostgreSQL, the `run_history` table, each record the text its line would hold.
//!
//! Both give a server's records oldest first, each with its stored text, so the readers
//! format them the same way whatever the backend.

use crate::config::{Backend, Config};
use crate::history::{History, HistoryError, HistoryRead, StoredRecord};
use crate::postgres::{self, PgError, Session};
use crate::record::RunRecord;
use crate::secret::Secret;
use crate::state::StateDir;
use std::sync::Arc;
use std::time::Duration;

/// How long a reader waits for PostgreSQL to accept a connection, and for a read.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why the records could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error(transparent)]
    Postgres(#[from] PgError),
    #[error("reading the history did not finish: {0}")]
    Join(String),
}

/// Where the recorded runs are read from. Cheap to clone.
#[derive(Clone, Debug)]
pub enum Records {
    Files(Arc<History>),
    Postgres(Arc<PgRecords>),
}

impl Records {
    /// The files backend's history on `state`.
    pub fn files(state: &StateDir) -> Records {
        Records::Files(Arc::new(History::new(state)))
    }

    /// The reader for `config`'s backend: `state` serves the files backend; PostgreSQL is
    /// connected to at the first read.
    pub fn for_config(config: &Config, state: &StateDir) -> Records {
        match &config.daemon.backend {
            Backend::Files => Records::files(state),
            Backend::Postgres(pg) => Records::Postgres(Arc::new(PgRecords::new(pg.url.clone()))),
        }
    }

    /// A server's records, oldest first; only the newest `newest` of them when given.
    pub async fn read(
        &self,
        server: &str,
        newest: Option<usize>,
    ) -> Result<HistoryRead, ReadError> {
        match self {
            Records::Files(history) => {
                let (history, server) = (history.clone(), server.to_owned());
                let mut read = tokio::task::spawn_blocking(move || history.read(&server))
                    .await
                    .map_err(|e| ReadError::Join(e.to_string()))??;
                if let Some(n) = newest {
                    let skip = read.records.len().saturating_sub(n);
                    read.records.drain(..skip);
                }
                Ok(read)
            }
            Records::Postgres(pg) => pg.read(server, newest).await,
        }
    }

    /// The servers that have records, sorted.
    pub async fn servers(&self) -> Result<Vec<String>, ReadError> {
        match self {
            Records::Files(history) => {
                let history = history.clone();
                Ok(tokio::task::spawn_blocking(move || history.servers())
                    .await
                    .map_err(|e| ReadError::Join(e.to_string()))??)
            }
            Records::Postgres(pg) => pg.servers().await,
        }
    }
}

/// Reads `run_history` on one [`Session`].
#[derive(Debug)]
pub struct PgRecords {
    session: Session,
}

impl PgRecords {
    pub fn new(url: Secret) -> PgRecords {
        PgRecords {
            session: Session::new(url, TIMEOUT),
        }
    }

    async fn read(&self, server: &str, newest: Option<usize>) -> Result<HistoryRead, ReadError> {
        let limit = newest.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        let lines = self
            .session
            .with(|c| async move { postgres::records::read(&c, server, limit).await })
            .await?;
        Ok(parse(server, lines))
    }

    async fn servers(&self) -> Result<Vec<String>, ReadError> {
        Ok(self
            .session
            .with(|c| async move { postgres::records::servers(&c).await })
            .await?)
    }
}

/// The stored texts as records; one that does not parse as a record is skipped with a
/// sentence, as a bad line of a history file is.
pub(crate) fn parse(server: &str, lines: Vec<(String, String)>) -> HistoryRead {
    let mut read = HistoryRead::default();
    for (run_id, raw) in lines {
        match serde_json::from_str::<RunRecord>(&raw) {
            Ok(record) => read.records.push(StoredRecord { record, raw }),
            Err(e) => read.warnings.push(format!(
                "run_history: the record of run {run_id} (server {server}) is not a run record ({e}); skipped"
            )),
        }
    }
    read
}
