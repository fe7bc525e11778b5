//! Refresh-token rotation: `Refresh`, its grace for many tabs and retried requests, and
//! `StepUp`, which continues a session with a new sign-in.
//!
//! The store decides every rotation by compare-and-set, and writes the rotation's audit event
//! with it when it wins (one write per refresh, not two); this module only classifies what a
//! presented token is against the session as stored, and answers accordingly (the current
//! generation of a session this replica holds rotates from its cached copy, with no read: the
//! compare-and-set decides all the same):
//! - the current generation rotates (one racer wins the compare-and-set; the others re-read
//!   and find themselves replaying the previous generation);
//! - the previous generation, within `--refresh-grace` of its rotation, gets the same successor
//!   again, re-derived from the session's salt (see `refresh`), with nothing written but the
//!   audit entry (a racer whose own rotation just lost had already signed that very pair
//!   while its compare-and-set waited, and answers with it);
//! - anything else is reuse: the previous generation after the grace (`replay_after_grace`) or
//!   an older one (`stale_generation`), and the session is revoked.

use std::time::Duration;

use metrics::Counter;

use super::audit::{self, AuditEntry, AuditKind, Caller, Role};
use super::client::Client;
use super::error::{DomainError, TokenProblem};
use super::refresh::RefreshToken;
use super::secrets::Keyring;
use super::sessions::{Issued, MintedPair, Sessions, SignInRequest};
use crate::hooks::Step;
use crate::model::ids::SessionId;
use crate::model::records::{
    AuditRecord, ClientSeen, RefreshHash, RefreshState, RotationStep, SessionRecord, SignIn,
};
use crate::model::time::Timestamp;
use crate::store::Rotation;

/// How often a rotation that lost its compare-and-set re-reads and decides again before the
/// store is taken to be inconsistent. A loser normally decides on its first re-read.
const ROTATION_ATTEMPTS: usize = 4;

/// Why a presented refresh token counts as reuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReuseKind {
    /// The previous generation, presented after the grace.
    ReplayAfterGrace,
    /// A generation older than the previous one (or never current).
    StaleGeneration,
}

impl ReuseKind {
    /// The stable name carried in the audit event and the metric.
    pub fn as_str(self) -> &'static str {
        match self {
            ReuseKind::ReplayAfterGrace => "replay_after_grace",
            ReuseKind::StaleGeneration => "stale_generation",
        }
    }
}

/// What a presented refresh token is, against its session as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presented {
    /// The current generation: rotate it.
    Current,
    /// The previous generation inside the grace: answer the current one again.
    GraceReplay,
    /// Reuse: revoke the session.
    Reuse(ReuseKind),
}

/// Classifies a presented token (`state`, authenticated by its tag) against `record` at
/// `now`. A grace replay needs the successor to be derivable (the session has a salt); the
/// caller checks that the derived token is indeed the stored one.
pub fn classify(
    record: &SessionRecord,
    state: &RefreshState,
    now: Timestamp,
    grace: Duration,
) -> Presented {
    if same(record.refresh_state(), state) {
        return Presented::Current;
    }
    match record.previous_refresh {
        Some(previous) if same(previous.state, state) => {
            let within = !grace.is_zero() && now <= previous.rotated_at.plus(grace);
            if within && record.refresh_salt.is_some() {
                Presented::GraceReplay
            } else {
                Presented::Reuse(ReuseKind::ReplayAfterGrace)
            }
        }
        _ => Presented::Reuse(ReuseKind::StaleGeneration),
    }
}

/// Generation and hash equal, the hash compared in constant time.
fn same(a: RefreshState, b: &RefreshState) -> bool {
    a.generation == b.generation
        && bool::from(subtle::ConstantTimeEq::ct_eq(&a.hash.0[..], &b.hash.0[..]))
}

/// The current generation's token of `record`, when it can be derived and is the one stored.
fn current_token(keys: &Keyring, record: &SessionRecord) -> Option<RefreshToken> {
    let salt = record.refresh_salt?;
    let token = RefreshToken::derive(keys, record.id, record.refresh_generation, &salt);
    let stored: &RefreshHash = &record.refresh_hash;
    let derived = token.hash(keys);
    bool::from(subtle::ConstantTimeEq::ct_eq(&derived.0[..], &stored.0[..])).then_some(token)
}

/// The pair `answer` hands out.
enum Pair<'a> {
    /// Signed already, while a rotation's write waited (or by a rotation that lost).
    Signed(MintedPair),
    /// To sign for this caller with this refresh token, while a replay's audit event is
    /// written.
    ToSign(&'a Caller, &'a RefreshToken),
}

/// What a rotation another one overtook had tried.
struct Lost {
    /// The session as this rotation would have left it.
    attempted: SessionRecord,
    /// The pair it signed for that session, never handed out.
    minted: MintedPair,
}

/// Whether the pair signed for `attempted` is the one `current` would be signed: the same
/// refresh state (the winner derived the same successor from the same salt and generation)
/// and the same claims (a `StepUp` that won carries a new sign-in). Only the instant differs.
fn signs_alike(attempted: &SessionRecord, current: &SessionRecord) -> bool {
    same(current.refresh_state(), &attempted.refresh_state())
        && attempted.id == current.id
        && attempted.sign_in == current.sign_in
        && attempted.expires_at == current.expires_at
}

/// What a rotation changes besides the token.
#[derive(Clone, Debug, Default)]
struct Changes {
    client: Option<ClientSeen>,
    sign_in: Option<SignIn>,
}

impl Sessions {
    /// Trades a refresh token for a new pair (see the module docs for the grace). With a
    /// `client`, the session records where it is now used from.
    pub async fn refresh(
        &self,
        caller: &Caller,
        token: &str,
        client: Option<&Client>,
    ) -> Result<Issued, DomainError> {
        let presented =
            RefreshToken::parse(&self.keys, token).map_err(DomainError::RefreshToken)?;
        let id = presented.session_id;
        let state = RefreshState {
            generation: presented.generation,
            hash: presented.hash(&self.keys),
        };
        let mut record = match self.cached_at(id, &state).await {
            Some(cached) if self.still_stands(&cached).await?.is_ok() => cached,
            // Refusals are decided on the store's copy, never on a cached one (whose
            // `last_seen_at` lags what other replicas saw).
            _ => {
                let Some(stored) = self.store.get_session(id).await? else {
                    return Err(DomainError::RefreshToken(TokenProblem::UnknownSession));
                };
                if let Err(ended) = self.still_stands(&stored).await? {
                    return Err(DomainError::RefreshToken(ended.problem()));
                }
                stored
            }
        };
        let audit_client = client.cloned().unwrap_or_default();
        let changes = Changes {
            client: client.map(seen_from),
            sign_in: None,
        };
        // The pair a lost rotation signed: when the winner wrote the very successor this call
        // tried to (the same salt and generation), it is the grace replay's answer too.
        let mut lost: Option<Lost> = None;
        for _ in 0..ROTATION_ATTEMPTS {
            let grace = self.policy.refresh_grace;
            match classify(&record, &state, self.clock.now(), grace) {
                Presented::Current => {
                    self.hooks.at(Step::RefreshChecked(id)).await;
                    let audit = self.audit_of(
                        caller,
                        &record,
                        &audit_client,
                        AuditKind::SessionRefreshed,
                        "",
                    );
                    match self.rotate(caller, record, &changes, audit).await? {
                        Ok((next, minted)) => {
                            let rotated = Some(&self.caches.meters.refreshes.rotated);
                            return self.answer(next, Pair::Signed(minted), None, rotated).await;
                        }
                        Err((current, attempt)) => {
                            record = current;
                            lost = Some(attempt);
                        }
                    }
                }
                Presented::GraceReplay => {
                    let Some(token) = current_token(&self.keys, &record) else {
                        let kind = ReuseKind::ReplayAfterGrace;
                        return Err(self
                            .reuse_detected(caller, &record, &audit_client, kind)
                            .await);
                    };
                    // Nothing is written for a replay but its audit event.
                    let audit = self.audit_of(
                        caller,
                        &record,
                        &audit_client,
                        AuditKind::SessionRefreshed,
                        "grace_replay",
                    );
                    let replayed = Some(&self.caches.meters.refreshes.grace_replay);
                    let pair = match lost.take() {
                        Some(Lost {
                            attempted,
                            minted: Ok(signed),
                            ..
                        }) if signs_alike(&attempted, &record) => Pair::Signed(Ok(signed)),
                        _ => Pair::ToSign(caller, &token),
                    };
                    return self.answer(record, pair, Some(audit), replayed).await;
                }
                Presented::Reuse(kind) => {
                    return Err(self
                        .reuse_detected(caller, &record, &audit_client, kind)
                        .await);
                }
            }
        }
        Err(unsettled(id))
    }

    /// This replica's cached copy of session `id` when it may rotate `state`: the copy is
    /// current by its revocation epoch while the caches are fresh, and `state` is exactly its
    /// refresh state. Rotating from it reads nothing; the store's compare-and-set still
    /// decides, so a copy that a rotation or a revocation elsewhere has overtaken comes back
    /// as `Rotation::Lost` (with the stored session, classified again) or `Rotation::Revoked`.
    /// Any other token (a grace replay, a reuse) is classified against the store's copy.
    async fn cached_at(&self, id: SessionId, state: &RefreshState) -> Option<SessionRecord> {
        if !self
            .caches
            .is_fresh(self.clock.now(), self.policy.validate_max_lag())
        {
            return None;
        }
        let entry = self.caches.sessions.get(&id).await.flatten()?;
        let usable = entry.epoch == self.caches.session_epochs.of(&id)
            && same(entry.record.refresh_state(), state);
        usable.then(|| SessionRecord::clone(&entry.record))
    }

    /// Continues the session behind `access_token` with a new sign-in: the same session, new
    /// tokens whose claims carry it. The refresh token it replaces answers as by `Refresh`'s
    /// grace, so a tab that refreshes with it meanwhile joins the same chain.
    pub async fn step_up(
        &self,
        caller: &Caller,
        access_token: &str,
        sign_in: SignInRequest,
        client: Option<&Client>,
    ) -> Result<Issued, DomainError> {
        let sign_in = sign_in.check(self.clock.now())?;
        let (claims, _) = self.authenticate(access_token).await?;
        let id = claims.session_id;
        let Some(mut record) = self.store.get_session(id).await? else {
            return Err(DomainError::AccessToken(TokenProblem::UnknownSession));
        };
        let audit_client = client.cloned().unwrap_or_default();
        let changes = Changes {
            client: client.map(seen_from),
            sign_in: Some(sign_in),
        };
        for _ in 0..ROTATION_ATTEMPTS {
            if let Err(ended) = self.still_stands(&record).await? {
                return Err(DomainError::AccessToken(ended.problem()));
            }
            let audit = self.audit_of(
                caller,
                &record,
                &audit_client,
                AuditKind::SessionSteppedUp,
                "",
            );
            match self.rotate(caller, record, &changes, audit).await? {
                Ok((next, minted)) => {
                    return self.answer(next, Pair::Signed(minted), None, None).await;
                }
                // A refresh got there first: step up its successor instead.
                Err((current, _)) => record = current,
            }
        }
        Err(unsettled(id))
    }

    /// One compare-and-set from `record`'s current generation to the next, derived token,
    /// written with `audit` when it wins. `Ok` with the session as it now stands and its new
    /// pair for `caller` (signed, not yet handed out or cached) when this call won; `Err` with
    /// the session as the store now has it, and what this call had tried, when another
    /// rotation did.
    async fn rotate(
        &self,
        caller: &Caller,
        record: SessionRecord,
        changes: &Changes,
        audit: AuditRecord,
    ) -> Result<Result<(SessionRecord, MintedPair), (SessionRecord, Lost)>, DomainError> {
        let id = record.id;
        // A session stored before tokens were derived gets its salt with its first rotation.
        let salt = record.refresh_salt.unwrap_or_else(RefreshToken::new_salt);
        let generation = record.refresh_generation.wrapping_add(1);
        let token = RefreshToken::derive(&self.keys, id, generation, &salt);
        let now = self.clock.now();
        let step = RotationStep {
            expected: record.refresh_state(),
            next: RefreshState {
                generation,
                hash: token.hash(&self.keys),
            },
            salt,
            at: now,
            client: changes.client.clone(),
            sign_in: changes.sign_in.clone(),
        };
        let next = step.applied_to(record);
        // Taken before the write: a revocation landing after it makes the entry kept below
        // stale.
        let epoch = self.caches.session_epochs.of(&id);
        // The new pair is signed while the compare-and-set waits for the store (the write is
        // polled first), as `Issue` does; it is handed out, and its access token cached, only
        // by `answer`, once the rotation has won and the session still stands. A lost
        // rotation's signature is wasted: one per losing tab.
        let write = self
            .store
            .rotate_refresh(id, &step, std::slice::from_ref(&audit));
        let (rotated, minted) =
            tokio::join!(write, async { self.mint_pair(caller, &next, &token, now) });
        match rotated? {
            // Copies of the session cached elsewhere show the old client and sign-in; the new
            // tokens carry the new generation (`sgen`), which makes the first check of one
            // there read the session again. This replica keeps the session as it now stands.
            Rotation::Won => {
                audit::log(&audit);
                self.hooks.at(Step::RotationWritten(id)).await;
                self.keep_session(next.clone(), epoch).await;
                Ok(Ok((next, minted)))
            }
            Rotation::Lost(current) => Ok(Err((
                *current,
                Lost {
                    attempted: next,
                    minted,
                },
            ))),
            // Lost to a revocation, not to a thief: no alarm.
            Rotation::Revoked => Err(DomainError::RefreshToken(TokenProblem::Revoked)),
            Rotation::Gone => Err(DomainError::RefreshToken(TokenProblem::UnknownSession)),
        }
    }

    /// The audit event of a rotation, a step-up or a replay of `session` from `client`, logged
    /// once it is stored (a lost rotation's never is).
    fn audit_of(
        &self,
        caller: &Caller,
        session: &SessionRecord,
        client: &Client,
        kind: AuditKind,
        reason: &str,
    ) -> AuditRecord {
        AuditEntry::new(kind, caller, Role::User)
            .session(session.user_id.as_str(), Some(session.id))
            .client(&client.ip, &client.user_agent)
            .reason(reason)
            .stamped(self.clock.now())
    }

    /// Hands out `pair` for `session`, after checking once more that the session stands (a
    /// switch or a sign-out that landed meanwhile ends it too: say so rather than hand out
    /// tokens that every surface rejects). `audit` is the event still to write (a rotation's
    /// went with it), `counted` the refresh outcome to count.
    async fn answer(
        &self,
        session: SessionRecord,
        pair: Pair<'_>,
        audit: Option<AuditRecord>,
        counted: Option<&Counter>,
    ) -> Result<Issued, DomainError> {
        if let Err(ended) = self.still_stands(&session).await? {
            return Err(DomainError::RefreshToken(ended.problem()));
        }
        let signed = || match pair {
            Pair::Signed(minted) => minted,
            Pair::ToSign(caller, token) => {
                self.mint_pair(caller, &session, token, self.clock.now())
            }
        };
        let minted = match audit {
            // A replay's pair is signed while its audit event is written (the append polled
            // first), and leaves only once that write has landed.
            Some(audit) => {
                let append = self.store.append_audit(std::slice::from_ref(&audit));
                let (appended, minted) = tokio::join!(append, async { signed() });
                appended?;
                audit::log(&audit);
                minted
            }
            None => signed(),
        };
        if let Some(counter) = counted {
            counter.increment(1);
        }
        let (tokens, minted) = minted?;
        self.keep_minted(minted);
        Ok(Issued {
            session: session.into(),
            tokens,
        })
    }

    /// Revokes a session whose rotated-away refresh token came back, and says so.
    async fn reuse_detected(
        &self,
        caller: &Caller,
        record: &SessionRecord,
        client: &Client,
        kind: ReuseKind,
    ) -> DomainError {
        tracing::warn!(session_id = %record.id, user_id = %record.user_id, kind = kind.as_str(), "refresh token reuse; revoking session");
        let refreshes = &self.caches.meters.refreshes;
        match kind {
            ReuseKind::ReplayAfterGrace => refreshes.replay_after_grace.increment(1),
            ReuseKind::StaleGeneration => refreshes.stale_generation.increment(1),
        }
        let audit = AuditEntry::new(AuditKind::RefreshTokenReuse, caller, Role::User)
            .session(record.user_id.as_str(), Some(record.id))
            .client(&client.ip, &client.user_agent)
            .reason(kind.as_str())
            .finish(self.clock.now());
        match self
            .revoke_ids(&[record.id], "refresh_token_reuse", vec![audit])
            .await
        {
            Ok(_) => DomainError::RefreshTokenReuse,
            Err(e) => e,
        }
    }
}

fn seen_from(client: &Client) -> ClientSeen {
    ClientSeen {
        ip: client.ip.clone(),
        user_agent: client.user_agent.clone(),
        device_name: client.device_name.clone(),
    }
}

fn unsettled(id: crate::model::ids::SessionId) -> DomainError {
    DomainError::Store(crate::store::StoreError::Unavailable(format!(
        "refresh rotation of session {id} could not be settled"
    )))
}

#[cfg(test)]
mod tests {
    //! The rotation state machine against a model store that applies compare-and-set steps as
    //! both backends do, with refreshes split into their read and their decision so that
    //! proptest chooses every interleaving of many refreshes, revocations and clock moves.

    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;
    use crate::model::ids::{SessionId, TenantId, UserId};

    fn keys() -> Keyring {
        let dir = tempfile::tempdir().expect("tempdir");
        crate::keystore::load_or_create(dir.path()).expect("keys")
    }

    /// One session in a store that decides rotations by compare-and-set.
    struct Model {
        record: SessionRecord,
    }

    impl Model {
        fn new(keys: &Keyring, now: Timestamp) -> (Self, String) {
            let id = SessionId::new();
            let salt = RefreshToken::new_salt();
            let first = RefreshToken::derive(keys, id, 0, &salt);
            let record = SessionRecord {
                id,
                user_id: UserId::parse("user_id", "model").expect("user"),
                tenant_id: TenantId::none(),
                created_at: now,
                last_seen_at: now,
                expires_at: now.plus(Duration::from_secs(86_400)),
                ip: String::new(),
                user_agent: String::new(),
                device_name: String::new(),
                metadata: BTreeMap::new(),
                refresh_generation: 0,
                refresh_hash: first.hash(keys),
                refresh_salt: Some(salt),
                previous_refresh: None,
                idle_timeout: None,
                sign_in: SignIn {
                    auth_time: now,
                    acr: String::new(),
                    amr: Vec::new(),
                },
                revoked_at: None,
                revoke_reason: String::new(),
            };
            (Self { record }, first.encode(keys))
        }

        /// `Store::rotate_refresh` as the backends implement it.
        fn rotate(&mut self, step: &RotationStep) -> Rotation {
            if self.record.is_revoked() {
                return Rotation::Revoked;
            }
            if self.record.refresh_state() != step.expected {
                return Rotation::Lost(Box::new(self.record.clone()));
            }
            self.record = step.applied_to(self.record.clone());
            Rotation::Won
        }
    }

    /// Where one in-flight refresh is.
    enum Phase {
        /// It has parsed its token and not read the session yet.
        Read,
        /// It holds this copy of the session and decides next.
        Decide(Box<SessionRecord>),
    }

    struct InFlight {
        token: String,
        phase: Phase,
    }

    /// What a refresh ended with.
    #[derive(Debug, PartialEq, Eq)]
    enum Outcome {
        Answered(String),
        Reuse,
        Revoked,
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// A client presents the `n`-th token it ever received (modulo how many there are).
        Start(usize),
        /// The `n`-th in-flight refresh takes its next step.
        Step(usize),
        /// An operator revokes the session.
        Revoke,
        /// Time passes.
        Advance(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => any::<usize>().prop_map(Op::Start),
            8 => any::<usize>().prop_map(Op::Step),
            1 => Just(Op::Revoke),
            2 => (0u64..15_000).prop_map(Op::Advance),
        ]
    }

    struct Run<'k> {
        keys: &'k Keyring,
        grace: Duration,
        now: Timestamp,
        model: Model,
        /// Every refresh token any client was handed, by generation.
        handed: BTreeMap<u32, BTreeSet<String>>,
        /// In the order handed out, for `Op::Start`.
        received: Vec<String>,
        in_flight: Vec<InFlight>,
        outcomes: Vec<Outcome>,
    }

    impl Run<'_> {
        fn hand_out(&mut self, token: RefreshToken) {
            let text = token.encode(self.keys);
            self.handed
                .entry(token.generation)
                .or_default()
                .insert(text.clone());
            self.received.push(text.clone());
            self.outcomes.push(Outcome::Answered(text));
        }

        /// Advances refresh `i` by one step; true when it finished.
        fn step(&mut self, i: usize) -> bool {
            let Some(flight) = self.in_flight.get_mut(i) else {
                return true;
            };
            let presented = RefreshToken::parse(self.keys, &flight.token).expect("our token");
            let state = RefreshState {
                generation: presented.generation,
                hash: presented.hash(self.keys),
            };
            match std::mem::replace(&mut flight.phase, Phase::Read) {
                Phase::Read => {
                    if self.model.record.is_revoked() {
                        self.outcomes.push(Outcome::Revoked);
                        return true;
                    }
                    flight.phase = Phase::Decide(Box::new(self.model.record.clone()));
                    false
                }
                Phase::Decide(record) => match classify(&record, &state, self.now, self.grace) {
                    Presented::Current => {
                        let salt = record.refresh_salt.expect("salted");
                        let generation = record.refresh_generation.wrapping_add(1);
                        let next = RefreshToken::derive(self.keys, record.id, generation, &salt);
                        let step = RotationStep {
                            expected: record.refresh_state(),
                            next: RefreshState {
                                generation,
                                hash: next.hash(self.keys),
                            },
                            salt,
                            at: self.now,
                            client: None,
                            sign_in: None,
                        };
                        match self.model.rotate(&step) {
                            Rotation::Won => {
                                self.hand_out(next);
                                true
                            }
                            Rotation::Lost(current) => {
                                flight.phase = Phase::Decide(current);
                                false
                            }
                            Rotation::Revoked | Rotation::Gone => {
                                self.outcomes.push(Outcome::Revoked);
                                true
                            }
                        }
                    }
                    Presented::GraceReplay => {
                        match current_token(self.keys, &record) {
                            Some(token) => self.hand_out(token),
                            None => self.outcomes.push(Outcome::Reuse),
                        }
                        true
                    }
                    Presented::Reuse(_) => {
                        self.revoke();
                        self.outcomes.push(Outcome::Reuse);
                        true
                    }
                },
            }
        }

        fn revoke(&mut self) {
            if !self.model.record.is_revoked() {
                self.model.record.revoked_at = Some(self.now);
            }
        }

        fn apply(&mut self, op: Op) {
            match op {
                Op::Start(n) => {
                    let token = self.received[n % self.received.len()].clone();
                    self.in_flight.push(InFlight {
                        token,
                        phase: Phase::Read,
                    });
                }
                Op::Step(n) => {
                    if !self.in_flight.is_empty() {
                        let i = n % self.in_flight.len();
                        if self.step(i) {
                            self.in_flight.remove(i);
                        }
                    }
                }
                Op::Revoke => self.revoke(),
                Op::Advance(ms) => self.now = self.now.plus(Duration::from_millis(ms)),
            }
        }

        /// Lets every in-flight refresh finish, oldest first.
        fn drain(&mut self) {
            for _ in 0..10_000 {
                if self.in_flight.is_empty() {
                    return;
                }
                if self.step(0) {
                    self.in_flight.remove(0);
                }
            }
            panic!("refreshes did not settle");
        }
    }

    fn run(grace: Duration, ops: Vec<Op>) -> Run<'static> {
        // One keyring for every case: generating keys per case would dominate the run.
        static KEYS: std::sync::OnceLock<Keyring> = std::sync::OnceLock::new();
        let keys = KEYS.get_or_init(keys);
        let now = Timestamp::from_micros(1_800_000_000_000_000);
        let (model, first) = Model::new(keys, now);
        let mut run = Run {
            keys,
            grace,
            now,
            model,
            handed: BTreeMap::from([(0, BTreeSet::from([first.clone()]))]),
            received: vec![first],
            in_flight: Vec::new(),
            outcomes: Vec::new(),
        };
        for op in ops {
            run.apply(op);
        }
        run.drain();
        run
    }

    /// At most one live token chain: one token per generation was ever handed out, nothing
    /// beyond the stored generation exists, and every token the store would still accept
    /// leads to the one current token.
    fn one_chain(run: &Run<'_>) -> Result<(), TestCaseError> {
        let record = &run.model.record;
        for (generation, tokens) in &run.handed {
            prop_assert_eq!(tokens.len(), 1, "generation {} has two tokens", generation);
            prop_assert!(*generation <= record.refresh_generation);
        }
        if record.is_revoked() {
            return Ok(());
        }
        let current = run
            .handed
            .get(&record.refresh_generation)
            .and_then(|t| t.iter().next())
            .cloned();
        for text in &run.received {
            let token = RefreshToken::parse(run.keys, text).expect("ours");
            let state = RefreshState {
                generation: token.generation,
                hash: token.hash(run.keys),
            };
            match classify(record, &state, run.now, run.grace) {
                Presented::Current => prop_assert_eq!(Some(text), current.as_ref()),
                Presented::GraceReplay => {
                    let answer = current_token(run.keys, record).map(|t| t.encode(run.keys));
                    prop_assert_eq!(answer, current.clone());
                }
                Presented::Reuse(_) => {}
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn any_interleaving_with_a_grace_keeps_one_chain(ops in prop::collection::vec(op(), 1..80)) {
            let run = run(Duration::from_secs(10), ops);
            one_chain(&run)?;
        }

        #[test]
        fn strict_rotation_has_one_winner_per_generation(ops in prop::collection::vec(op(), 1..80)) {
            let run = run(Duration::ZERO, ops);
            one_chain(&run)?;
            // Without a grace every answer is a won compare-and-set: one per generation.
            let answered = run
                .outcomes
                .iter()
                .filter(|o| matches!(o, Outcome::Answered(_)))
                .count();
            // Generation 0 was handed out by Issue, every later one by exactly one refresh.
            prop_assert_eq!(answered, run.handed.len() - 1);
            prop_assert_eq!(
                u32::try_from(answered).ok(),
                Some(run.model.record.refresh_generation)
            );
        }

        #[test]
        fn concurrent_refreshes_of_one_token_inside_the_grace_all_succeed(n in 2usize..40, order in prop::collection::vec(any::<usize>(), 0..200)) {
            let mut ops: Vec<Op> = (0..n).map(|_| Op::Start(0)).collect();
            ops.extend(order.into_iter().map(Op::Step));
            let run = run(Duration::from_secs(10), ops);
            one_chain(&run)?;
            prop_assert!(!run.model.record.is_revoked());
            prop_assert_eq!(run.outcomes.len(), n);
            prop_assert!(run.outcomes.iter().all(|o| matches!(o, Outcome::Answered(_))));
            prop_assert_eq!(run.handed.get(&1).map(BTreeSet::len), Some(1));
        }
    }
}
