//! The append-only event log of a DVK service, on sled: the source of truth from which
//! every read model is rebuilt.
//!
//! - Appends go to one stream with an expected version and an optional request id
//!   (a retry gets the first answer back; the same id with another body is refused).
//! - Every event gets a global position (1, 2, 3, ...) and a gap-free stream version.
//! - An append is acknowledged only after sled has flushed it to disk and the data file
//!   is synced (`fdatasync`, see `disk.rs`). One writer
//!   thread takes every append waiting in its queue, writes them as one atomic batch
//!   and flushes once: concurrent writers share flushes (group commit).
//! - Readers see only flushed events, so a projection never counts an event that a
//!   crash could still take back.
//! - Every record carries a CRC-32 checked on every read: corruption is an error
//!   naming the position, never a silently wrong answer.

#![forbid(unsafe_code)]

mod disk;
mod error;
mod keys;
mod read;
mod record;
mod subscription;
mod tail;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dvk_proto::events::v1::Envelope;
use prost::Message;
use tokio::sync::{oneshot, watch};

pub use error::LogError;
pub use read::{Decoded, Records, Replay};
pub use subscription::Subscription;

/// What the writer expects the stream's version to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// No check.
    Any,
    /// The stream must not exist yet (version 0).
    NoStream,
    /// The stream must be at exactly this version.
    Exact(u64),
}

impl std::fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::NoStream => f.write_str("no stream"),
            Self::Exact(v) => write!(f, "{v}"),
        }
    }
}

/// A client's request id and a fingerprint of the request's body. The fingerprint is
/// whatever bytes identify "the same request" (the service uses the canonical encoding
/// of the command); a retry with the same id must carry the same fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub request_id: String,
    pub fingerprint: Vec<u8>,
}

/// One append: events for one stream, written atomically with `meta`.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    pub stream_id: String,
    pub expected: ExpectedVersion,
    pub idempotency: Option<Idempotency>,
    /// The events. The log fills in `stream_id`, `stream_version` and, for events it
    /// originates (empty `source`), `source` and `source_position`; `event_id` and
    /// `recorded_at` are filled when empty. Events that already carry a source (consumed
    /// from another service) keep every field as received.
    pub events: Vec<Envelope>,
    /// Metadata written in the same atomic batch (e.g. consumed offsets). `None` deletes.
    pub meta: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl AppendRequest {
    pub fn new(stream_id: impl Into<String>, expected: ExpectedVersion, events: Vec<Envelope>) -> Self {
        Self { stream_id: stream_id.into(), expected, idempotency: None, events, meta: Vec::new() }
    }

    pub fn with_request_id(mut self, request_id: impl Into<String>, fingerprint: Vec<u8>) -> Self {
        self.idempotency = Some(Idempotency { request_id: request_id.into(), fingerprint });
        self
    }
}

/// The answer to an append: where its events are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub stream_id: String,
    pub first_version: u64,
    pub last_version: u64,
    pub first_position: u64,
    pub last_position: u64,
    /// The `source_position` stamped on the last event (for events this log originates:
    /// its own sequence, 1, 2, 3, ... without the events received from elsewhere). This
    /// is the read-your-writes token a service returns.
    pub last_source_position: u64,
    /// True when this is the stored answer to an earlier request with the same id.
    pub deduplicated: bool,
}

/// One stored event, checksum verified.
#[derive(Debug, Clone)]
pub struct Record {
    position: u64,
    /// The chunk the event is stored in (shared, not copied).
    chunk: sled::IVec,
    offset: usize,
    len: usize,
}

impl Record {
    /// The event's position in this log.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The encoded `Envelope`: the same bytes that go to Kafka.
    pub fn payload(&self) -> &[u8] {
        &self.chunk[self.offset..self.offset + self.len]
    }

    pub fn envelope(&self) -> Result<Envelope, LogError> {
        Envelope::decode(self.payload())
            .map_err(|e| LogError::Corrupt { position: self.position, reason: format!("undecodable envelope: {e}") })
    }
}

/// A projection's saved state: the position it reflects and its encoded form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub position: u64,
    pub data: Vec<u8>,
}

/// How to open a log.
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub path: PathBuf,
    /// The name stamped as `source` on events this log originates ("registration", ...).
    pub source: String,
    /// sled's page cache, in bytes.
    pub cache_capacity: u64,
    /// The most appends one group commit takes from the queue.
    pub max_group: usize,
    /// After each flush, `fdatasync` sled's data file (and `fsync` new blob files), so
    /// that an acknowledged write survives a power cut, not only a crash (on by
    /// default; see `disk.rs`).
    pub sync_data: bool,
}

impl LogConfig {
    pub fn new(path: impl AsRef<Path>, source: impl Into<String>) -> Self {
        Self {
            path: path.as_ref().to_owned(),
            source: source.into(),
            cache_capacity: 1 << 30,
            max_group: 4096,
            sync_data: true,
        }
    }
}

/// How long `open` waits for a directory that another handle is still releasing.
const LOCK_WAIT: Duration = Duration::from_secs(5);

fn open_db(config: &LogConfig) -> Result<sled::Db, LogError> {
    // No background flusher: every write is flushed by the writer thread before it is
    // acknowledged.
    let sled_config = sled::Config::new().path(&config.path).cache_capacity(config.cache_capacity).flush_every_ms(None);
    let started = Instant::now();
    loop {
        match sled_config.open() {
            Ok(db) => return Ok(db),
            // sled releases its directory lock when its last internal I/O thread lets
            // go of the file, which can trail a dropped handle by a few milliseconds.
            // Another live process holding the lock still fails after LOCK_WAIT.
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock") && started.elapsed() < LOCK_WAIT =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

pub(crate) struct Shared {
    pub(crate) db: sled::Db,
    pub(crate) log: sled::Tree,
    pub(crate) snapshots: sled::Tree,
    pub(crate) source: String,
    /// The highest flushed position: what readers may see.
    pub(crate) durable: watch::Sender<u64>,
    /// The newest flushed chunks (see `tail.rs`).
    pub(crate) tail: Arc<tail::Tail>,
}

struct Inner {
    shared: Arc<Shared>,
    jobs: Mutex<Option<mpsc::Sender<writer::Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.jobs.lock().expect("lock").take();
        if let Some(t) = self.thread.lock().expect("lock").take() {
            let _ = t.join();
        }
    }
}

/// A handle to an open log; cheap to clone, safe to share between tasks and threads.
#[derive(Clone)]
pub struct EventLog {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog").field("source", &self.inner.shared.source).field("head", &self.head()).finish()
    }
}

impl EventLog {
    /// Opens (or creates) the log at `config.path`. sled allows one process per directory.
    pub fn open(config: LogConfig) -> Result<Self, LogError> {
        if config.source.is_empty() {
            return Err(LogError::InvalidAppend("the log needs a source name".into()));
        }
        let db = open_db(&config)?;
        let log = db.open_tree("log")?;
        let snapshots = db.open_tree("snapshots")?;
        let head = match log.range(keys::event(0)..=keys::event(u64::MAX)).next_back() {
            None => 0,
            Some(entry) => {
                let (k, v) = entry?;
                let first = keys::position_of_event_key(&k).expect("event range holds event keys");
                record::last_position(first, &v)?
            }
        };
        let own = log.get(keys::meta(keys::OWN_SEQUENCE))?.and_then(|v| keys::u64_value(&v)).unwrap_or(0);
        let (durable, _) = watch::channel(head);
        let shared = Arc::new(Shared { db, log, snapshots, source: config.source, durable, tail: Arc::default() });
        let disk = if config.sync_data {
            Some(disk::DiskSync::open(&config.path).map_err(|e| LogError::Storage(sled::Error::Io(e)))?)
        } else {
            None
        };
        let (tx, rx) = mpsc::channel();
        let thread = writer::spawn(shared.clone(), rx, head, own, config.max_group.max(1), disk)
            .map_err(|e| LogError::Failed(format!("cannot start the writer thread: {e}")))?;
        Ok(Self { inner: Arc::new(Inner { shared, jobs: Mutex::new(Some(tx)), thread: Mutex::new(Some(thread)) }) })
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// The source name this log stamps on the events it originates.
    pub fn source(&self) -> &str {
        &self.shared().source
    }

    /// The highest durable position (0 for an empty log).
    pub fn head(&self) -> u64 {
        *self.shared().durable.borrow()
    }

    /// How many events this log originated and holds durably: the last own
    /// `source_position` (0 when it has none).
    pub fn own_sequence(&self) -> Result<u64, LogError> {
        Ok(self.shared().log.get(keys::meta(keys::OWN_SEQUENCE))?.and_then(|v| keys::u64_value(&v)).unwrap_or(0))
    }

    /// A receiver that sees the durable head move.
    pub fn watch_head(&self) -> watch::Receiver<u64> {
        self.shared().durable.subscribe()
    }

    fn submit(&self, job: writer::Job) -> Result<(), LogError> {
        let jobs = self.inner.jobs.lock().expect("lock");
        jobs.as_ref().ok_or(LogError::Closed)?.send(job).map_err(|_| LogError::Closed)
    }

    /// Appends durably; resolves once the events are flushed to disk.
    pub async fn append(&self, request: AppendRequest) -> Result<Receipt, LogError> {
        let (tx, rx) = oneshot::channel();
        self.submit(writer::Job::Append(request, tx))?;
        rx.await.map_err(|_| LogError::Closed)?
    }

    /// Appends durably from synchronous code (not from an async task).
    pub fn append_blocking(&self, request: AppendRequest) -> Result<Receipt, LogError> {
        let (tx, rx) = oneshot::channel();
        self.submit(writer::Job::Append(request, tx))?;
        rx.blocking_recv().map_err(|_| LogError::Closed)?
    }

    /// Writes metadata durably (e.g. a relay cursor), ordered with appends.
    pub async fn put_meta(&self, entries: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<(), LogError> {
        let (tx, rx) = oneshot::channel();
        self.submit(writer::Job::Meta(entries, tx))?;
        rx.await.map_err(|_| LogError::Closed)?
    }

    /// The answer given to an earlier append with this request id, and the fingerprint
    /// of that request, if there was one. The answer may be a moment ahead of the
    /// durable head while its group is being flushed.
    pub fn find_request(&self, request_id: &str) -> Result<Option<(Receipt, Vec<u8>)>, LogError> {
        match self.shared().log.get(keys::request(request_id))? {
            None => Ok(None),
            Some(v) => Receipt::decode(&v).map(Some).ok_or_else(|| LogError::Corrupt {
                position: 0,
                reason: format!("stored answer of request {request_id:?} is malformed"),
            }),
        }
    }

    /// Reads a metadata value.
    pub fn meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>, LogError> {
        Ok(self.shared().log.get(keys::meta(key))?.map(|v| v.to_vec()))
    }

    /// The current version of a stream (0 if it has no events).
    pub fn stream_version(&self, stream_id: &str) -> Result<u64, LogError> {
        keys::stream_version(&self.shared().log, stream_id)
    }

    /// The event at `position`, if it is durable.
    pub fn get(&self, position: u64) -> Result<Option<Record>, LogError> {
        if position == 0 || position > self.head() {
            return Ok(None);
        }
        self.read_range(position, position).next().transpose()
    }

    /// Every durable event from `from` (inclusive) to the head, in order.
    pub fn read_all(&self, from: u64) -> Records {
        self.read_range(from, self.head())
    }

    /// The durable events with positions in `from..=to`, in order. A missing or
    /// corrupt record ends the iteration with an error naming its position.
    pub fn read_range(&self, from: u64, to: u64) -> Records {
        Records::new(self.shared().log.clone(), self.shared().tail.clone(), from.max(1), to.min(self.head()))
    }

    /// The durable events in `from..=to`, decoded on a thread of their own: for
    /// replays, which then fold while the next events are read.
    pub fn replay_range(&self, from: u64, to: u64) -> Replay {
        Replay::new(self, from, to)
    }

    /// The events of one stream with versions ≥ `from_version` (1 for all), in order.
    pub fn read_stream(&self, stream_id: &str, from_version: u64) -> Result<Vec<Record>, LogError> {
        let log = &self.shared().log;
        let start = keys::version(stream_id, from_version.max(1));
        let end = keys::version(stream_id, u64::MAX);
        let head = self.head();
        let mut out = Vec::new();
        for entry in log.range(start..=end) {
            let (_, v) = entry?;
            let position = keys::u64_value(&v).ok_or_else(|| LogError::Corrupt {
                position: 0,
                reason: format!("stream index of {stream_id} holds a malformed position"),
            })?;
            if position > head {
                break;
            }
            match self.get(position)? {
                Some(r) => out.push(r),
                None => {
                    return Err(LogError::Corrupt { position, reason: "indexed but missing".into() });
                }
            }
        }
        Ok(out)
    }

    /// Follows the log from `from` (inclusive): first what is stored, then live appends.
    pub fn subscribe(&self, from: u64) -> Subscription {
        Subscription::new(self.clone(), from)
    }

    /// Stores a snapshot durably under `name`, replacing the previous one.
    pub fn save_snapshot(&self, name: &str, snapshot: &Snapshot) -> Result<(), LogError> {
        let mut v = Vec::with_capacity(12 + snapshot.data.len());
        v.extend_from_slice(&snapshot.position.to_be_bytes());
        v.extend_from_slice(&record::checksum(snapshot.position, &snapshot.data).to_le_bytes());
        v.extend_from_slice(&snapshot.data);
        self.shared().snapshots.insert(name.as_bytes(), v)?;
        self.shared().db.flush()?;
        Ok(())
    }

    /// The latest snapshot under `name`, checksum verified.
    pub fn load_snapshot(&self, name: &str) -> Result<Option<Snapshot>, LogError> {
        let Some(v) = self.shared().snapshots.get(name.as_bytes())? else {
            return Ok(None);
        };
        let corrupt = |reason: &str| LogError::CorruptSnapshot { name: name.to_owned(), reason: reason.to_owned() };
        if v.len() < 12 {
            return Err(corrupt("shorter than its header"));
        }
        let position = u64::from_be_bytes(v[..8].try_into().expect("8 bytes"));
        let stored = u32::from_le_bytes(v[8..12].try_into().expect("4 bytes"));
        if record::checksum(position, &v[12..]) != stored {
            return Err(corrupt("checksum mismatch"));
        }
        Ok(Some(Snapshot { position, data: v[12..].to_vec() }))
    }

    /// Flushes and stops the writer; pending appends are answered first. Other clones
    /// of this handle get `Closed` afterwards.
    pub fn close(&self) -> Result<(), LogError> {
        self.inner.jobs.lock().expect("lock").take();
        if let Some(t) = self.inner.thread.lock().expect("lock").take() {
            let _ = t.join();
        }
        self.shared().db.flush()?;
        Ok(())
    }
}

impl Receipt {
    fn encode(&self, fingerprint: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(48 + fingerprint.len() + self.stream_id.len());
        v.extend_from_slice(&(fingerprint.len() as u32).to_be_bytes());
        v.extend_from_slice(fingerprint);
        v.extend_from_slice(&(self.stream_id.len() as u32).to_be_bytes());
        v.extend_from_slice(self.stream_id.as_bytes());
        for n in
            [self.first_version, self.last_version, self.first_position, self.last_position, self.last_source_position]
        {
            v.extend_from_slice(&n.to_be_bytes());
        }
        v
    }

    /// Decodes a stored receipt and its fingerprint.
    fn decode(v: &[u8]) -> Option<(Receipt, Vec<u8>)> {
        let mut at = 0usize;
        let mut take = |n: usize| -> Option<&[u8]> {
            let s = v.get(at..at + n)?;
            at += n;
            Some(s)
        };
        let flen = u32::from_be_bytes(take(4)?.try_into().ok()?) as usize;
        let fingerprint = take(flen)?.to_vec();
        let slen = u32::from_be_bytes(take(4)?.try_into().ok()?) as usize;
        let stream_id = String::from_utf8(take(slen)?.to_vec()).ok()?;
        let mut n = [0u64; 5];
        for x in &mut n {
            *x = u64::from_be_bytes(take(8)?.try_into().ok()?);
        }
        let receipt = Receipt {
            stream_id,
            first_version: n[0],
            last_version: n[1],
            first_position: n[2],
            last_position: n[3],
            last_source_position: n[4],
            deduplicated: true,
        };
        Some((receipt, fingerprint))
    }
}

#[cfg(test)]
mod tests;

/// Damage done on purpose, for tests that prove corruption is caught (feature
/// `fault-injection`; never enabled in the services).
#[cfg(any(test, feature = "fault-injection"))]
pub mod faults {
    use super::{EventLog, keys, record};

    /// Flips a bit in the last byte of the record at `position`, wherever its chunk is,
    /// behind the log's back (its checksum is left as it was). The in-memory tail is
    /// dropped, so that reads go to the damaged copy on disk (as after a restart).
    pub fn flip_last_byte_of(log: &EventLog, position: u64) {
        log.shared().tail.clear();
        let tree = &log.shared().log;
        let (key, chunk) = tree.range(..=keys::event(position)).next_back().expect("a chunk").expect("readable");
        let first = keys::position_of_event_key(&key).expect("an event key");
        let mut at = record::chunk_start(first, &chunk).expect("a chunk start");
        let mut p = first;
        loop {
            let (offset, len) = record::parse_record(&chunk, at, p).expect("a record");
            if p == position {
                let mut bytes = chunk.to_vec();
                bytes[offset + len - 1] ^= 0x40;
                tree.insert(key, bytes).expect("written");
                log.shared().db.flush().expect("flushed");
                return;
            }
            at = offset + len;
            p += 1;
        }
    }
}
