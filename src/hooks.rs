//! Test hooks: a pause between two steps of a check, and injected store failures.
//!
//! Races between a check and its act (a loader's read and its insert into the cache, a
//! refresh's check and its signature) are a few microseconds wide; a test that hopes to hit
//! them rarely does. These hooks let a black-box test stop a request exactly between the two
//! steps, land a revocation there, and let it go on, so that an interleaving that happens
//! 2 times in 150 in production happens every time under test.
//!
//! A `Hooks` with nothing set (the default, and the only value the command line can build)
//! costs one branch on a cache miss and nothing on a hit.

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::model::ids::SessionId;
pub use crate::store::metered::Op;

/// A point between two steps of a request at which a test may pause it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// A cache loader has read the session (and, on a first sight, its user's marks) from the
    /// store and has not yet handed either on.
    SessionRead(SessionId),
    /// `Refresh` has checked the session (not revoked, token current) and has not yet
    /// rotated or signed.
    RefreshChecked(SessionId),
    /// `Issue` has written its session and has not yet kept it in this replica's cache.
    IssueWritten,
    /// A rotation (`Refresh`, `StepUp`) has won its compare-and-set and has not yet kept the
    /// session in this replica's cache.
    RotationWritten(SessionId),
    /// `Validate` has found the session standing and has not yet remembered the shortcut to
    /// its session and user entries in the token's entry.
    ShortcutKept(SessionId),
}

/// What an injected failure does to one store call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The call fails without reaching the store.
    FailBefore,
    /// The call reaches the store (its write lands) and then reports a failure, as when a
    /// reply is lost.
    FailAfter,
}

type Pause = Arc<dyn Fn(Step) -> BoxFuture<'static, ()> + Send + Sync>;
type Faults = Arc<dyn Fn(Op) -> Option<Fault> + Send + Sync>;

/// The hooks of one server; see the module documentation.
#[derive(Clone, Default)]
pub struct Hooks {
    pause: Option<Pause>,
    faults: Option<Faults>,
    forget_written: bool,
}

impl Hooks {
    /// Calls `pause` at every [`Step`]; the request waits for the future it returns.
    pub fn pause_at(
        mut self,
        pause: impl Fn(Step) -> BoxFuture<'static, ()> + Send + Sync + 'static,
    ) -> Self {
        self.pause = Some(Arc::new(pause));
        self
    }

    /// Asks `faults` before every store call whether to fail it.
    pub fn fail_store(
        mut self,
        faults: impl Fn(Op) -> Option<Fault> + Send + Sync + 'static,
    ) -> Self {
        self.faults = Some(Arc::new(faults));
        self
    }

    /// Sessions this server writes are not kept in its cache, so the first check of their
    /// tokens reads the store, as on a replica that did not write them.
    pub fn forget_written_sessions(mut self) -> Self {
        self.forget_written = true;
        self
    }

    /// Whether a session this server just wrote may be kept in its cache.
    pub(crate) fn keeps_written_sessions(&self) -> bool {
        !self.forget_written
    }

    /// Waits at `step` if a pause is set.
    pub(crate) async fn at(&self, step: Step) {
        if let Some(pause) = &self.pause {
            pause(step).await;
        }
    }

    /// The failure to inject into a call of `op`, if any.
    pub(crate) fn fault(&self, op: Op) -> Option<Fault> {
        self.faults.as_ref().and_then(|f| f(op))
    }
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("pause", &self.pause.is_some())
            .field("faults", &self.faults.is_some())
            .field("forget_written", &self.forget_written)
            .finish()
    }
}
