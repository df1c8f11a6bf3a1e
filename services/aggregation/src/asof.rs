//! Projections beside the live one: `as_of` answers (the projection as it was at a
//! point, from the best snapshot before it plus a filtered replay) and rebuilds (a
//! replay from zero, swapped in when it has caught up).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use dvk_eventlog::{EventLog, LogError, Snapshot};
use dvk_proto::events::v1::Envelope;
use dvk_runtime::host::{Core, ReadModel};

use crate::projection::State;
use crate::service::RebuildStatus;
use crate::snapshot::{self, SeenPb};

/// A point in the past.
#[derive(Debug, Clone)]
pub enum Point {
    /// Events recorded (at their source) at or before this time, in Unix seconds.
    Time(i64),
    /// Events of each named source up to its position; other sources' events all count.
    Positions(BTreeMap<String, u64>),
}

impl Point {
    fn keeps(&self, env: &Envelope) -> bool {
        match self {
            Point::Time(t) => env.recorded_at.is_none_or(|r| r.seconds <= *t),
            Point::Positions(bounds) => bounds.get(&env.source).is_none_or(|p| env.source_position <= *p),
        }
    }

    /// Whether everything a snapshot holds was before this point.
    fn covers(&self, seen: &[SeenPb]) -> bool {
        match self {
            Point::Time(t) => seen.iter().all(|s| s.latest_time <= *t),
            Point::Positions(bounds) => seen
                .iter()
                .all(|s| bounds.get(&s.source).is_none_or(|p| s.watermark <= *p && s.above.iter().all(|a| a <= p))),
        }
    }
}

/// The projection as it stood at `point`: the latest snapshot of the ring that lies
/// wholly before it, then the log after the snapshot, keeping only the events before
/// the point.
pub fn state_at(log: &EventLog, point: &Point) -> Result<State, LogError> {
    let mut best: Option<Snapshot> = None;
    for slot in 0..snapshot::RING {
        let Some(s) = log.load_snapshot(&snapshot::ring_name(slot))? else { continue };
        let Ok(seen) = snapshot::decode_seen(&s.data) else { continue };
        if point.covers(&seen) && best.as_ref().is_none_or(|b| s.position > b.position) {
            best = Some(s);
        }
    }
    let (mut state, from) = match best.map(|s| (snapshot::decode(&s.data), s.position)) {
        Some((Ok(state), position)) => (state, position + 1),
        _ => (State::default(), 1),
    };
    dvk_runtime::host::replay_onto(log, &mut state, from, |e| point.keeps(e))?;
    Ok(state)
}

/// Replays the whole log into a new projection beside the live one, then, holding the
/// live one still, folds in what arrived meanwhile and swaps the new one in. Returns
/// whether the two were equal.
pub async fn rebuild(core: &Core<State>, progress: &Arc<RebuildStatus>) -> Result<bool, LogError> {
    let log = core.log.clone();
    // Up to what the live projection holds now: the rest it folds in itself after the swap.
    let total = core.state.read().await.position;
    progress.total.store(total, Ordering::SeqCst);
    progress.done.store(0, Ordering::SeqCst);
    let p = progress.clone();
    let mut fresh = tokio::task::spawn_blocking(move || -> Result<State, LogError> {
        let mut state = State::default();
        for record in log.read_range(1, total) {
            let record = record?;
            state.apply(record.position(), &record.envelope()?);
            p.done.fetch_add(1, Ordering::Relaxed);
        }
        Ok(state)
    })
    .await
    .expect("rebuild task")?;
    let mut live = core.state.write().await;
    for record in core.log.read_range(fresh.position + 1, live.position) {
        let record = record?;
        fresh.apply(record.position(), &record.envelope()?);
    }
    let same = *live == fresh;
    *live = fresh;
    Ok(same)
}
