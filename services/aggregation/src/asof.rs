//! Projections beside the live one: `as_of` answers (the projection as it was at a
//! point, from the best snapshot before it plus a filtered replay) and rebuilds (a
//! replay from zero, swapped in when it has caught up).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use dvk_eventlog::{EventLog, LogError};
use dvk_proto::events::v1::Envelope;
use dvk_runtime::host::{Core, fold};

use crate::app::RebuildStatus;
use crate::projection::State;
use crate::snapshot::{self, SeenPb};

/// A point in the past.
#[derive(Debug, Clone)]
pub enum Point {
    /// Events recorded (at their source) at or before this time, in Unix seconds.
    Time(i64),
    /// The projection as it stood when it had received each named source up to its
    /// position: everything that had arrived by then, except the named sources'
    /// events above their positions.
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
            Point::Positions(bounds) => bounds.iter().all(|(source, p)| {
                seen.iter()
                    .find(|s| s.source == *source)
                    .is_none_or(|s| s.watermark < *p && s.above.iter().all(|a| a <= p))
            }),
        }
    }

    /// Whether a projection has reached this point (no later event belongs to it).
    fn reached(&self, state: &State) -> bool {
        match self {
            Point::Time(_) => false,
            Point::Positions(bounds) => {
                bounds.iter().all(|(source, p)| state.seen.get(source).is_some_and(|s| s.watermark >= *p))
            }
        }
    }
}

/// The projection as it stood at `point`: the newest snapshot of the ring that lies
/// wholly before it, then the log after the snapshot, keeping only the events before
/// the point and stopping once the point is reached.
pub fn state_at(log: &EventLog, point: &Point) -> Result<State, LogError> {
    let (mut state, from) = match snapshot::newest(log, |seen| point.covers(seen))? {
        Some((state, position)) => (state, position + 1),
        None => (State::default(), 1),
    };
    if point.reached(&state) {
        return Ok(state);
    }
    for decoded in log.replay_range(from, log.head()) {
        let (position, env) = decoded?;
        if point.keeps(&env) {
            fold(&mut state, position, env);
            if point.reached(&state) {
                break;
            }
        }
    }
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
        for decoded in log.replay_range(1, total) {
            let (position, env) = decoded?;
            fold(&mut state, position, env);
            p.done.fetch_add(1, Ordering::Relaxed);
        }
        Ok(state)
    })
    .await
    .expect("rebuild task")?;
    let mut live = core.state.write().await;
    for record in core.log.read_range(fresh.position + 1, live.position) {
        let record = record?;
        fold(&mut fresh, record.position(), record.envelope()?);
    }
    let same = *live == fresh;
    *live = fresh;
    Ok(same)
}
