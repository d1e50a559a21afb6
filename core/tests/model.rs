//! Model-based test: random creates, appends (with and without batch ids), retries, reads, seals,
//! checkpoints, reopens, injected sync failures and crashes, against a trivial reference: a `Vec`
//! of acknowledged events per session. After every crash, every acknowledged event is present, in
//! order; an append that failed is wholly present or wholly absent, never half.

mod common;

use std::collections::BTreeMap;

use common::*;
use proptest::prelude::*;
use tracevault_codecs::Event;
use tracevault_core::storage::{CrashPolicy, FaultStorage};
use tracevault_core::{AppendError, Batch, Log, LogOptions, ReadError};

#[derive(Clone, Debug)]
enum Op {
    Create(u8),
    Append { session: u8, events: u16, seed: u64, batch_id: Option<u8> },
    RetryLast,
    Read(u8),
    Seal(u8),
    Checkpoint,
    Reopen,
    Crash(u64, u8),
    FailSyncs,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0u8..4).prop_map(Op::Create),
        12 => (0u8..4, 1u16..150, any::<u64>(), prop::option::of(any::<u8>()))
            .prop_map(|(session, events, seed, batch_id)| Op::Append { session, events, seed, batch_id }),
        1 => Just(Op::RetryLast),
        2 => (0u8..4).prop_map(Op::Read),
        1 => (0u8..4).prop_map(Op::Seal),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::Reopen),
        2 => (any::<u64>(), 0u8..3).prop_map(|(seed, p)| Op::Crash(seed, p)),
        1 => Just(Op::FailSyncs),
    ]
}

fn model_options() -> LogOptions {
    LogOptions { block_events_max: 64, ..small_options() }
}

struct World {
    storage: FaultStorage,
    log: Option<Log>,
    /// Acknowledged events per session.
    model: BTreeMap<String, Vec<Event>>,
    /// Appends (or creations) that failed: each may or may not have reached the disk.
    unsure: Vec<(String, Vec<Event>)>,
    unsure_sessions: Vec<String>,
    poisoned: bool,
    last: Option<(String, Vec<Event>, u128, u64)>,
    next_batch_id: u128,
}

impl World {
    fn log(&self) -> &Log {
        self.log.as_ref().unwrap()
    }

    /// Reopens on `storage` and reconciles the model with what the failed operations left.
    fn reopen(&mut self, storage: FaultStorage) {
        self.log = None;
        self.storage = storage;
        let log = open_fault(&self.storage, model_options());
        for id in self.unsure_sessions.drain(..) {
            if log.session_info(&id).is_some() {
                self.model.entry(id).or_default();
            }
        }
        for (id, model) in &mut self.model {
            let got = log.read_session(&reader(), id, 0..=u64::MAX).unwrap();
            // Failed appends of this session, in order: a prefix of them may have landed.
            let mut candidate = model.clone();
            let mut ok = got == candidate;
            for (_, batch) in self.unsure.iter().filter(|(s, _)| s == id) {
                candidate.extend_from_slice(batch);
                ok |= got == candidate;
            }
            assert!(ok, "session {id}: {} events after reopen, acknowledged {}", got.len(), model.len());
            *model = got;
        }
        assert_eq!(log.sessions().len(), self.model.len(), "sessions after reopen");
        assert_eq!(log.verify().unwrap().first_problem, None);
        self.unsure.clear();
        self.poisoned = false;
        self.log = Some(log);
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Create(s) => {
                let id = format!("s-{s}");
                match self.log().create_session(meta(&id, "u")) {
                    Ok(_) => {
                        self.model.entry(id).or_default();
                    }
                    Err(AppendError::Poisoned(_)) => {
                        assert!(self.poisoned);
                        if !self.model.contains_key(&id) {
                            self.unsure_sessions.push(id);
                        }
                    }
                    Err(e) => panic!("create {id}: {e}"),
                }
            }
            Op::Append { session, events: n, seed, batch_id } => {
                let id = format!("s-{session}");
                let t0 = self.model.get(&id).and_then(|v| v.last()).map_or(0, |e| e.t_us + 1000);
                let batch = events(seed, t0, n as usize);
                let batch_id = batch_id.map(|_| {
                    self.next_batch_id += 1;
                    self.next_batch_id
                });
                let result = self.log().append_batch(Batch {
                    session: &id,
                    events: &batch,
                    batch_id,
                    expected_seq: None,
                });
                match result {
                    Ok(ack) => {
                        let model = self.model.get_mut(&id).expect("append to a created session succeeded");
                        assert_eq!(ack.seq_first, model.len() as u64);
                        model.extend_from_slice(&batch);
                        if let Some(b) = batch_id {
                            self.last = Some((id, batch, b, ack.seq_first));
                        }
                    }
                    Err(AppendError::UnknownSession(_)) => assert!(!self.model.contains_key(&id)),
                    Err(AppendError::Poisoned(_)) => {
                        assert!(self.poisoned, "poisoned without a failure");
                        if self.model.contains_key(&id) {
                            self.unsure.push((id, batch));
                        }
                    }
                    Err(e) => panic!("append: {e}"),
                }
            }
            Op::RetryLast => {
                if let Some((id, batch, b, seq)) = self.last.clone()
                    && !self.poisoned
                {
                    let ack = self.log().append_batch(Batch {
                        session: &id,
                        events: &batch,
                        batch_id: Some(b),
                        expected_seq: None,
                    });
                    let ack = ack.unwrap();
                    assert!(
                        ack.duplicate && ack.seq_first == seq,
                        "retry of batch {b} was not recognised: {ack:?}"
                    );
                }
            }
            Op::Read(s) => {
                let id = format!("s-{s}");
                if let Some(model) = self.model.get(&id) {
                    match self.log().read_session(&reader(), &id, 0..=u64::MAX) {
                        Ok(got) => assert_eq!(&got, model, "read {id}"),
                        // The failed sync hit the access audit log: reads fail closed until reopened.
                        Err(ReadError::Audit(_)) if self.poisoned => {}
                        Err(e) => panic!("read {id}: {e}"),
                    }
                }
            }
            Op::Seal(s) => {
                let id = format!("s-{s}");
                if self.model.contains_key(&id) && !self.poisoned {
                    self.log().seal_session(&id).unwrap();
                }
            }
            Op::Checkpoint => {
                if !self.poisoned {
                    self.log().checkpoint().unwrap();
                }
            }
            Op::Reopen => {
                let storage = self.storage.clone();
                self.log = None;
                self.reopen(storage);
            }
            Op::Crash(seed, policy) => {
                let policy = match policy {
                    0 => CrashPolicy::DropAll,
                    1 => CrashPolicy::KeepAll,
                    _ => CrashPolicy::Random(seed),
                };
                let crashed = self.storage.crash(policy);
                self.reopen(crashed);
            }
            Op::FailSyncs => {
                // The next sync fails and poisons the log; the disk then recovers, the log does not.
                self.storage.fail_syncs(true);
                let id = self.model.keys().next().cloned();
                if let Some(id) = id {
                    let batch = events(1, self.model[&id].last().map_or(0, |e| e.t_us + 1000), 5);
                    match self.log().append(&id, &batch) {
                        Err(AppendError::Poisoned(_)) => self.unsure.push((id, batch)),
                        other => panic!("append with a failing disk: {other:?}"),
                    }
                    self.poisoned = true;
                }
                self.storage.fail_syncs(false);
            }
        }
    }
}

proptest! {
    // PROPTEST_CASES=2000 for a longer soak.
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48), ..ProptestConfig::default() })]

    #[test]
    fn the_log_matches_the_model_through_crashes(ops in prop::collection::vec(op(), 1..60)) {
        let storage = FaultStorage::new();
        let log = open_fault(&storage, model_options());
        let mut world = World {
            storage,
            log: Some(log),
            model: BTreeMap::new(),
            unsure: Vec::new(),
            unsure_sessions: Vec::new(),
            poisoned: false,
            last: None,
            next_batch_id: 0,
        };
        for op in ops {
            world.apply(op);
        }
        let storage = world.storage.crash(CrashPolicy::DropAll);
        world.reopen(storage);
    }
}
