//! `doctor`'s checks of the PostgreSQL backend (`backend = "postgres"`): the database
//! answers, its schema is the version this program knows, and which instance leads. Read
//! only: nothing is created or migrated, and the URL is never shown.

use super::Check;
use crate::config::PostgresBackend;
use crate::postgres::{connect, lease, migrate};
use serde_json::json;
use std::time::Duration;

/// The database's checks, each step within `timeout`.
pub async fn examine(pg: &PostgresBackend, timeout: Duration) -> Vec<Check> {
    let client = match connect(&pg.url, timeout).await {
        Ok(c) => c,
        Err(e) => {
            return vec![Check::fail(
                "database",
                format!("cannot reach the database ({}): {e}", pg.url_source),
                "check the database URL and that PostgreSQL runs and accepts this host",
            )];
        }
    };
    let mut checks = vec![Check::ok("database", "the database answers")];
    checks.push(
        match tokio::time::timeout(timeout, migrate::version(&client)).await {
            Ok(Ok(v)) => schema(v),
            Ok(Err(e)) => Check::fail(
                "schema",
                format!("cannot read the schema version: {e}"),
                "check the database user's rights",
            ),
            Err(_) => Check::fail(
                "schema",
                "the database did not answer in time",
                "check the database's load",
            ),
        },
    );
    checks.push(
        match tokio::time::timeout(timeout, lease::current(&client)).await {
            Ok(Ok(holder)) => leader(holder),
            Ok(Err(e)) => Check::fail(
                "leader",
                format!("cannot read the lease: {e}"),
                "check the database user's rights",
            ),
            Err(_) => Check::fail(
                "leader",
                "the database did not answer in time",
                "check the database's load",
            ),
        },
    );
    checks
}

fn schema(found: i32) -> Check {
    let known = migrate::SCHEMA_VERSION;
    let data = json!({ "version": found, "known": known });
    if found == known {
        Check::ok("schema", format!("schema version {found}")).with(data)
    } else if found == 0 {
        Check::warn("schema", "no schema yet", "the first `run` applies it").with(data)
    } else if found < known {
        Check::warn(
            "schema",
            format!("schema version {found}, older than this program's ({known})"),
            "the next `run` of this version upgrades it",
        )
        .with(data)
    } else {
        Check::fail(
            "schema",
            format!("schema version {found}, newer than this program knows ({known})"),
            "upgrade this instance to the version the others run",
        )
        .with(data)
    }
}

fn leader(holder: Option<lease::Holder>) -> Check {
    match holder {
        Some(h) if h.live => Check::ok(
            "leader",
            format!("{} leads (lease epoch {})", h.holder, h.epoch),
        )
        .with(json!({ "holder": h.holder, "epoch": h.epoch, "live": true })),
        Some(h) => Check::warn(
            "leader",
            format!(
                "no instance leads now ({}'s lease, epoch {}, has expired)",
                h.holder, h.epoch
            ),
            "start an instance, or see why the running ones cannot renew the lease (their logs)",
        )
        .with(json!({ "holder": h.holder, "epoch": h.epoch, "live": false })),
        None => Check::warn(
            "leader",
            "no instance has led yet",
            "start an instance with this config",
        ),
    }
}
