//! Leadership: a task that keeps this instance's lease ([`super::lease`]) on a connection of
//! its own, renewing it (or trying to acquire it) every third of `lease_ttl`, and tells
//! the rest of the daemon where it stands through a [`watch`] channel ([`Role`]).
//!
//! Whoever acts on the role checks the trust deadline itself
//! ([`Leadership::trusted_epoch`]): the role says until when the lease is trusted, so a
//! leader cut off from the database stops trusting it at that instant even though no new
//! role is published (its renewals hang or fail).
//!
//! On every new epoch (an acquisition) the open claims of older epochs are adopted
//! ([`super::claims::adopt`]) and handed over on `adopted`, before the role says
//! `Leading`: the run tasks re-attach them, and due work is claimed only after that. Every
//! renewal adopts again, for the claims handed over since (`trigger --no-wait`) and the
//! `trigger` claims whose heartbeat is older than the lease.

use super::claims::{self, Adopted};
use super::lease::{self, Holder, Lease};
use super::{PgError, connect};
use crate::secret::Secret;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Where this instance stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// No answer from the database yet.
    Unknown,
    /// This instance holds the lease under `epoch`, trusted until `trusted_until`.
    Leading { epoch: i64, trusted_until: Instant },
    /// Another instance leads (`None`: nobody holds a live lease, or the database did not
    /// say); this one takes over once the lease expires.
    Following { leader: Option<Holder> },
}

/// The handle on the leadership task.
#[derive(Clone, Debug)]
pub struct Leadership {
    role: watch::Receiver<Role>,
}

impl Leadership {
    /// Starts the task for `holder` with `ttl` on the database at `url`. Adopted claims go
    /// to `adopted`. Cancelling `stop` ends it, giving the lease up so another instance
    /// takes over at once.
    pub fn spawn(
        url: Secret,
        holder: String,
        ttl: Duration,
        adopted: mpsc::Sender<Vec<Adopted>>,
        stop: CancellationToken,
    ) -> Leadership {
        let (tx, rx) = watch::channel(Role::Unknown);
        let task = Task {
            url,
            lease: Lease::new(holder, ttl),
            client: None,
            adopted_epoch: None,
            adopted,
            role: tx,
        };
        tokio::spawn(task.run(stop));
        Leadership { role: rx }
    }

    /// The role last published.
    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    /// The epoch to claim and start under, if this instance leads and its lease is still
    /// trusted now; `None`: start nothing.
    pub fn trusted_epoch(&self) -> Option<i64> {
        match *self.role.borrow() {
            Role::Leading {
                epoch,
                trusted_until,
            } if Instant::now() < trusted_until => Some(epoch),
            _ => None,
        }
    }

    /// Until the role changes (or the task ended: then `false`).
    pub async fn changed(&mut self) -> bool {
        self.role.changed().await.is_ok()
    }
}

struct Task {
    url: Secret,
    lease: Lease,
    client: Option<Client>,
    /// The epoch whose adoption is done.
    adopted_epoch: Option<i64>,
    adopted: mpsc::Sender<Vec<Adopted>>,
    role: watch::Sender<Role>,
}

impl Task {
    async fn run(mut self, stop: CancellationToken) {
        let interval = self.lease.interval();
        loop {
            let attempt = Instant::now();
            // A renewal that hangs (a half-open connection) counts as failed at the next
            // tick: the trust deadline runs from this attempt's start either way.
            match tokio::time::timeout(interval, self.attempt()).await {
                Ok(Ok(role)) => self.publish(role),
                Ok(Err(e)) => self.failed(&e.to_string()),
                Err(_) => self.failed("no answer within a third of lease_ttl"),
            }
            tokio::select! {
                _ = tokio::time::sleep_until(attempt + interval) => {}
                _ = stop.cancelled() => break,
            }
        }
        self.release(interval).await;
    }

    /// Renew or acquire; on a new epoch, adopt before saying `Leading`.
    async fn attempt(&mut self) -> Result<Role, PgError> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.client = Some(connect(&self.url, self.lease.interval()).await?);
        }
        let Some(client) = self.client.as_ref() else {
            return Ok(Role::Unknown);
        };
        if self.lease.refresh(client).await?.is_none() {
            return Ok(Role::Following {
                leader: lease::current(client).await?.filter(|h| h.live),
            });
        }
        let Some((epoch, trusted_until)) = self.lease.held() else {
            return Ok(Role::Unknown);
        };
        // At a new epoch, the claims the old leader left; at every renewal after it, the
        // claims handed over since (`trigger --no-wait`) and the `trigger` claims whose
        // heartbeat went stale (killed, or paused longer than the lease).
        let adopted = claims::adopt(client, self.lease.holder(), epoch).await?;
        if self.adopted_epoch != Some(epoch) {
            info!(epoch, adopted = adopted.len(), "leading: lease acquired");
            self.adopted_epoch = Some(epoch);
        } else if !adopted.is_empty() {
            info!(
                epoch,
                adopted = adopted.len(),
                "adopted runs handed over to the leader"
            );
        }
        if !adopted.is_empty() && self.adopted.send(adopted).await.is_err() {
            warn!("nobody takes the adopted runs any more");
        }
        Ok(Role::Leading {
            epoch,
            trusted_until,
        })
    }

    fn publish(&self, role: Role) {
        let was_leading = matches!(*self.role.borrow(), Role::Leading { .. });
        if was_leading && !matches!(role, Role::Leading { .. }) {
            warn!("no longer leading: another instance holds the lease");
        }
        self.role.send_if_modified(|r| {
            let changed = *r != role;
            *r = role;
            changed
        });
    }

    /// The database did not answer: the connection is dropped (the next attempt connects
    /// again) and the role stays, its trust deadline running out on its own.
    fn failed(&mut self, why: &str) {
        self.client = None;
        warn!(error = %why, "lease not renewed");
    }

    /// A clean stop: give the lease up, within one interval at most.
    async fn release(mut self, interval: Duration) {
        if let Some(client) = self.client.take() {
            let released = tokio::time::timeout(interval, self.lease.release(&client)).await;
            if !matches!(released, Ok(Ok(()))) {
                warn!("the lease was not given up; another instance takes over once it expires");
            }
        }
        self.role.send_replace(Role::Following { leader: None });
    }
}
