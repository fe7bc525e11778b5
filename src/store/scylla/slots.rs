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

use std::collections::BTreeMap;

use uuid::Uuid;

use super::{ScyllaStore, Statements, buckets, errors};
use crate::model::ids::SessionId;
use crate::model::records::SessionRecord;
use crate::model::time::Timestamp;
use crate::store::StoreError;

/// How many compare-and-set rounds one `Issue` may lose before it gives up (`UNAVAILABLE`):
/// enough for dozens of simultaneous logins of one user, each round won by one of them.
const MAX_ROUNDS: u32 = 64;
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
        let user = record.user_id.as_str();
        for round in 0..MAX_ROUNDS {
            if round > 0 {
                let ceiling = MAX_BACKOFF_MS.min(1 << round.min(5));
                let pause = rand::Rng::gen_range(&mut rand::thread_rng(), 0..=ceiling);
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            }
            let now = Timestamp::now();
            let current: Option<Slots> = self
                .first_row::<(Option<Slots>,)>("reading session slots", &st.select_slots, (user,))
                .await?
                .map(|(slots,)| slots.unwrap_or_default());
            let counted = self.counted(st, record, current.as_ref(), now).await?;
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
                return Ok(evicted);
            };
            let applied = match &current {
                None => self.cas(&st.insert_slots, (user, &next, ttl)).await?,
                Some(expected) => {
                    self.cas(&st.update_slots, (ttl, &next, user, expected))
                        .await?
                }
            };
            match applied {
                Some(true) => return Ok(evicted),
                Some(false) => continue,
                // Unknown: the serial read of the next round shows whether it applied.
                None => {
                    if self.slot_is_ours(st, record).await? {
                        return Ok(evicted);
                    }
                }
            }
        }
        Err(StoreError::Unavailable(format!(
            "user {}: too many concurrent logins to settle the session cap",
            record.user_id
        )))
    }

    /// The sessions that count against the cap now: the slots (less those known to be over)
    /// and whatever the user's listing shows active, which heals a set a crash left short.
    async fn counted(
        &self,
        st: &Statements,
        record: &SessionRecord,
        slots: Option<&Slots>,
        now: Timestamp,
    ) -> Result<Slots, StoreError> {
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
            // Not listed active: revoked (drop it) or still being created by the `Issue`
            // that claimed it (keep it: it will be live in a moment).
            let stored = self
                .read_session(&st.select_session, SessionId::from_uuid(*id), now)
                .await?;
            if stored.is_none_or(|r| !r.is_revoked()) {
                counted.insert(*id, *expires);
            }
        }
        counted.remove(&record.id.as_uuid());
        Ok(counted)
    }

    /// Runs a slot compare-and-set: `Some(applied)`, or `None` when its outcome is unknown.
    async fn cas(
        &self,
        ps: &scylla::statement::prepared::PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<Option<bool>, StoreError> {
        match self.session.execute_unpaged(ps, values).await {
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
