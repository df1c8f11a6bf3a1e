//! Read models: rebuilt by folding a log in order (`replay`), then kept current by
//! following it (`project`). Every stored event is decoded once, by the codec, into a
//! `Recorded<DomainEvent>`; one that does not decode is logged and passed over.

use std::sync::Arc;

use dvk_codec::{Recorded, Unreadable, recorded};
use dvk_eventlog::{EventLog, LogError};
use dvk_proto::events::v1::Envelope;
use tokio::sync::{RwLock, watch};

use crate::metrics::Metrics;

/// Most events folded into the read models under one write lock.
const PROJECT_BATCH: usize = 512;

/// Read models rebuilt by folding a log in order.
pub trait ReadModel: Default + Send + Sync + 'static {
    /// Folds an event in (its `position` is the read models' new position).
    fn apply(&mut self, event: &Recorded);

    /// Passes over an event that does not decode (reported by the caller as an error):
    /// the read models still move past its position.
    fn skip(&mut self, unreadable: &Unreadable);

    /// Whether the read models fold events of this stored type at all. Events of the
    /// others are not decoded (a service following another's log reads only what it
    /// needs of it); the read models move past them with `pass`.
    fn reads(event_type: &str) -> bool {
        let _ = event_type;
        true
    }

    /// Moves past the event at `position`, of a type the read models do not read.
    fn pass(&mut self, position: u64) {
        let _ = position;
    }

    /// The read models at start and the last position they include: by default a
    /// replay of the whole log; a projection with snapshots loads the latest and
    /// replays the tail.
    fn restore(log: &EventLog) -> Result<(Self, u64), LogError> {
        replay(log)
    }
}

/// Replays a log into fresh read models; returns them with the last position folded.
pub fn replay<S: ReadModel>(log: &EventLog) -> Result<(S, u64), LogError> {
    let mut state = S::default();
    let last = replay_onto(log, &mut state, 1, |_| true)?;
    Ok((state, last))
}

/// Folds the events from `from` on into `state`, those `keep` accepts; returns the
/// last position read (or `from - 1` if none).
pub fn replay_onto<S: ReadModel>(
    log: &EventLog,
    state: &mut S,
    from: u64,
    mut keep: impl FnMut(&Envelope) -> bool,
) -> Result<u64, LogError> {
    let mut last = from.saturating_sub(1);
    for decoded in log.replay_range(from, log.head()) {
        let (position, env) = decoded?;
        if keep(&env) {
            fold(state, position, env);
        }
        last = position;
    }
    Ok(last)
}

/// Decodes the event stored at `position` and folds it into `state`; one that does
/// not decode is logged and passed over.
pub fn fold<S: ReadModel>(state: &mut S, position: u64, env: Envelope) {
    fold_item(state, &decode_for::<S>(position, env));
}

/// A stored event as read models of type `S` take it.
#[allow(clippy::large_enum_variant, reason = "almost every item is read; boxing each would cost more")]
enum Item {
    Read(Result<Recorded, Unreadable>),
    NotRead(u64),
}

/// Decodes the event stored at `position`, if `S` reads its type.
fn decode_for<S: ReadModel>(position: u64, env: Envelope) -> Item {
    if S::reads(&env.event_type) { Item::Read(recorded::decode(position, env)) } else { Item::NotRead(position) }
}

fn fold_item<S: ReadModel>(state: &mut S, item: &Item) {
    match item {
        Item::NotRead(position) => state.pass(*position),
        Item::Read(Ok(event)) => {
            for part in &event.passed_over {
                tracing::error!(position = event.position, stream = %event.stream, "part of a stored event does not decode; passed over: {part}");
            }
            state.apply(event)
        }
        Item::Read(Err(unreadable)) => {
            tracing::error!(%unreadable, "a stored event does not decode; passed over");
            state.skip(unreadable);
        }
    }
}

/// Follows the log and folds every new event into the read models, in order.
pub(super) async fn project<S: ReadModel>(
    log: EventLog,
    state: Arc<RwLock<S>>,
    projected: watch::Sender<u64>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let from = *projected.borrow() + 1;
    let mut sub = log.subscribe(from);
    // Reused: a fresh batch each round costs fresh pages of memory. Events are decoded
    // here, before the write lock is taken, so readers wait only for the fold.
    let mut batch: Vec<Item> = Vec::with_capacity(PROJECT_BATCH);
    loop {
        let first = tokio::select! {
            r = sub.next() => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        batch.clear();
        let mut next = first;
        let mut last;
        loop {
            match next.and_then(|r| Ok((r.position(), r.envelope()?))) {
                Ok((position, env)) => {
                    last = position;
                    batch.push(decode_for::<S>(position, env));
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot follow the log; read models stop here");
                    return;
                }
            }
            if batch.len() >= PROJECT_BATCH {
                break;
            }
            match sub.try_next() {
                Ok(Some(r)) => next = Ok(r),
                Ok(None) => break,
                Err(e) => next = Err(e),
            }
        }
        {
            let mut s = state.write().await;
            for item in &batch {
                fold_item(&mut *s, item);
            }
        }
        metrics.projected.set(last as i64);
        metrics.log_head.set(log.head() as i64);
        projected.send_replace(last);
    }
}
