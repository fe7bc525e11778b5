//! The per-user session cap on ScyllaDB, decided by compare-and-set.
//!
//! `user_session_slots` holds, per user, the sessions that count against the cap (id →
//! `expires_at`). An `Issue` reads it at serial consistency, works out the new set (its own
//! session plus the newest `cap - 1` others) and writes it with `IF slots = <what it read>`.
//! Of racing `Issue`s of one user exactly one such write applies per round; the others read
//! again and recompute, so each winner evicts from what the previous winner left. Paxos runs
//! on that user's partition only: no lock is shared between users.
//!
//! After its write applies, the winner revokes the sessions it evicted and then creates its
//! own. If it dies in between, the evicted sessions stay live and its own is never created,
//! so the user still has at most `cap`; the next `Issue` sees the evicted ones in the user's
//! listing (which is merged in) and evicts them again.
//!
//! A slot whose session does not exist yet belongs to a winner between its write and its
//! create, and that winner may still be revoking what it evicted. A racer that sees one waits
//! for it rather than decide on that half-done state: evicting a session that is not yet
//! created would miss it (the revocation finds nothing, then the create makes it live), and a
//! session the winner is still revoking would look active and could be kept in its place.
//! Either way the user would end with more than `cap`. A slot pending for longer than
//! [`PENDING_PATIENCE`] belongs to a winner that died, and counts as gone.
//!
//! Time: a slot's expiry and the TTL of the slot row are session time (the store's clock).
//! How long a round may take ([`SETTLE_PATIENCE`]) and how long a pending slot is waited for
//! are real time: they bound how long one process takes between two writes. The pending slot's
//! age is read from its session id (version 7, minted on the wall clock), so it is compared
//! with the wall clock; a test's clock moved an hour ahead must not make every pending slot
//! look abandoned, nor a clock that stands still make one wait forever.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::{CasPoint, ScyllaStore, Statements, buckets, errors};
use crate::model::clock::{Clock, SystemClock};
use crate::model::ids::SessionId;
use crate::model::records::SessionRecord;
use crate::model::time::Timestamp;
use crate::store::StoreError;

/// How long one `Issue` may take to settle the cap before it gives up (`UNAVAILABLE`):
/// enough for dozens of simultaneous logins of one user, each round won by one of them, and
/// within the request deadline.
const SETTLE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a slot may wait for its session to be created before its winner counts as dead.
const PENDING_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);
/// The longest pause between two rounds; a random share of it spreads racers apart so that
/// Paxos is not fought over by all of them at once.
const MAX_BACKOFF_MS: u64 = 32;

/// Session id → `expires_at` (µs).
type Slots = BTreeMap<Uuid, i64>;

impl ScyllaStore {
    /// Claims a slot for `record` among its user's `cap`; returns the sessions it evicted,
    /// which the caller revokes.
    pub(super) async fn claim_slot(
        &self,
        st: &Statements,
        record: &SessionRecord,
        cap: usize,
    ) -> Result<Vec<SessionId>, StoreError> {
        let deadline = tokio::time::Instant::now() + SETTLE_PATIENCE;
        let mut round: u32 = 0;
        let mut last_error = None;
        while tokio::time::Instant::now() < deadline {
            round = round.saturating_add(1);
            if round > 1 {
                let ceiling = MAX_BACKOFF_MS.min(1 << round.min(5));
                let pause = rand::Rng::gen_range(&mut rand::thread_rng(), 0..=ceiling);
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            }
            match self.slot_round(st, record, cap).await {
                Ok(Some(evicted)) => return Ok(evicted),
                Ok(None) => {}
                // A timed-out read or write decides nothing: each round starts from a fresh
                // serial read, so the next one settles whatever this one left. Once only: a
                // store that is down fails every round, and should fail the call fast.
                Err(StoreError::Unavailable(message)) if last_error.is_none() => {
                    tracing::warn!(user = %record.user_id, round, error = %message, "session cap round failed; trying once more");
                    last_error = Some(message);
                }
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Unavailable(match last_error {
            Some(message) => format!(
                "user {}: the session cap could not be settled in {SETTLE_PATIENCE:?}: {message}",
                record.user_id
            ),
            None => format!(
                "user {}: too many concurrent logins to settle the session cap",
                record.user_id
            ),
        }))
    }

    /// One round of [`claim_slot`](Self::claim_slot): the sessions it evicted once its
    /// compare-and-set applied, `None` when another `Issue` got there first or is midway.
    async fn slot_round(
        &self,
        st: &Statements,
        record: &SessionRecord,
        cap: usize,
    ) -> Result<Option<Vec<SessionId>>, StoreError> {
        let user = record.user_id.as_str();
        let now = self.clock.now();
        let current: Option<Slots> = self
            .first_row::<(Option<Slots>,)>("reading session slots", &st.select_slots, (user,))
            .await?
            .map(|(slots,)| slots.unwrap_or_default());
        let Some(counted) = self.counted(st, record, current.as_ref(), now).await? else {
            // Another winner is between its write and its create: decide after it.
            return Ok(None);
        };
        // Newest first: v7 ids order by creation time.
        let mut ids: Vec<(Uuid, i64)> = counted.into_iter().collect();
        ids.sort_by_key(|(id, _)| std::cmp::Reverse(*id));
        let keep = cap.saturating_sub(1);
        let evicted: Vec<SessionId> = ids
            .iter()
            .skip(keep)
            .map(|(id, _)| SessionId::from_uuid(*id))
            .collect();
        let mut next: Slots = ids.into_iter().take(keep).collect();
        next.insert(record.id.as_uuid(), record.expires_at.as_micros());
        let longest = next.values().copied().max().unwrap_or(0);
        let Some(ttl) = buckets::ttl_secs(Timestamp::from_micros(longest), now) else {
            return Ok(Some(evicted));
        };
        let applied = match &current {
            None => self.cas(&st.insert_slots, (user, &next, ttl)).await?,
            Some(expected) => {
                self.cas(&st.update_slots, (ttl, &next, user, expected))
                    .await?
            }
        };
        Ok(match applied {
            Some(true) => Some(evicted),
            Some(false) => None,
            // Unknown: a serial read shows whether it applied; if not, the next round does.
            None => self.slot_is_ours(st, record).await?.then_some(evicted),
        })
    }

    /// The sessions that count against the cap now: the slots (less those known to be over)
    /// and whatever the user's listing shows active, which heals a set a crash left short.
    /// `None` while another winner's session is still being created (see the module docs).
    async fn counted(
        &self,
        st: &Statements,
        record: &SessionRecord,
        slots: Option<&Slots>,
        now: Timestamp,
    ) -> Result<Option<Slots>, StoreError> {
        use crate::store::Store;
        let active = self.list_user_sessions(&record.user_id, None).await?;
        let mut counted: Slots = active
            .iter()
            .map(|r| (r.id.as_uuid(), r.expires_at.as_micros()))
            .collect();
        for (id, expires) in slots.into_iter().flatten() {
            if counted.contains_key(id) || *expires <= now.as_micros() {
                continue;
            }
            // Not listed active: revoked (drop it), or not yet created by the `Issue` that
            // claimed it (wait for it), or claimed by an `Issue` that died (drop it).
            if *id == record.id.as_uuid() {
                continue;
            }
            let stored = self
                .read_session(&st.select_session, SessionId::from_uuid(*id), now)
                .await?;
            match stored {
                Some(r) if r.is_revoked() => {}
                Some(_) => {
                    counted.insert(*id, *expires);
                }
                None if claimed_recently(*id, SystemClock.now()) => return Ok(None),
                None => {}
            }
        }
        counted.remove(&record.id.as_uuid());
        Ok(Some(counted))
    }

    /// Runs a slot compare-and-set: `Some(applied)`, or `None` when its outcome is unknown.
    async fn cas(
        &self,
        ps: &scylla::statement::prepared::PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<Option<bool>, StoreError> {
        match self.execute_at(CasPoint::SlotWrite, ps, values).await {
            Ok(result) => super::cas_applied(result).map(Some),
            Err(e) if errors::cas_outcome_unknown(&e) => {
                tracing::warn!(error = %e, "session slot compare-and-set outcome unknown");
                Ok(None)
            }
            Err(e) => Err(errors::execution("claiming a session slot", e)),
        }
    }

    async fn slot_is_ours(
        &self,
        st: &Statements,
        record: &SessionRecord,
    ) -> Result<bool, StoreError> {
        let slots = self
            .first_row::<(Option<Slots>,)>(
                "reading session slots",
                &st.select_slots,
                (record.user_id.as_str(),),
            )
            .await?;
        Ok(slots
            .and_then(|(s,)| s)
            .is_some_and(|s| s.contains_key(&record.id.as_uuid())))
    }
}

/// Whether the session of a slot was made (its v7 id says when, on the wall clock) less than
/// [`PENDING_PATIENCE`] before `wall_now`, so that its `Issue` may still be creating it.
fn claimed_recently(id: Uuid, wall_now: Timestamp) -> bool {
    let Some(made) = id.get_timestamp() else {
        return false;
    };
    let (secs, nanos) = made.to_unix();
    let made_us = i64::try_from(secs)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000)
        .saturating_add(i64::from(nanos / 1000));
    Timestamp::from_micros(made_us).plus(PENDING_PATIENCE) > wall_now
}
