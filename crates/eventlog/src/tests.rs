//! Tests of the log's contract: order, versions, idempotency, durability, checksums.

use super::*;
use dvk_proto::events::v1::{ModelStarted, envelope::Payload};
use proptest::prelude::*;

fn open(dir: &Path) -> EventLog {
    EventLog::open(LogConfig::new(dir, "registration")).unwrap()
}

fn event(tag: u32) -> Envelope {
    Envelope {
        event_type: "dvk.events.v1.ModelStarted".into(),
        schema_version: 1,
        correlation_id: format!("c{tag}"),
        payload: Some(Payload::ModelStarted(ModelStarted {
            started_on: Some(dvk_proto::common::v1::Date { year: 2024, month: 3, day: (tag % 28 + 1) as i32 }),
        })),
        ..Default::default()
    }
}

/// A log that skips `fdatasync`, for tests that append many times.
fn open_unsynced(dir: &Path) -> EventLog {
    let mut config = LogConfig::new(dir, "registration");
    config.sync_data = false;
    EventLog::open(config).unwrap()
}

/// Every event of the log with its position, read (not replayed).
fn read_decoded(log: &EventLog) -> Vec<(u64, Envelope)> {
    log.read_all(1).map(|r| r.unwrap()).map(|r| (r.position(), r.envelope().unwrap())).collect()
}

fn append(log: &EventLog, stream: &str, expected: ExpectedVersion, n: u32) -> Result<Receipt, LogError> {
    log.append_blocking(AppendRequest::new(stream, expected, (0..n).map(event).collect()))
}

#[test]
fn appends_get_positions_and_gap_free_versions() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let a = append(&log, "model-a", ExpectedVersion::NoStream, 2).unwrap();
    let b = append(&log, "model-b", ExpectedVersion::NoStream, 1).unwrap();
    let a2 = append(&log, "model-a", ExpectedVersion::Exact(2), 1).unwrap();
    assert_eq!((a.first_position, a.last_position, a.first_version, a.last_version), (1, 2, 1, 2));
    assert_eq!((b.first_position, b.last_version), (3, 1));
    assert_eq!((a2.first_position, a2.first_version, a2.last_version), (4, 3, 3));
    assert_eq!(log.head(), 4);
    assert_eq!(log.stream_version("model-a").unwrap(), 3);
    let stream: Vec<_> = log.read_stream("model-a", 1).unwrap().iter().map(|r| r.envelope().unwrap()).collect();
    assert_eq!(stream.iter().map(|e| e.stream_version).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(stream.iter().map(|e| e.source_position).collect::<Vec<_>>(), [1, 2, 4]);
    assert!(stream.iter().all(|e| e.source == "registration" && e.stream_id == "model-a"));
    assert!(stream.iter().all(|e| e.recorded_at.is_some() && e.event_id.len() == 36));
    assert_eq!(log.read_stream("model-a", 3).unwrap().len(), 1);
    assert!(log.read_stream("model-zzz", 1).unwrap().is_empty());
}

#[test]
fn a_wrong_expected_version_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    append(&log, "s", ExpectedVersion::NoStream, 1).unwrap();
    for expected in [ExpectedVersion::NoStream, ExpectedVersion::Exact(0), ExpectedVersion::Exact(2)] {
        match append(&log, "s", expected, 1) {
            Err(LogError::WrongExpectedVersion { actual: 1, .. }) => {}
            other => panic!("{expected}: {other:?}"),
        }
    }
    assert_eq!(log.head(), 1);
    assert!(append(&log, "s", ExpectedVersion::Any, 1).is_ok());
}

#[test]
fn a_retried_request_gets_the_first_answer_and_a_reused_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let req = || {
        AppendRequest::new("s", ExpectedVersion::NoStream, vec![event(1)]).with_request_id("req-1", b"body-1".to_vec())
    };
    let first = log.append_blocking(req()).unwrap();
    assert!(!first.deduplicated);
    // Another write moves the stream on; the retry still gets the original answer.
    append(&log, "s", ExpectedVersion::Exact(1), 1).unwrap();
    let retry = log.append_blocking(req()).unwrap();
    assert!(retry.deduplicated);
    assert_eq!((retry.first_position, retry.last_version), (first.first_position, first.last_version));
    assert_eq!(log.head(), 2, "the retry wrote nothing");
    // The same id with another body, or for another stream, is refused.
    let other =
        AppendRequest::new("s", ExpectedVersion::Any, vec![event(2)]).with_request_id("req-1", b"body-2".to_vec());
    assert!(matches!(log.append_blocking(other), Err(LogError::RequestIdReused { .. })));
    let elsewhere =
        AppendRequest::new("t", ExpectedVersion::Any, vec![event(1)]).with_request_id("req-1", b"body-1".to_vec());
    assert!(matches!(log.append_blocking(elsewhere), Err(LogError::RequestIdReused { .. })));
    assert_eq!(log.head(), 2);
    // The request id is recorded on the event.
    assert_eq!(log.get(1).unwrap().unwrap().envelope().unwrap().request_id, "req-1");
}

#[test]
fn request_ids_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let req = || AppendRequest::new("s", ExpectedVersion::NoStream, vec![event(1)]).with_request_id("r", b"x".to_vec());
    let first = {
        let log = open(dir.path());
        let r = log.append_blocking(req()).unwrap();
        log.close().unwrap();
        r
    };
    let log = open(dir.path());
    let again = log.append_blocking(req()).unwrap();
    assert!(again.deduplicated);
    assert_eq!(again.last_position, first.last_position);
    assert_eq!(log.head(), 1);
}

#[test]
fn malformed_appends_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    assert!(matches!(append(&log, "", ExpectedVersion::Any, 1), Err(LogError::InvalidAppend(_))));
    assert!(matches!(append(&log, "s", ExpectedVersion::Any, 0), Err(LogError::InvalidAppend(_))));
    assert_eq!(log.head(), 0);
}

#[test]
fn events_from_another_source_keep_their_origin() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(LogConfig::new(dir.path(), "aggregation")).unwrap();
    let mut e = event(1);
    e.source = "reporting".into();
    e.source_position = 77;
    e.stream_id = "report-001-2024-H1".into();
    e.stream_version = 3;
    let meta = vec![(b"offset/dvk.reporting.v1/0".to_vec(), Some(42u64.to_be_bytes().to_vec()))];
    let req = AppendRequest { meta, ..AppendRequest::new("in-reporting", ExpectedVersion::Any, vec![e]) };
    let receipt = log.append_blocking(req).unwrap();
    assert_eq!(receipt.last_position, 1);
    let stored = log.get(1).unwrap().unwrap().envelope().unwrap();
    assert_eq!((stored.source.as_str(), stored.source_position), ("reporting", 77));
    assert_eq!((stored.stream_id.as_str(), stored.stream_version), ("report-001-2024-H1", 3));
    assert_eq!(log.meta(b"offset/dvk.reporting.v1/0").unwrap(), Some(42u64.to_be_bytes().to_vec()));
}

#[test]
fn own_source_positions_stay_contiguous_between_received_events() {
    let dir = tempfile::tempdir().unwrap();
    let positions = {
        let log = open(dir.path());
        let mut foreign = event(0);
        foreign.source = "registration-elsewhere".into();
        foreign.source_position = 900;
        foreign.stream_id = "tree-2025".into();
        let a = append(&log, "a", ExpectedVersion::Any, 2).unwrap();
        log.append_blocking(AppendRequest::new("inbox", ExpectedVersion::Any, vec![foreign])).unwrap();
        let b = append(&log, "b", ExpectedVersion::Any, 1).unwrap();
        assert_eq!((a.last_source_position, b.last_source_position), (2, 3), "the token counts own events only");
        assert_eq!(b.last_position, 4);
        log.close().unwrap();
        log.read_all(1).map(|r| r.unwrap().envelope().unwrap().source_position).collect::<Vec<_>>()
    };
    assert_eq!(positions, [1, 2, 900, 3]);
    // The sequence survives a restart.
    let log = open(dir.path());
    assert_eq!(append(&log, "c", ExpectedVersion::Any, 1).unwrap().last_source_position, 4);
}

#[test]
fn own_events_restored_into_a_fresh_log_keep_positions_and_request_answers() {
    // Given a log with writes (two with request ids) ...
    let (first, second) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let original = open(first.path());
    let req = |stream: &str, id: &str, n: u32| {
        AppendRequest::new(stream, ExpectedVersion::Any, (0..n).map(event).collect())
            .with_request_id(id, format!("body-{id}").into_bytes())
    };
    let a = original.append_blocking(req("a", "r1", 2)).unwrap();
    append(&original, "b", ExpectedVersion::Any, 1).unwrap();
    original.append_blocking(req("a", "r2", 1)).unwrap();
    let events: Vec<Envelope> = original.read_all(1).map(|r| r.unwrap().envelope().unwrap()).collect();
    assert!(events[0].request_fingerprint == b"body-r1" && events[2].request_fingerprint.is_empty());

    // ... when its events are appended as they are to an empty log, one append per
    // request (as a restore from the topic does) ...
    let restored = open(second.path());
    for group in
        events.chunk_by(|x, y| x.stream_id == y.stream_id && x.request_id == y.request_id && !x.request_id.is_empty())
    {
        let e = &group[0];
        let mut r = AppendRequest::new(&e.stream_id, ExpectedVersion::Exact(e.stream_version - 1), group.to_vec());
        if !e.request_id.is_empty() {
            r = r.with_request_id(&e.request_id, e.request_fingerprint.clone());
        }
        restored.append_blocking(r).unwrap();
    }
    // ... then the events are the same, new writes continue the own sequence, and a
    // retry of an old request is answered with the original token.
    let again: Vec<Envelope> = restored.read_all(1).map(|r| r.unwrap().envelope().unwrap()).collect();
    assert_eq!(again, events);
    assert_eq!(restored.own_sequence().unwrap(), 4);
    assert_eq!(append(&restored, "c", ExpectedVersion::Any, 1).unwrap().last_source_position, 5);
    let retry = restored.append_blocking(req("a", "r1", 2)).unwrap();
    assert!(retry.deduplicated);
    assert_eq!(retry.last_source_position, a.last_source_position);
    assert!(matches!(
        restored.append_blocking(
            AppendRequest::new("a", ExpectedVersion::Any, vec![event(9)]).with_request_id("r1", b"other".to_vec())
        ),
        Err(LogError::RequestIdReused { .. })
    ));
    // An own event that does not continue the sequence is refused, and writes nothing.
    let mut gap = events[0].clone();
    gap.source_position = 9;
    gap.stream_id = "z".into();
    gap.stream_version = 1;
    let head = restored.head();
    assert!(matches!(
        restored.append_blocking(AppendRequest::new("z", ExpectedVersion::Any, vec![gap])),
        Err(LogError::InvalidAppend(_))
    ));
    assert_eq!((restored.head(), restored.stream_version("z").unwrap()), (head, 0));
}

#[test]
fn a_flipped_byte_is_an_error_naming_the_position() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    append(&log, "s", ExpectedVersion::Any, 3).unwrap();
    // Damage the stored record at position 2 behind the log's back.
    crate::faults::flip_last_byte_of(&log, 2);

    let results: Vec<_> = log.read_all(1).collect();
    assert!(results[0].is_ok());
    match &results[1] {
        Err(LogError::Corrupt { position: 2, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(results.len(), 2, "reading stops at the corrupt record");
    assert!(matches!(log.get(2), Err(LogError::Corrupt { position: 2, .. })));
    assert!(matches!(log.read_stream("s", 1), Err(LogError::Corrupt { position: 2, .. })));
    let err = log.read_all(1).nth(1).unwrap().unwrap_err();
    assert!(err.to_string().contains("position 2"), "{err}");
    // A replay decodes on its own thread and ends at the same record, with the same error.
    let replayed: Vec<_> = log.replay_range(1, log.head()).collect();
    assert_eq!(replayed.len(), 2);
    assert_eq!(replayed[0].as_ref().unwrap().0, 1);
    assert!(matches!(replayed[1], Err(LogError::Corrupt { position: 2, .. })), "{replayed:?}");
}

#[test]
fn a_replay_yields_what_a_read_yields_and_stops_when_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_unsynced(dir.path());
    for i in 0..300u32 {
        append(&log, &format!("s{}", i % 5), ExpectedVersion::Any, 1 + i % 4).unwrap();
    }
    let read = read_decoded(&log);
    let replayed: Vec<(u64, Envelope)> = log.replay_range(1, log.head()).map(Result::unwrap).collect();
    assert_eq!(replayed, read);
    let tail: Vec<u64> = log.replay_range(400, 410).map(|d| d.unwrap().0).collect();
    assert_eq!(tail, (400..=410).collect::<Vec<_>>());
    // Dropped after a few events: the thread ends, and the log closes.
    let mut early = log.replay_range(1, log.head());
    assert_eq!(early.nth(9).unwrap().unwrap().0, 10);
    drop(early);
    log.close().unwrap();
}

#[test]
fn a_missing_record_below_the_head_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    for _ in 0..3 {
        append(&log, "s", ExpectedVersion::Any, 1).unwrap();
    }
    // One append each: three chunks. Remove the middle one from disk (and the copies
    // kept in memory, as after a restart).
    assert!(log.shared().log.remove(keys::event(2)).unwrap().is_some());
    log.shared().tail.clear();
    let results: Vec<_> = log.read_all(1).collect();
    assert!(matches!(results[1], Err(LogError::Corrupt { position: 2, .. })), "{results:?}");
    assert!(matches!(log.get(2), Err(LogError::Corrupt { position: 2, .. })));
    assert_eq!(log.get(3).unwrap().unwrap().position(), 3);
}

#[test]
fn reads_start_anywhere_inside_a_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    append(&log, "a", ExpectedVersion::Any, 500).unwrap();
    append(&log, "b", ExpectedVersion::Any, 3).unwrap();
    let chunks = log.shared().log.scan_prefix([keys::EVENT]).count();
    assert!(chunks > 2, "500 events of ~40 bytes span several chunks, got {chunks}");
    for from in [1, 2, 77, 250, 499, 500, 501, 503] {
        let got: Vec<u64> = log.read_all(from).map(|r| r.unwrap().position()).collect();
        assert_eq!(got, (from..=503).collect::<Vec<_>>(), "from {from}");
    }
    assert_eq!(log.read_range(100, 102).map(|r| r.unwrap().position()).collect::<Vec<_>>(), [100, 101, 102]);
    assert!(log.read_all(504).next().is_none());
    assert_eq!(log.get(503).unwrap().unwrap().envelope().unwrap().stream_id, "b");
    assert!(log.get(504).unwrap().is_none());
    assert!(log.get(0).unwrap().is_none());
}

#[test]
fn reads_from_the_memory_tail_and_from_disk_agree_across_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_unsynced(dir.path());
    // One chunk per append: more chunks than the tail keeps, so a read from the start
    // goes from disk into memory.
    for i in 0..1100u32 {
        append(&log, &format!("s{}", i % 7), ExpectedVersion::Any, 1 + i % 3).unwrap();
    }
    let mixed = read_decoded(&log);
    assert_eq!(mixed.iter().map(|(p, _)| *p).collect::<Vec<_>>(), (1..=log.head()).collect::<Vec<_>>());
    assert!(log.shared().tail.find(1).is_none(), "the oldest chunks left the tail");
    assert!(log.shared().tail.find(log.head()).is_some(), "the newest chunk is in the tail");
    log.shared().tail.clear();
    assert_eq!(read_decoded(&log), mixed, "disk alone answers the same");
    for from in [1, 500, log.head() - 5, log.head()] {
        let got: Vec<u64> = log.read_all(from).map(|r| r.unwrap().position()).collect();
        assert_eq!(got, (from..=log.head()).collect::<Vec<_>>(), "from {from}");
    }
}

#[test]
fn snapshots_round_trip_and_corruption_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    assert_eq!(log.load_snapshot("rollups").unwrap(), None);
    let snap = Snapshot { position: 1234, data: b"state".to_vec() };
    log.save_snapshot("rollups", &snap).unwrap();
    assert_eq!(log.load_snapshot("rollups").unwrap(), Some(snap));
    let mut raw = log.shared().snapshots.get("rollups").unwrap().unwrap().to_vec();
    raw[13] ^= 1;
    log.shared().snapshots.insert("rollups", raw).unwrap();
    assert!(matches!(log.load_snapshot("rollups"), Err(LogError::CorruptSnapshot { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_catches_up_then_follows_live_appends() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let events = (0..1000).map(event).collect();
    log.append(AppendRequest::new("s", ExpectedVersion::Any, events)).await.unwrap();
    let mut sub = log.subscribe(990);
    for p in 990..=1000 {
        assert_eq!(sub.next().await.unwrap().position(), p);
    }
    assert!(sub.try_next().unwrap().is_none());
    let writer = {
        let log = log.clone();
        tokio::spawn(async move {
            for i in 0..50 {
                log.append(AppendRequest::new("t", ExpectedVersion::Any, vec![event(i)])).await.unwrap();
            }
        })
    };
    for p in 1001..=1050 {
        let r =
            tokio::time::timeout(std::time::Duration::from_secs(10), sub.next()).await.expect("live event").unwrap();
        assert_eq!(r.position(), p);
    }
    writer.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_flushes_and_keep_streams_gap_free() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let mut tasks = Vec::new();
    for w in 0..64u32 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..20u32 {
                // Eight writers per stream, racing on the expected version: conflicts
                // are refused and retried with the version read back.
                let stream = format!("stream-{}", w % 8);
                loop {
                    let v = log.stream_version(&stream).unwrap();
                    let req = AppendRequest::new(stream.clone(), ExpectedVersion::Exact(v), vec![event(w * 100 + i)]);
                    match log.append(req).await {
                        Ok(r) => {
                            acked.push(r.last_position);
                            break;
                        }
                        Err(LogError::WrongExpectedVersion { .. }) => continue,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    acked.sort_unstable();
    assert_eq!(acked, (1..=1280).collect::<Vec<u64>>(), "every position acknowledged once, no gap");
    for s in 0..8 {
        let versions: Vec<u64> = log
            .read_stream(&format!("stream-{s}"), 1)
            .unwrap()
            .iter()
            .map(|r| r.envelope().unwrap().stream_version)
            .collect();
        assert_eq!(versions, (1..=160).collect::<Vec<u64>>());
    }
}

#[derive(Debug, Clone)]
struct Op {
    stream: u8,
    events: u8,
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec((0u8..5, 1u8..4).prop_map(|(stream, events)| Op { stream, events }), 1..40)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Replay returns exactly what was appended, in order; every stream's versions are
    /// 1..=n; and a reopened log sees every acknowledged append.
    #[test]
    fn replay_equals_appends_and_survives_reopen(ops in ops()) {
        let dir = tempfile::tempdir().unwrap();
        let mut expected: Vec<(String, String)> = Vec::new();
        {
            let log = open(dir.path());
            for (i, op) in ops.iter().enumerate() {
                let stream = format!("s{}", op.stream);
                let events: Vec<Envelope> = (0..op.events)
                    .map(|j| Envelope { correlation_id: format!("{i}.{j}"), ..event(i as u32) })
                    .collect();
                for e in &events {
                    expected.push((stream.clone(), e.correlation_id.clone()));
                }
                let v = log.stream_version(&stream).unwrap();
                log.append_blocking(AppendRequest::new(stream, ExpectedVersion::Exact(v), events)).unwrap();
            }
            drop(log);
        }
        let log = open(dir.path());
        prop_assert_eq!(log.head(), expected.len() as u64);
        let replay: Vec<Envelope> = log.read_all(1).map(|r| r.unwrap().envelope().unwrap()).collect();
        let got: Vec<(String, String)> = replay.iter().map(|e| (e.stream_id.clone(), e.correlation_id.clone())).collect();
        prop_assert_eq!(&got, &expected);
        for (i, e) in replay.iter().enumerate() {
            prop_assert_eq!(e.source_position, i as u64 + 1);
        }
        for s in 0..5 {
            let stream = format!("s{s}");
            let versions: Vec<u64> = log.read_stream(&stream, 1).unwrap().iter().map(|r| r.envelope().unwrap().stream_version).collect();
            let n = expected.iter().filter(|(st, _)| *st == stream).count() as u64;
            prop_assert_eq!(versions, (1..=n).collect::<Vec<_>>());
        }
    }
}
