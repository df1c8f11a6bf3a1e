//! Crash anywhere: a process appending to the log is killed with SIGKILL at a random
//! moment, several times over; every append it acknowledged must be there afterwards,
//! exactly once, in a log that reads back without a gap.
//!
//! The test binary plays both parts: run with `DVK_CRASH_CHILD_DIR` set it is the
//! writer, otherwise it drives writers and kills them.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use dvk_eventlog::{AppendRequest, EventLog, ExpectedVersion, LogConfig};
use dvk_proto::events::v1::Envelope;

const TEST: &str = "crash::acknowledged_appends_survive_sigkill";

/// One acknowledged append, as the writer reported it before it was killed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ack {
    stream: String,
    version: u64,
    position: u64,
}

impl Ack {
    /// Reads a writer's `ack <stream> <version> <position>` line.
    fn parse(line: &str) -> Option<Ack> {
        let mut f = line.strip_prefix("ack ")?.split(' ');
        Some(Ack { stream: f.next()?.into(), version: f.next()?.parse().ok()?, position: f.next()?.parse().ok()? })
    }
}

fn child(dir: &str, round: &str) {
    let log = EventLog::open(LogConfig::new(dir, "registration")).expect("child opens the log");
    let mut threads = Vec::new();
    for w in 0..8 {
        let log = log.clone();
        let round = round.to_owned();
        threads.push(std::thread::spawn(move || {
            let stdout = std::io::stdout();
            for i in 0u64.. {
                let stream = format!("r{round}-w{w}");
                let env = Envelope { correlation_id: format!("{round}/{w}/{i}"), ..Envelope::default() };
                let req = AppendRequest::new(stream.clone(), ExpectedVersion::Exact(i), vec![env])
                    .with_request_id(format!("{round}/{w}/{i}"), vec![1]);
                let r = log.append_blocking(req).expect("append");
                let mut out = stdout.lock();
                writeln!(out, "ack {stream} {} {}", r.last_version, r.last_position).expect("stdout");
                out.flush().expect("flush");
            }
        }));
    }
    for t in threads {
        let _ = t.join();
    }
}

/// A pseudo-random number from the clock: kill moments differ from run to run.
fn jitter(max: u64) -> u64 {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().subsec_nanos();
    u64::from(nanos) % max
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    if let Ok(dir) = std::env::var("DVK_CRASH_CHILD_DIR") {
        child(&dir, &std::env::var("DVK_CRASH_ROUND").unwrap());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut acked: Vec<Ack> = Vec::new();
    let rounds = 6;
    for round in 0..rounds {
        let mut proc = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
            .env("DVK_CRASH_CHILD_DIR", dir.path())
            .env("DVK_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = BufReader::new(proc.stdout.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Let it acknowledge a random number of appends, then kill it mid-flight.
        let target = 200 + jitter(800) as usize;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut this_round = 0;
        while this_round < target {
            let line = rx.recv_timeout(deadline - Instant::now()).expect("the writer keeps acknowledging");
            if let Some(ack) = Ack::parse(&line) {
                acked.push(ack);
                this_round += 1;
            }
        }
        proc.kill().unwrap(); // SIGKILL
        proc.wait().unwrap();
        // Acknowledgements already in the pipe were acknowledged before the kill too.
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            acked.extend(Ack::parse(&line));
        }
    }

    let log = EventLog::open(LogConfig::new(dir.path(), "registration")).unwrap();
    let mut by_position: HashMap<u64, (String, u64)> = HashMap::new();
    let mut count = 0u64;
    for r in log.read_all(1) {
        let r = r.expect("every record below the head reads back");
        let e = r.envelope().unwrap();
        assert_eq!(e.source_position, r.position());
        by_position.insert(r.position(), (e.stream_id, e.stream_version));
        count += 1;
    }
    assert_eq!(count, log.head(), "positions 1..=head, no gap");
    let mut lost = 0;
    for a in &acked {
        match by_position.get(&a.position) {
            Some((stream, version)) if *stream == a.stream && *version == a.version => {}
            other => {
                lost += 1;
                eprintln!("acknowledged {a:?} but found {other:?}");
            }
        }
    }
    let mut positions: Vec<u64> = acked.iter().map(|a| a.position).collect();
    positions.sort_unstable();
    positions.dedup();
    let duplicated = acked.len() - positions.len();
    eprintln!(
        "kills: {rounds}, acknowledged: {}, stored: {count}, lost: {lost}, duplicated: {duplicated}",
        acked.len()
    );
    assert_eq!(lost, 0);
    assert_eq!(duplicated, 0);
    // Every stream's versions run 1..=n with no gap, even across crashes.
    for round in 0..rounds {
        for w in 0..8 {
            let stream = format!("r{round}-w{w}");
            let versions: Vec<u64> =
                log.read_stream(&stream, 1).unwrap().iter().map(|r| r.envelope().unwrap().stream_version).collect();
            assert_eq!(versions, (1..=versions.len() as u64).collect::<Vec<_>>(), "{stream}");
        }
    }
}
