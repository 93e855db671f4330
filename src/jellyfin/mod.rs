//! A typed HTTP client for the Jellyfin calls a run needs (see
//! `docs/jellyfin-api.md` for the facts it follows).
//!
//! It owns the wire: authentication, timeouts, size caps, redirects, decoding, and errors
//! that tell the user what to do. It owns no policy: retries, polling and deciding an
//! outcome are `runner::track`'s.
//!
//! The API key travels only in the `Authorization` header (marked sensitive so no debug
//! output of a request shows it), never in a URL. Redirects are not followed: Jellyfin's API
//! never redirects, and following one would carry the key to wherever it points.

pub mod members;
pub mod model;
pub mod strip;
pub mod zip_field;

use crate::secret::Secret;
use model::{ExportContents, MigratorConfig, PluginInfo, PublicSystemInfo, TaskInfo};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use std::time::Duration;
use tokio::sync::mpsc;
use url::Url;
use zip_field::{Base64Field, NotBase64};

/// The Migrator plugin's id (without dashes), for `GET /Plugins/{id}/Configuration`.
pub const MIGRATOR_PLUGIN_ID: &str = "eb5d78948eef4b36aa6f5d124e828ce1";
/// Task answers are small (a few KiB); anything bigger than this is not Jellyfin.
pub const TASK_BODY_LIMIT: usize = 4 * 1024 * 1024;
/// The plugin configuration without its ZIP fields: log text and a few fields.
pub const CONFIG_BODY_LIMIT: usize = 16 * 1024 * 1024;
/// The plugin configuration with its ZIP fields (which are skipped as they stream in):
/// an export and an Import upload of a few GiB each.
pub const CONFIG_STREAM_LIMIT: u64 = 16 * 1024 * 1024 * 1024;

/// Idle connections kept per host (one host often serves many servers behind a proxy).
pub const POOL_IDLE_PER_HOST: usize = 64;

const USER_AGENT: &str = concat!("jellyfin-export-scheduler/", env!("CARGO_PKG_VERSION"));

/// Why a call failed. Messages name the server and say what to do; none contains the key.
#[derive(Debug, thiserror::Error)]
pub enum JellyfinError {
    #[error(
        "cannot reach {server} at {addr}: {cause}; check the url in the config and that Jellyfin is running"
    )]
    Unreachable {
        server: String,
        addr: String,
        cause: String,
    },
    #[error("{server} did not answer {call} within {}; it may be overloaded (raise request_timeout if this is normal)", humantime::format_duration(*after))]
    Timeout {
        server: String,
        call: String,
        after: Duration,
    },
    #[error(
        "{server}: the API key was refused (revoked, or the server no longer accepts this auth method); create a new key in Dashboard → API Keys"
    )]
    Unauthorized { server: String },
    #[error(
        "{server}: the key is not an administrator's; use an API key from Dashboard → API Keys"
    )]
    Forbidden { server: String },
    #[error("{server}: {call} answered 404 Not Found{detail}")]
    NotFound {
        server: String,
        call: String,
        detail: String,
    },
    #[error(
        "{server}: {call} answered {status} redirecting to {location}; redirects are not followed (the API key would go along): set url to the address Jellyfin really serves"
    )]
    Redirect {
        server: String,
        call: String,
        status: u16,
        location: String,
    },
    #[error("{server} is unavailable (503: starting, migrating, or an IP filter){}", retry_after.map(|d| format!("; it asked to retry after {}", humantime::format_duration(d))).unwrap_or_default())]
    Unavailable {
        server: String,
        retry_after: Option<Duration>,
    },
    #[error("{server}: {call} answered {status}{detail}")]
    Status {
        server: String,
        call: String,
        status: u16,
        detail: String,
    },
    #[error("{server}: {call} gave an answer that is not what Jellyfin sends: {detail}")]
    BadResponse {
        server: String,
        call: String,
        detail: String,
    },
    #[error(
        "{server}: {call} sent more than {limit} bytes; that is not a Jellyfin answer (check the url)"
    )]
    TooLarge {
        server: String,
        call: String,
        limit: u64,
    },
    #[error(
        "task {key} not found on {server}: is the Migrator plugin installed and Active? /Plugins reports: {plugins}"
    )]
    TaskNotFound {
        server: String,
        key: String,
        plugins: String,
    },
    #[error(
        "{server}: the configuration served for the Migrator's plugin id is not the Migrator's: it has no {missing}. Another plugin built from the Jellyfin plugin template carries the same id ({found}); remove it in Dashboard → Plugins and restart Jellyfin"
    )]
    NotMigrator {
        server: String,
        /// The Migrator's fields it lacks, comma-separated.
        missing: String,
        /// What `/Plugins` lists under that id.
        found: String,
    },
    #[error("{server} has {count} tasks with key {key} (ids {ids}); remove the duplicate plugin")]
    DuplicateTask {
        server: String,
        key: String,
        count: usize,
        ids: String,
    },
    #[error("cannot set up the HTTP client for {server}: {cause}")]
    Setup { server: String, cause: String },
}

impl JellyfinError {
    /// Failures that may go away by themselves soon (worth a retry); a refused key, a
    /// missing task or a redirect will not.
    pub fn is_transient(&self) -> bool {
        match self {
            JellyfinError::Unreachable { .. }
            | JellyfinError::Timeout { .. }
            | JellyfinError::Unavailable { .. }
            | JellyfinError::BadResponse { .. } => true,
            JellyfinError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// The delay a 503 asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            JellyfinError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// What an answer said about the connection it came on ([`JellyfinClient::public_info_probe`]).
#[derive(Clone, Debug)]
pub struct Probe {
    /// The server's `Date` header (whole seconds), if it sent one.
    pub date: Option<chrono::DateTime<chrono::Utc>>,
    /// Our clock when the request went out and when the answer's head arrived.
    pub sent: chrono::DateTime<chrono::Utc>,
    pub received: chrono::DateTime<chrono::Utc>,
    /// The TLS peer's certificate, DER (https, and a client with `tls_info(true)`).
    pub peer_certificate: Option<Vec<u8>>,
}

/// The Migrator's configuration as [`JellyfinClient::migrator_document`] read it.
#[derive(Clone, Debug)]
pub struct MigratorDocument {
    pub config: MigratorConfig,
    /// What the next export will write; `None` when those fields are not of the types the
    /// plugin writes.
    pub contents: Option<ExportContents>,
    /// Each `*ZipBase64` field skipped and the length of its value (base64 characters).
    pub zip_fields: Vec<(String, u64)>,
}

/// What one read of the configuration kept.
struct ConfigBody {
    /// The document with its ZIP fields blanked (cut short and closed when it could be).
    kept: Vec<u8>,
    /// How many times the export's ZIP member was met.
    captures: u32,
    /// Each ZIP field skipped, with its length.
    zip_fields: Vec<(String, u64)>,
}

/// What `DELETE /ScheduledTasks/Running/{id}` said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelAnswer {
    /// 204: the task was asked to cancel.
    Requested,
    /// 500: the task is Idle or already Cancelling (Jellyfin throws on those).
    NotRunning,
}

/// The configuration member that holds the last run's ZIP.
pub const EXPORT_ZIP_FIELD: &str = "LastExportZipBase64";
/// What the verification reads when it also keeps the export: [`MigratorConfig::VERIFY`]
/// and the ZIP (`LastImportZipBase64`, an Import upload of any size, comes after both).
const VERIFY_WITH_EXPORT: &[&str] = &{
    // Built from VERIFY so the two lists cannot drift apart.
    let verify = MigratorConfig::VERIFY;
    let mut all = [EXPORT_ZIP_FIELD; MigratorConfig::VERIFY.len() + 1];
    let mut i = 0;
    while i < verify.len() {
        all[i] = verify[i];
        i += 1;
    }
    all
};
/// The largest piece of ZIP [`JellyfinClient::migrator_config_with_export`] sends at once.
pub const ZIP_PIECE: usize = 64 * 1024;

/// How much of a chunk the preflight strips before it looks again for the members it
/// needs (`read_config_members`).
const WATCH_SLICE: usize = 2 * 1024;

/// What one read of the configuration saw of `LastExportZipBase64`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportZipRead {
    /// How many times the member was in the document (0: the plugin stored no ZIP yet;
    /// more than 1: only the first was read).
    pub occurrences: u32,
    /// Bytes of ZIP decoded and sent.
    pub bytes: u64,
    /// The value was not base64 (then what was sent is not the whole ZIP).
    pub invalid: Option<NotBase64>,
    /// The receiver went away before the end (it had what it needed, or failed).
    pub receiver_gone: bool,
}

/// The export's ZIP on its way out of a configuration read: decoded, gathered into
/// pieces, sent.
struct ExportSender<'a> {
    zip: Option<&'a mpsc::Sender<Vec<u8>>>,
    field: Base64Field,
    piece: Vec<u8>,
    read: ExportZipRead,
}

impl<'a> ExportSender<'a> {
    fn new(zip: Option<&'a mpsc::Sender<Vec<u8>>>) -> Self {
        ExportSender {
            zip,
            field: Base64Field::new(),
            piece: Vec::new(),
            read: ExportZipRead::default(),
        }
    }

    /// Still worth capturing: there is a receiver, and nothing went wrong yet.
    fn wants_more(&self) -> bool {
        self.zip.is_some() && self.read.invalid.is_none() && !self.read.receiver_gone
    }

    /// Raw characters of the value, as the stripper captured them.
    async fn feed(&mut self, raw: &[u8]) {
        if raw.is_empty() {
            return;
        }
        if let Err(e) = self.field.feed(raw, &mut self.piece) {
            self.read.invalid = Some(e);
            return;
        }
        self.send(false).await;
    }

    /// Send whole pieces (all of it when `all`).
    async fn send(&mut self, all: bool) {
        let Some(zip) = self.zip else { return };
        while self.piece.len() >= ZIP_PIECE || (all && !self.piece.is_empty()) {
            let rest = self.piece.split_off(self.piece.len().min(ZIP_PIECE));
            let piece = std::mem::replace(&mut self.piece, rest);
            self.read.bytes += piece.len() as u64;
            if zip.send(piece).await.is_err() {
                self.read.receiver_gone = true;
                self.piece = Vec::new();
                return;
            }
        }
    }

    /// The document ended; the member was met `occurrences` times.
    async fn finish(mut self, occurrences: u32) -> ExportZipRead {
        self.read.occurrences = occurrences;
        if self.wants_more() && occurrences > 0 {
            match self.field.finish(&mut self.piece) {
                Ok(()) => self.send(true).await,
                Err(e) => self.read.invalid = Some(e),
            }
        }
        self.read
    }
}

/// Told after every request whether the server answered sensibly (`true`: an HTTP answer
/// that is not a 5xx; `false`: no answer, or a 5xx/503).
pub type ContactHook = std::sync::Arc<dyn Fn(bool) + Send + Sync>;

/// A client for one Jellyfin server.
#[derive(Clone)]
pub struct JellyfinClient {
    http: reqwest::Client,
    /// `Authorization: MediaBrowser ... Token="<key>"`, marked sensitive.
    auth: HeaderValue,
    base: Url,
    server: String,
    request_timeout: Duration,
    contact: Option<ContactHook>,
}

impl std::fmt::Debug for JellyfinClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JellyfinClient")
            .field("server", &self.server)
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl JellyfinClient {
    /// `base` must end in `/` (the config guarantees it) so that a base path is kept.
    pub fn new(
        server: &str,
        base: &Url,
        key: &Secret,
        request_timeout: Duration,
    ) -> Result<Self, JellyfinError> {
        let http = http_client(server, request_timeout)?;
        JellyfinClient::with_http(http, server, base, key, request_timeout)
    }

    /// A client on a shared HTTP client (see [`http_client`]): a fleet then shares one
    /// connection pool and one TLS setup instead of one per run. The key goes on each
    /// request, so sharing connections between servers of one host is safe.
    pub fn with_http(
        http: reqwest::Client,
        server: &str,
        base: &Url,
        key: &Secret,
        request_timeout: Duration,
    ) -> Result<Self, JellyfinError> {
        let auth = format!(
            "MediaBrowser Client=\"jellyfin-export-scheduler\", Version=\"{}\", Token=\"{}\"",
            env!("CARGO_PKG_VERSION"),
            key.expose()
        );
        let mut auth = HeaderValue::from_str(&auth).map_err(|_| JellyfinError::Setup {
            server: server.to_owned(),
            cause: "the API key contains characters not allowed in a header".into(),
        })?;
        // Keeps the value out of any debug output of a request.
        auth.set_sensitive(true);
        let mut base = base.clone();
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        Ok(JellyfinClient {
            http,
            auth,
            base,
            server: server.to_owned(),
            request_timeout,
            contact: None,
        })
    }

    /// Report every request's contact (for the `server_up` metric).
    pub fn with_contact_hook(mut self, hook: ContactHook) -> Self {
        self.contact = Some(hook);
        self
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    /// `GET /ScheduledTasks`.
    pub async fn scheduled_tasks(&self) -> Result<Vec<TaskInfo>, JellyfinError> {
        self.get_json("ScheduledTasks").await
    }

    /// The task whose `Key` is `key`, looked up every time (ids can change when a plugin
    /// renames its class). Absent: the error says what `/Plugins` reports.
    pub async fn find_task(&self, key: &str) -> Result<TaskInfo, JellyfinError> {
        let mut found: Vec<TaskInfo> = self
            .scheduled_tasks()
            .await?
            .into_iter()
            .filter(|t| t.key.as_deref() == Some(key))
            .collect();
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(JellyfinError::TaskNotFound {
                server: self.server.clone(),
                key: key.to_owned(),
                plugins: self.describe_plugins().await,
            }),
            count => Err(JellyfinError::DuplicateTask {
                server: self.server.clone(),
                key: key.to_owned(),
                count,
                ids: found
                    .iter()
                    .map(|t| t.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// What `/Plugins` says about the Migrator plugin, for a "task not found" message.
    async fn describe_plugins(&self) -> String {
        match self.plugins().await {
            Err(e) => format!("(could not list plugins: {e})"),
            Ok(list) => match list
                .iter()
                .find(|p| p.id.replace('-', "") == MIGRATOR_PLUGIN_ID)
            {
                Some(p) => format!(
                    "Migrator {} is installed with status {}{}",
                    p.version.as_deref().unwrap_or("(no version)"),
                    p.status.as_deref().unwrap_or("(none)"),
                    if p.is_active() {
                        ""
                    } else {
                        " (only Active plugins run; check the plugin in Dashboard → Plugins and restart Jellyfin)"
                    }
                ),
                None => format!(
                    "no Migrator plugin among {} plugin{}{}",
                    list.len(),
                    if list.len() == 1 { "" } else { "s" },
                    if list.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " ({})",
                            list.iter()
                                .map(|p| p.name.as_deref().unwrap_or("?"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    }
                ),
            },
        }
    }

    /// `GET /ScheduledTasks/{id}`.
    pub async fn task(&self, id: &str) -> Result<TaskInfo, JellyfinError> {
        self.get_json(&format!("ScheduledTasks/{id}")).await
    }

    /// `POST /ScheduledTasks/Running/{id}`: 204 at once; the task starts in the background.
    pub async fn start_task(&self, id: &str) -> Result<(), JellyfinError> {
        let path = format!("ScheduledTasks/Running/{id}");
        let (status, _) = self
            .send(Method::POST, &path, TASK_BODY_LIMIT, self.request_timeout)
            .await?;
        match status {
            StatusCode::NO_CONTENT | StatusCode::OK => Ok(()),
            s => Err(self.unexpected(&Method::POST, &path, s)),
        }
    }

    /// `DELETE /ScheduledTasks/Running/{id}`: asks the task to cancel.
    pub async fn cancel_task(&self, id: &str) -> Result<CancelAnswer, JellyfinError> {
        let path = format!("ScheduledTasks/Running/{id}");
        match self
            .send(Method::DELETE, &path, TASK_BODY_LIMIT, self.request_timeout)
            .await
        {
            Ok((StatusCode::NO_CONTENT | StatusCode::OK, _)) => Ok(CancelAnswer::Requested),
            Ok((s, _)) => Err(self.unexpected(&Method::DELETE, &path, s)),
            // Jellyfin throws (500) when the task is Idle or already Cancelling.
            Err(JellyfinError::Status { status: 500, .. }) => Ok(CancelAnswer::NotRunning),
            Err(e) => Err(e),
        }
    }

    /// `GET /Plugins`.
    pub async fn plugins(&self) -> Result<Vec<PluginInfo>, JellyfinError> {
        self.get_json("Plugins").await
    }

    /// `GET /Plugins/{id}/Configuration` for the Migrator plugin, without its ZIP fields
    /// (skipped while they stream in), read only as far as it takes to see every member
    /// in `needs` ([`MigratorConfig::PREFLIGHT`] or [`MigratorConfig::VERIFY`]); the
    /// connection is then dropped with the rest unread. A configuration without the
    /// Migrator's shape (another plugin built from the same template holds the id) is
    /// [`JellyfinError::NotMigrator`].
    pub async fn migrator_config(
        &self,
        needs: &'static [&'static str],
    ) -> Result<MigratorConfig, JellyfinError> {
        Ok(self.read_migrator_config(Some(needs), None).await?.0.config)
    }

    /// The whole configuration (not cut short: `doctor` shows all of it), with what the
    /// next export will contain and the length of each ZIP field that was skipped.
    pub async fn migrator_document(&self) -> Result<MigratorDocument, JellyfinError> {
        Ok(self.read_migrator_config(None, None).await?.0)
    }

    /// [`migrator_config`](Self::migrator_config) for the verification, and the ZIP in
    /// `LastExportZipBase64` decoded as it streams past and sent to `zip` in pieces of at
    /// most [`ZIP_PIECE`] bytes: one read gives the fields that judge a run and the ZIP
    /// they describe, from the same document. It stops once those fields and the ZIP
    /// have passed (an Import upload after them is not read). If `zip`'s receiver goes
    /// away, the rest of the ZIP is skipped and the document still read.
    pub async fn migrator_config_with_export(
        &self,
        zip: &mpsc::Sender<Vec<u8>>,
    ) -> Result<(MigratorConfig, ExportZipRead), JellyfinError> {
        let (document, read) = self
            .read_migrator_config(Some(VERIFY_WITH_EXPORT), Some(zip))
            .await?;
        Ok((document.config, read))
    }

    /// The configuration up to the members in `needs` (all of it for `None`).
    async fn read_migrator_config(
        &self,
        needs: Option<&'static [&'static str]>,
        zip: Option<&mpsc::Sender<Vec<u8>>>,
    ) -> Result<(MigratorDocument, ExportZipRead), JellyfinError> {
        let path = format!("Plugins/{MIGRATOR_PLUGIN_ID}/Configuration");
        let call = format!("GET /{path}");
        let url = self.url(&path);
        // The document can be as large as the export itself: give it more time.
        let response = self
            .request(Method::GET, &url, &call, self.request_timeout * 10, true)
            .await?;
        let status = response.status();
        if status != StatusCode::OK {
            return Err(self.status_error(&call, response).await);
        }
        let mut export = ExportSender::new(zip);
        let body = self
            .read_config_members(response, needs, &mut export, &call, &url)
            .await?;
        let (kept, zip_fields) = (body.kept, body.zip_fields);
        let read = export.finish(body.captures).await;
        let config: MigratorConfig = self.decode(&call, &kept)?;
        let missing = config.missing_fields();
        if !missing.is_empty() {
            return Err(JellyfinError::NotMigrator {
                server: self.server.clone(),
                missing: missing.join(", "),
                found: self.plugins_with_migrator_id().await,
            });
        }
        let document = MigratorDocument {
            config,
            contents: serde_json::from_slice(&kept).ok(),
            zip_fields,
        };
        Ok((document, read))
    }

    /// The configuration's bytes with its ZIP fields blanked (the export's ZIP handed to
    /// `export` as it passes), up to the end of the last member in `needs` (then closed
    /// with `}`), or all of it when one never comes or `needs` is `None`.
    async fn read_config_members(
        &self,
        mut response: reqwest::Response,
        needs: Option<&'static [&'static str]>,
        export: &mut ExportSender<'_>,
        call: &str,
        url: &Url,
    ) -> Result<ConfigBody, JellyfinError> {
        let mut stripper = match export.zip {
            Some(_) => strip::ZipStripper::capturing(EXPORT_ZIP_FIELD),
            None => strip::ZipStripper::new(),
        };
        let mut watch = needs.map(members::MemberWatch::new);
        let mut kept = Vec::new();
        let mut total: u64 = 0;
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    total += chunk.len() as u64;
                    // A read that only wants some members (the preflight) goes through
                    // the chunk in slices, so that it stops as soon as they have passed
                    // rather than strip the rest of a chunk of up to hundreds of KiB.
                    let step = match (&watch, export.zip) {
                        (Some(_), None) => WATCH_SLICE,
                        _ => chunk.len().max(1),
                    };
                    let mut stopped = false;
                    for slice in chunk.chunks(step) {
                        let watched = kept.len();
                        if export.wants_more() {
                            let mut raw = Vec::new();
                            stripper.feed_capturing(slice, &mut kept, &mut raw);
                            export.feed(&raw).await;
                        } else {
                            stripper.feed(slice, &mut kept);
                        }
                        if let Some(end) = watch.as_mut().and_then(|w| w.feed(&kept[watched..])) {
                            kept.truncate(end);
                            kept.push(b'}');
                            stopped = true;
                            break;
                        }
                    }
                    if stopped {
                        tracing::debug!(server = %self.server, read = total, "stopped reading the plugin configuration: every member needed was there");
                        break;
                    }
                    if kept.len() > CONFIG_BODY_LIMIT || total > CONFIG_STREAM_LIMIT {
                        return Err(JellyfinError::TooLarge {
                            server: self.server.clone(),
                            call: call.to_owned(),
                            limit: if total > CONFIG_STREAM_LIMIT {
                                CONFIG_STREAM_LIMIT
                            } else {
                                CONFIG_BODY_LIMIT as u64
                            },
                        });
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(self.transport_error(call, url, e)),
            }
        }
        for (field, bytes) in stripper.skipped_fields() {
            tracing::debug!(server = %self.server, field = %field, bytes, "skipped while reading the plugin configuration");
        }
        Ok(ConfigBody {
            kept,
            captures: stripper.captures(),
            zip_fields: stripper.skipped_fields().to_vec(),
        })
    }

    /// The plugins `/Plugins` lists under the Migrator's id, for an error message.
    async fn plugins_with_migrator_id(&self) -> String {
        match self.plugins().await {
            Err(e) => format!("could not list plugins: {e}"),
            Ok(list) => {
                let names: Vec<String> = list
                    .iter()
                    .filter(|p| {
                        p.id.replace('-', "")
                            .eq_ignore_ascii_case(MIGRATOR_PLUGIN_ID)
                    })
                    .map(|p| {
                        format!(
                            "{} {}",
                            p.name.as_deref().unwrap_or("?"),
                            p.version.as_deref().unwrap_or("(no version)")
                        )
                    })
                    .collect();
                if names.is_empty() {
                    "/Plugins lists none under it".to_owned()
                } else {
                    format!("/Plugins lists {}", names.join(" and "))
                }
            }
        }
    }

    /// `GET /System/Info/Public` (anonymous; 503 while the server starts).
    pub async fn public_info(&self) -> Result<PublicSystemInfo, JellyfinError> {
        self.get_json("System/Info/Public").await
    }

    /// [`public_info`](Self::public_info) with what the answer says about the connection:
    /// the server's `Date` header, when the request went and came back, and the TLS
    /// peer's certificate (when the client was built with `tls_info(true)`).
    pub async fn public_info_probe(&self) -> Result<(PublicSystemInfo, Probe), JellyfinError> {
        let path = "System/Info/Public";
        let call = format!("GET /{path}");
        let url = self.url(path);
        let sent = chrono::Utc::now();
        let response = self
            .request(Method::GET, &url, &call, self.request_timeout, false)
            .await?;
        let received = chrono::Utc::now();
        let status = response.status();
        if status != StatusCode::OK {
            return Err(self.status_error(&call, response).await);
        }
        let probe = Probe {
            date: response
                .headers()
                .get(header::DATE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
                .map(|d| d.with_timezone(&chrono::Utc)),
            sent,
            received,
            peer_certificate: response
                .extensions()
                .get::<reqwest::tls::TlsInfo>()
                .and_then(|t| t.peer_certificate())
                .map(<[u8]>::to_vec),
        };
        let body = self
            .read_body(response, TASK_BODY_LIMIT, &call, &url)
            .await?;
        Ok((self.decode(&call, &body)?, probe))
    }

    fn url(&self, path: &str) -> Url {
        // `path` is relative and made of fixed words and hex ids: join cannot fail, but a
        // fallback keeps this total.
        self.base.join(path).unwrap_or_else(|_| self.base.clone())
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<T, JellyfinError> {
        let call = format!("GET /{path}");
        let (status, body) = self
            .send(Method::GET, path, TASK_BODY_LIMIT, self.request_timeout)
            .await?;
        if status != StatusCode::OK {
            return Err(self.unexpected(&Method::GET, path, status));
        }
        self.decode(&call, &body)
    }

    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        call: &str,
        body: &[u8],
    ) -> Result<T, JellyfinError> {
        serde_json::from_slice(body).map_err(|e| JellyfinError::BadResponse {
            server: self.server.clone(),
            call: call.to_owned(),
            detail: format!("{e} (body starts with {:?})", snippet(body)),
        })
    }

    fn unexpected(&self, method: &Method, path: &str, status: StatusCode) -> JellyfinError {
        JellyfinError::Status {
            server: self.server.clone(),
            call: format!("{method} /{path}"),
            status: status.as_u16(),
            detail: String::new(),
        }
    }

    async fn request(
        &self,
        method: Method,
        url: &Url,
        call: &str,
        total: Duration,
        close: bool,
    ) -> Result<reqwest::Response, JellyfinError> {
        let mut request = self
            .http
            .request(method, url.clone())
            .header(header::AUTHORIZATION, self.auth.clone())
            .timeout(total);
        if close {
            // The connection's read buffer grew to hold this large answer; closing it
            // frees that memory now instead of keeping it in the pool.
            request = request.header(header::CONNECTION, "close");
        }
        let result = request.send().await;
        if let Some(hook) = &self.contact {
            hook(result.as_ref().is_ok_and(|r| !r.status().is_server_error()));
        }
        result.map_err(|e| self.transport_error(call, url, e))
    }

    /// Send a request; return the status and the (capped) body of a 2xx answer, or the
    /// error a non-2xx answer means.
    async fn send(
        &self,
        method: Method,
        path: &str,
        limit: usize,
        total: Duration,
    ) -> Result<(StatusCode, Vec<u8>), JellyfinError> {
        let call = format!("{method} /{path}");
        let url = self.url(path);
        let response = self.request(method, &url, &call, total, false).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(self.status_error(&call, response).await);
        }
        let body = self.read_body(response, limit, &call, &url).await?;
        Ok((status, body))
    }

    /// The whole body of an answer, at most `limit` bytes.
    async fn read_body(
        &self,
        mut response: reqwest::Response,
        limit: usize,
        call: &str,
        url: &Url,
    ) -> Result<Vec<u8>, JellyfinError> {
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > limit {
                        return Err(JellyfinError::TooLarge {
                            server: self.server.clone(),
                            call: call.to_owned(),
                            limit: limit as u64,
                        });
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(body),
                Err(e) => return Err(self.transport_error(call, url, e)),
            }
        }
    }

    async fn status_error(&self, call: &str, response: reqwest::Response) -> JellyfinError {
        let server = self.server.clone();
        let call = call.to_owned();
        let status = response.status();
        match status.as_u16() {
            401 => JellyfinError::Unauthorized { server },
            403 => JellyfinError::Forbidden { server },
            503 => JellyfinError::Unavailable {
                server,
                retry_after: response
                    .headers()
                    .get(header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after),
            },
            300..=399 => JellyfinError::Redirect {
                server,
                call,
                status: status.as_u16(),
                location: response
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map_or_else(|| "(no Location header)".to_owned(), str::to_owned),
            },
            code => {
                let body = read_capped(response, 4096).await;
                let detail = problem_detail(&body)
                    .or_else(|| {
                        let s = snippet(&body);
                        (!s.is_empty()).then(|| format!(": {s}"))
                    })
                    .unwrap_or_default();
                if code == 404 {
                    JellyfinError::NotFound {
                        server,
                        call,
                        detail,
                    }
                } else {
                    JellyfinError::Status {
                        server,
                        call,
                        status: code,
                        detail,
                    }
                }
            }
        }
    }

    fn transport_error(&self, call: &str, url: &Url, e: reqwest::Error) -> JellyfinError {
        let server = self.server.clone();
        if e.is_timeout() {
            return JellyfinError::Timeout {
                server,
                call: call.to_owned(),
                after: self.request_timeout,
            };
        }
        let cause = root_cause(&e);
        if e.is_connect() {
            let addr = match (url.host_str(), url.port_or_known_default()) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (Some(h), None) => h.to_owned(),
                _ => url.to_string(),
            };
            return JellyfinError::Unreachable {
                server,
                addr,
                cause,
            };
        }
        if e.is_body() || e.is_decode() || e.is_request() {
            return JellyfinError::BadResponse {
                server,
                call: call.to_owned(),
                detail: format!("the connection broke during the answer ({cause})"),
            };
        }
        JellyfinError::BadResponse {
            server,
            call: call.to_owned(),
            detail: cause,
        }
    }
}

/// The innermost error's text (the OS error, e.g. "Connection refused (os error 111)").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// The variable naming a PEM file of CA certificates trusted for Jellyfin servers besides
/// the built-in (Mozilla) roots: for a Jellyfin behind a private CA or a self-signed
/// certificate. Every command that contacts servers reads it (the daemon, `trigger`,
/// `doctor`), so `doctor`'s TLS verdict is the daemon's.
pub const CA_FILE_ENV: &str = "JELLYFIN_EXPORT_SCHEDULER_CA_FILE";

/// The HTTP client every Jellyfin call goes through: our User-Agent, JSON accepted, no
/// redirects followed, no proxy from the environment, connect and read timeouts, the CA
/// file of [`CA_FILE_ENV`]. `server` names the server it is for in the error.
pub fn http_client(
    server: &str,
    request_timeout: Duration,
) -> Result<reqwest::Client, JellyfinError> {
    client_builder(server, request_timeout)?
        .build()
        .map_err(|e| JellyfinError::Setup {
            server: server.to_owned(),
            cause: e.to_string(),
        })
}

/// [`http_client`]'s settings, for a caller that adds its own (`doctor` asks for the TLS
/// peer's certificate).
pub fn client_builder(
    server: &str,
    request_timeout: Duration,
) -> Result<reqwest::ClientBuilder, JellyfinError> {
    let mut headers = HeaderMap::new();
    headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    let mut builder = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .default_headers(headers)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(request_timeout)
        .read_timeout(request_timeout)
        // A fleet's polls come in bursts; idle connections beyond these are closed
        // rather than kept (each holds its buffers and its task, about 30 KiB).
        .pool_max_idle_per_host(POOL_IDLE_PER_HOST)
        // Proxies from the environment would see the key in plain HTTP; Jellyfin is
        // usually on the LAN. Users who need one can put it in front explicitly.
        .no_proxy();
    if let Some(path) = std::env::var_os(CA_FILE_ENV).filter(|p| !p.is_empty()) {
        let setup = |cause: String| JellyfinError::Setup {
            server: server.to_owned(),
            cause: format!(
                "{CA_FILE_ENV}={}: {cause}; name a PEM file of CA certificates, or unset the variable",
                std::path::Path::new(&path).display()
            ),
        };
        let pem = std::fs::read(&path).map_err(|e| setup(format!("cannot read it: {e}")))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| setup(format!("not PEM certificates: {e}")))?;
        if certs.is_empty() {
            return Err(setup("it holds no certificate".into()));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    Ok(builder)
}

/// `Retry-After`: seconds, or an HTTP date.
fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs.min(3600)));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let secs = (when.timestamp() - chrono::Utc::now().timestamp()).clamp(0, 3600);
    Some(Duration::from_secs(secs as u64))
}

async fn read_capped(mut response: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = limit.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    body
}

/// `title`/`detail` of an `application/problem+json` body.
fn problem_detail(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let title = v.get("title").and_then(|t| t.as_str());
    let detail = v.get("detail").and_then(|t| t.as_str());
    match (title, detail) {
        (Some(t), Some(d)) => Some(format!(": {t} ({d})")),
        (Some(t), None) | (None, Some(t)) => Some(format!(": {t}")),
        _ => None,
    }
}

/// The start of a body for an error message: one line, at most 120 characters.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(512)]);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    one_line.chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 120 "), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn the_archives_read_needs_the_verifications_members_and_the_zip() {
        let (zip, verify) = VERIFY_WITH_EXPORT.split_last().unwrap();
        assert_eq!(*zip, EXPORT_ZIP_FIELD);
        assert_eq!(verify, MigratorConfig::VERIFY);
    }

    #[test]
    fn client_debug_does_not_show_the_key() {
        let key = Secret::new("0123456789abcdef0123456789abcdef");
        let c = JellyfinClient::new(
            "a",
            &Url::parse("http://127.0.0.1:1/").unwrap(),
            &key,
            Duration::from_secs(1),
        )
        .unwrap();
        assert!(!format!("{c:?}").contains(key.expose()));
    }
}
