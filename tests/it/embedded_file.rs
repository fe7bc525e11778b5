//! The embedded store's file across versions and sweeps: a data directory an earlier version
//! wrote opens with its contents where this version looks for them, and the sweeper leaves no
//! index entry behind the rows it removes. These cases read and write the redb file directly
//! (its table names and key layouts are what an earlier version left on disk), and check the
//! outcome through the store's own reads.

use std::path::Path;
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
use sessiond::model::ids::{SessionId, UserId};
use sessiond::model::records::AuditRecord;
use sessiond::model::time::Timestamp;
use sessiond::model::{Clock, ManualClock};
use sessiond::store::Store;
use sessiond::store::embedded::{EmbeddedOptions, EmbeddedStore};

/// The per-user index, which holds a user's audit entries as `user 0x00 'e' at event_id`.
const BY_USER: TableDefinition<&[u8], ()> = TableDefinition::new("sessions_by_user_v2");
/// Where earlier versions kept them, as `user 0x00 at event_id`.
const AUDIT_BY_USER_V1: TableDefinition<&[u8], ()> = TableDefinition::new("audit_by_user");

const DAY: Duration = Duration::from_secs(24 * 3600);

fn open(dir: &Path, clock: &ManualClock, options: EmbeddedOptions) -> EmbeddedStore {
    EmbeddedStore::open(dir, options, clock.shared()).expect("open embedded store")
}

fn event(user: &str, at: Timestamp, kind: &str) -> AuditRecord {
    AuditRecord {
        event_id: uuid::Uuid::now_v7(),
        at,
        kind: kind.into(),
        actor: "test:file".into(),
        user_id: user.into(),
        session_id: Some(SessionId::new()),
        ip: "192.0.2.7".into(),
        user_agent: "ua".into(),
        reason: String::new(),
    }
}

fn user(id: &str) -> UserId {
    UserId::parse("user_id", id).expect("user id")
}

fn audit_prefix(user: &str) -> Vec<u8> {
    let mut p = user.as_bytes().to_vec();
    p.extend_from_slice(&[0, b'e']);
    p
}

/// The keys of `user`'s audit entries in the per-user index.
fn audit_entries(db: &Database, user: &str) -> Vec<Vec<u8>> {
    let txn = db.begin_read().expect("read");
    audit_entries_in(&txn.open_table(BY_USER).expect("per-user index"), user)
}

/// `audit_entries` on an open table, of a read or of a write transaction.
fn audit_entries_in(table: &impl ReadableTable<&'static [u8], ()>, user: &str) -> Vec<Vec<u8>> {
    let prefix = audit_prefix(user);
    table
        .range::<&[u8]>(prefix.as_slice()..)
        .expect("range")
        .map(|e| e.expect("entry").0.value().to_vec())
        .take_while(|k| k.starts_with(&prefix))
        .collect()
}

fn table_names(db: &Database) -> Vec<String> {
    let txn = db.begin_read().expect("read");
    txn.list_tables()
        .expect("tables")
        .map(|t| t.name().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_versions_audit_index_is_moved_into_the_per_user_index_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::starting_now();
    let now = clock.now();
    let alice: Vec<AuditRecord> = (0..3)
        .map(|i| event("alice", now.plus(Duration::from_secs(i)), "session_issued"))
        .collect();
    let bob = event("bob", now, "session_issued");
    let global = event("", now, "global_revoked");
    {
        let store = open(dir.path(), &clock, EmbeddedOptions::default());
        let mut all = alice.clone();
        all.extend([bob.clone(), global.clone()]);
        store.append_audit(&all).await.expect("append");
    }

    // Put the file back the way an earlier version wrote it: the per-user audit entries in a
    // table of their own, without the 'e' part.
    let path = dir.path().join("sessiond.redb");
    {
        let db = Database::open(&path).expect("open file");
        let txn = db.begin_write().expect("write");
        {
            let mut by_user = txn.open_table(BY_USER).expect("per-user index");
            let mut old = txn.open_table(AUDIT_BY_USER_V1).expect("old index");
            let mut moved = 0;
            for u in ["alice", "bob"] {
                for key in audit_entries_in(&by_user, u) {
                    by_user.remove(key.as_slice()).expect("remove");
                    let mut earlier = u.as_bytes().to_vec();
                    earlier.push(0);
                    earlier.extend_from_slice(&key[u.len() + 2..]);
                    old.insert(earlier.as_slice(), ()).expect("insert");
                    moved += 1;
                }
            }
            assert_eq!(
                moved, 4,
                "alice's three events and bob's one are indexed per user"
            );
        }
        txn.commit().expect("commit");
        assert!(audit_entries(&db, "alice").is_empty());
        assert!(table_names(&db).contains(&"audit_by_user".to_owned()));
    }

    let store = open(dir.path(), &clock, EmbeddedOptions::default());
    let mine = store
        .list_audit(Some(&user("alice")), None, 10)
        .await
        .expect("alice's events");
    let newest_first: Vec<AuditRecord> = alice.iter().rev().cloned().collect();
    assert_eq!(mine.items, newest_first);
    assert_eq!(mine.next, None);
    let bobs = store
        .list_audit(Some(&user("bob")), None, 10)
        .await
        .expect("bob's events");
    assert_eq!(bobs.items, vec![bob]);
    let everyone = store.list_audit(None, None, 10).await.expect("all events");
    assert_eq!(everyone.items.len(), 5);
    assert!(everyone.items.contains(&global));
    drop(store);

    let db = Database::open(&path).expect("open file");
    assert!(!table_names(&db).contains(&"audit_by_user".to_owned()));
    assert_eq!(audit_entries(&db, "alice").len(), 3);
    assert_eq!(audit_entries(&db, "bob").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_takes_an_expired_events_entry_out_of_the_per_user_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::starting_now();
    let options = EmbeddedOptions {
        audit_retention: DAY,
        ..EmbeddedOptions::default()
    };
    let old = event("carol", clock.now(), "session_issued");
    let kept = event("carol", clock.now().plus(2 * DAY), "session_revoked");
    {
        let store = open(dir.path(), &clock, options.clone());
        store
            .append_audit(&[old.clone(), kept.clone()])
            .await
            .expect("append");
        // A day and a half later, only the first event is past its retention.
        let removed = store
            .sweep(clock.now().plus(DAY + DAY / 2))
            .await
            .expect("sweep");
        assert_eq!(removed, 1);
        let left = store
            .list_audit(Some(&user("carol")), None, 10)
            .await
            .expect("carol's events");
        assert_eq!(left.items, vec![kept.clone()]);
    }
    let db = Database::open(dir.path().join("sessiond.redb")).expect("open file");
    let entries = audit_entries(&db, "carol");
    assert_eq!(
        entries.len(),
        1,
        "the swept event's entry is gone: {entries:?}"
    );
    assert!(entries[0].ends_with(kept.event_id.as_bytes()));
}
