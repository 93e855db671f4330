//! The leader's lease: one row, `scheduler_lease`, whose holder leads and whose epoch grows
//! by one at every change of holder. The epoch is the fencing token every claim carries.
//!
//! The holder trusts its lease until a deadline on the monotonic clock: the instant the
//! last successful renew (or acquire) attempt *started*, plus the lease's length. The
//! database set `expires_at` from its own `now()`, later than that start, so the local
//! deadline never passes the database's; no wall clocks are compared across machines.

use super::PgError;
use std::time::Duration;
use tokio::time::Instant;
use tokio_postgres::Client;

/// The lease row's name: one lease for the whole fleet.
pub const LEASE_NAME: &str = "scheduler";

/// This instance's view of the lease.
#[derive(Debug)]
pub struct Lease {
    holder: String,
    ttl: Duration,
    held: Option<Held>,
}

#[derive(Clone, Copy, Debug)]
struct Held {
    epoch: i64,
    trusted_until: Instant,
}

/// Who holds the lease, as the database says (for the status page, metrics, `doctor`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub holder: String,
    pub epoch: i64,
    /// Whether the lease had not expired when read.
    pub live: bool,
}

impl Lease {
    pub fn new(holder: impl Into<String>, ttl: Duration) -> Lease {
        Lease {
            holder: holder.into(),
            ttl,
            held: None,
        }
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// How often to call [`refresh`](Self::refresh): a third of the lease, so a leader
    /// rides out two failed renewals and a follower notices an expiry soon after.
    pub fn interval(&self) -> Duration {
        self.ttl / 3
    }

    /// The epoch to act under, if the lease is held and still trusted at `now`; `None`
    /// means: start nothing, claim nothing.
    pub fn trusted_epoch(&self, now: Instant) -> Option<i64> {
        self.held.filter(|h| now < h.trusted_until).map(|h| h.epoch)
    }

    /// The epoch held and until when it is trusted (trusted or not by now).
    pub fn held(&self) -> Option<(i64, Instant)> {
        self.held.map(|h| (h.epoch, h.trusted_until))
    }

    /// The epoch last held, trusted or not (to fence late writes: they carry it and
    /// change nothing if another instance took over).
    pub fn last_epoch(&self) -> Option<i64> {
        self.held.map(|h| h.epoch)
    }

    /// One attempt: renew the lease when held, else acquire it if it expired. Returns the
    /// trusted epoch after. An error (the database unreachable) changes nothing: a held
    /// lease stays trusted until its deadline, and the next attempt tries again.
    pub async fn refresh(&mut self, client: &Client) -> Result<Option<i64>, PgError> {
        let started = Instant::now();
        let ttl_secs = self.ttl.as_secs_f64();
        let row = match self.held {
            Some(held) => {
                client
                    .query_opt(
                        "UPDATE scheduler_lease
                            SET expires_at = now() + make_interval(secs => $4)
                          WHERE name = $1 AND holder = $2 AND epoch = $3
                      RETURNING epoch",
                        &[&LEASE_NAME, &self.holder, &held.epoch, &ttl_secs],
                    )
                    .await?
            }
            None => {
                client
                    .query_opt(
                        "INSERT INTO scheduler_lease AS l (name, holder, epoch, expires_at)
                         VALUES ($1, $2, 1, now() + make_interval(secs => $3))
                         ON CONFLICT (name) DO UPDATE
                            SET holder = excluded.holder, epoch = l.epoch + 1,
                                expires_at = excluded.expires_at
                          WHERE l.expires_at < now()
                      RETURNING epoch",
                        &[&LEASE_NAME, &self.holder, &ttl_secs],
                    )
                    .await?
            }
        };
        self.held = row.map(|row| Held {
            epoch: row.get(0),
            trusted_until: started + self.ttl,
        });
        Ok(self.trusted_epoch(Instant::now()))
    }

    /// Gives the lease up (a clean shutdown), so another instance takes over at once
    /// instead of after the lease runs out.
    pub async fn release(&mut self, client: &Client) -> Result<(), PgError> {
        if let Some(held) = self.held.take() {
            client
                .execute(
                    "UPDATE scheduler_lease SET expires_at = now()
                      WHERE name = $1 AND holder = $2 AND epoch = $3",
                    &[&LEASE_NAME, &self.holder, &held.epoch],
                )
                .await?;
        }
        Ok(())
    }
}

/// Who holds the lease now, if anyone ever did.
pub async fn current(client: &Client) -> Result<Option<Holder>, PgError> {
    let row = client
        .query_opt(
            "SELECT holder, epoch, expires_at > now() FROM scheduler_lease WHERE name = $1",
            &[&LEASE_NAME],
        )
        .await?;
    Ok(row.map(|r| Holder {
        holder: r.get(0),
        epoch: r.get(1),
        live: r.get(2),
    }))
}
