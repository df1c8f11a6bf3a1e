//! Group commit in two threads. The writer takes every queued append, decides each
//! against the stream versions and request ids (including those decided earlier in the
//! same group) and applies the group as one atomic sled batch. The flusher takes every
//! applied group waiting for it, flushes sled once (fsync), publishes the new durable
//! head, and only then answers. While one flush runs the writer already applies the
//! next group, so flushing and deciding overlap instead of taking turns.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::SystemTime;

use prost::Message;
use tokio::sync::oneshot;

use crate::disk::DiskSync;
use crate::{AppendRequest, ExpectedVersion, LogError, Receipt, Shared, keys, record, tail};

/// Longest stream id and request id accepted, in bytes.
const MAX_ID: usize = 512;

type MetaEntries = Vec<(Vec<u8>, Option<Vec<u8>>)>;

pub(crate) enum Job {
    Append(AppendRequest, oneshot::Sender<Result<Receipt, LogError>>),
    Meta(MetaEntries, oneshot::Sender<Result<(), LogError>>),
}

enum Reply {
    Append(oneshot::Sender<Result<Receipt, LogError>>, Result<Receipt, LogError>),
    Meta(oneshot::Sender<Result<(), LogError>>),
}

impl Reply {
    fn send(self) {
        match self {
            Reply::Append(tx, result) => drop(tx.send(result)),
            Reply::Meta(tx) => drop(tx.send(Ok(()))),
        }
    }

    fn fail(self, why: &str) {
        match self {
            Reply::Append(tx, _) => drop(tx.send(Err(LogError::Failed(why.to_owned())))),
            Reply::Meta(tx) => drop(tx.send(Err(LogError::Failed(why.to_owned())))),
        }
    }
}

/// A group applied to sled, waiting for its flush.
struct Applied {
    head: u64,
    replies: Vec<Reply>,
    /// The chunks the group wrote, for the in-memory tail once they are flushed.
    chunks: Vec<tail::Chunk>,
}

/// Set once a write or a flush failed: sled's state is then unknown, so every later
/// write is refused until the log is reopened (and recovered by sled).
type Failure = Arc<Mutex<Option<String>>>;

pub(crate) fn spawn(
    shared: Arc<Shared>,
    jobs: mpsc::Receiver<Job>,
    head: u64,
    own: u64,
    max_group: usize,
    mut disk: Option<DiskSync>,
) -> std::io::Result<JoinHandle<()>> {
    let failure: Failure = Arc::default();
    let (applied_tx, applied_rx) = mpsc::channel();
    let flusher = {
        let shared = shared.clone();
        let failure = failure.clone();
        std::thread::Builder::new()
            .name(format!("eventlog-flush-{}", shared.source))
            .spawn(move || flush_loop(&shared, &applied_rx, &failure, disk.as_mut()))?
    };
    std::thread::Builder::new().name(format!("eventlog-writer-{}", shared.source)).spawn(move || {
        Writer { shared, head, own, failure }.run(&jobs, &applied_tx, max_group);
        drop(applied_tx);
        let _ = flusher.join();
    })
}

fn flush_loop(shared: &Shared, applied: &mpsc::Receiver<Applied>, failure: &Failure, mut disk: Option<&mut DiskSync>) {
    while let Ok(first) = applied.recv() {
        let mut groups = vec![first];
        groups.extend(applied.try_iter());
        let failed = failure.lock().expect("lock").clone();
        let outcome = match failed {
            Some(why) => Err(why),
            None => shared.db.flush().map(drop).map_err(|e| e.to_string()).and_then(|()| match disk.as_deref_mut() {
                Some(d) => d.sync().map_err(|e| format!("sync of the data file: {e}")),
                None => Ok(()),
            }),
        };
        match outcome {
            Ok(()) => {
                let head = groups.iter().map(|g| g.head).max().unwrap_or(0);
                // Readers find the chunks in the tail as soon as they see the new head.
                shared.tail.extend(groups.iter_mut().flat_map(|g| std::mem::take(&mut g.chunks)));
                shared.durable.send_if_modified(|h| {
                    let moved = head > *h;
                    *h = (*h).max(head);
                    moved
                });
                groups.into_iter().flat_map(|g| g.replies).for_each(Reply::send);
            }
            Err(why) => {
                fail(failure, &shared.source, &why);
                groups.into_iter().flat_map(|g| g.replies).for_each(|r| r.fail(&why));
            }
        }
    }
}

fn fail(failure: &Failure, source: &str, why: &str) {
    let mut f = failure.lock().expect("lock");
    if f.is_none() {
        tracing::error!(error = %why, source, "event log write failed; refusing further writes");
        *f = Some(why.to_owned());
    }
}

struct Writer {
    shared: Arc<Shared>,
    /// How many events this log originated (the last own `source_position`).
    own: u64,
    /// The last position applied (durable once its group is flushed).
    head: u64,
    failure: Failure,
}

/// What the group decided so far, seen by later appends of the same group.
#[derive(Default)]
struct Pending {
    versions: HashMap<String, u64>,
    requests: HashMap<String, (Receipt, Vec<u8>)>,
    /// The chunk the group's next events go into.
    chunk: Option<record::ChunkBuilder>,
    /// The chunks closed so far.
    chunks: Vec<tail::Chunk>,
}

impl Pending {
    /// Puts a finished chunk in the batch (and keeps it for the tail).
    fn close(&mut self, chunk: record::ChunkBuilder, batch: &mut sled::Batch) {
        let bytes = sled::IVec::from(chunk.bytes);
        batch.insert(&keys::event(chunk.first)[..], bytes.clone());
        self.chunks.push((chunk.first, chunk.first + chunk.count - 1, bytes));
    }
}

impl Writer {
    fn run(mut self, jobs: &mpsc::Receiver<Job>, applied: &mpsc::Sender<Applied>, max_group: usize) {
        while let Ok(first) = jobs.recv() {
            let mut group = vec![first];
            group.extend(jobs.try_iter().take(max_group - 1));
            let (replies, chunks) = self.apply(group);
            if replies.is_empty() {
                continue;
            }
            if applied.send(Applied { head: self.head, replies, chunks }).is_err() {
                break;
            }
        }
    }

    /// Decides and applies one group; the replies (and the chunks written) wait for
    /// the flush.
    fn apply(&mut self, group: Vec<Job>) -> (Vec<Reply>, Vec<tail::Chunk>) {
        let failed = self.failure.lock().expect("lock").clone();
        if let Some(why) = failed {
            for job in group {
                match job {
                    Job::Append(_, tx) => drop(tx.send(Err(LogError::Failed(why.clone())))),
                    Job::Meta(_, tx) => drop(tx.send(Err(LogError::Failed(why.clone())))),
                }
            }
            return (Vec::new(), Vec::new());
        }
        let (start_head, start_own) = (self.head, self.own);
        let mut batch = sled::Batch::default();
        let mut pending = Pending::default();
        let mut replies = Vec::with_capacity(group.len());
        let mut writes = 0usize;
        for job in group {
            match job {
                Job::Append(req, tx) => {
                    let result = self.decide(req, &mut batch, &mut pending, &mut writes);
                    replies.push(Reply::Append(tx, result));
                }
                Job::Meta(entries, tx) => {
                    writes += entries.len();
                    put_meta(&mut batch, entries);
                    replies.push(Reply::Meta(tx));
                }
            }
        }
        if let Some(last) = pending.chunk.take() {
            pending.close(last, &mut batch);
        }
        if self.own != start_own {
            batch.insert(keys::meta(keys::OWN_SEQUENCE), &self.own.to_be_bytes()[..]);
        }
        if writes > 0
            && let Err(e) = self.shared.log.apply_batch(batch)
        {
            let why = e.to_string();
            fail(&self.failure, &self.shared.source, &why);
            (self.head, self.own) = (start_head, start_own);
            replies.into_iter().for_each(|r| r.fail(&why));
            return (Vec::new(), Vec::new());
        }
        (replies, pending.chunks)
    }

    fn stream_version(&self, pending: &Pending, stream: &str) -> Result<u64, LogError> {
        match pending.versions.get(stream) {
            Some(v) => Ok(*v),
            None => keys::stream_version(&self.shared.log, stream),
        }
    }

    fn decide(
        &mut self,
        req: AppendRequest,
        batch: &mut sled::Batch,
        pending: &mut Pending,
        writes: &mut usize,
    ) -> Result<Receipt, LogError> {
        if req.stream_id.is_empty() || req.stream_id.len() > MAX_ID {
            return Err(LogError::InvalidAppend(format!("stream id must be 1..={MAX_ID} bytes")));
        }
        if req.events.is_empty() {
            return Err(LogError::InvalidAppend("an append needs at least one event".into()));
        }
        if let Some(idem) = &req.idempotency {
            if idem.request_id.is_empty() || idem.request_id.len() > MAX_ID {
                return Err(LogError::InvalidAppend(format!("request id must be 1..={MAX_ID} bytes")));
            }
            let earlier = match pending.requests.get(&idem.request_id) {
                Some(found) => Some(found.clone()),
                None => self
                    .shared
                    .log
                    .get(keys::request(&idem.request_id))?
                    .map(|v| {
                        Receipt::decode(&v).ok_or_else(|| LogError::Corrupt {
                            position: 0,
                            reason: format!("stored answer of request {:?} is malformed", idem.request_id),
                        })
                    })
                    .transpose()?,
            };
            if let Some((mut receipt, fingerprint)) = earlier {
                if fingerprint != idem.fingerprint || receipt.stream_id != req.stream_id {
                    return Err(LogError::RequestIdReused { request_id: idem.request_id.clone() });
                }
                receipt.deduplicated = true;
                return Ok(receipt);
            }
        }
        let current = self.stream_version(pending, &req.stream_id)?;
        let ok = match req.expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current == 0,
            ExpectedVersion::Exact(v) => current == v,
        };
        if !ok {
            return Err(LogError::WrongExpectedVersion {
                stream: req.stream_id,
                expected: req.expected.to_string(),
                actual: current,
            });
        }
        // Events this log originated once, restored (from its topic), must continue the
        // own sequence and their stream exactly where they stand. Checked before
        // anything is written.
        let (mut own, mut version) = (self.own, current);
        for env in &req.events {
            version += 1;
            if env.source == self.shared.source {
                own += 1;
                if env.source_position != own || env.stream_id != req.stream_id || env.stream_version != version {
                    return Err(LogError::InvalidAppend(format!(
                        "restored event {}@{} (stream {} version {}) does not continue the log at {own} (stream {} version {version})",
                        env.source, env.source_position, env.stream_id, env.stream_version, req.stream_id
                    )));
                }
            }
        }
        let now = SystemTime::now();
        let first_position = self.head + 1;
        let mut version = current;
        let mut position = self.head;
        let mut own = self.own;
        let mut last_source_position = 0;
        for mut env in req.events {
            version += 1;
            position += 1;
            if env.source.is_empty() {
                env.source = self.shared.source.clone();
                own += 1;
                env.source_position = own;
                env.stream_id = req.stream_id.clone();
                env.stream_version = version;
            } else if env.source == self.shared.source {
                own += 1;
            }
            last_source_position = env.source_position;
            if env.event_id.is_empty() {
                env.event_id = uuid::Uuid::now_v7().to_string();
            }
            if env.recorded_at.is_none() {
                env.recorded_at = Some(prost_types::Timestamp::from(now));
            }
            if env.request_id.is_empty()
                && let Some(idem) = &req.idempotency
            {
                env.request_id = idem.request_id.clone();
                env.request_fingerprint = idem.fingerprint.clone();
            }
            let chunk = pending.chunk.get_or_insert_with(|| record::ChunkBuilder::new(position));
            debug_assert_eq!(chunk.first + chunk.count, position, "chunks hold consecutive positions");
            chunk.push_encoded(|buf| env.encode(buf).expect("a Vec grows as needed"));
            if chunk.is_full()
                && let Some(full) = pending.chunk.take()
            {
                pending.close(full, batch);
            }
            batch.insert(keys::version(&req.stream_id, version), &position.to_be_bytes()[..]);
            *writes += 2;
        }
        put_meta(batch, req.meta);
        let receipt = Receipt {
            stream_id: req.stream_id.clone(),
            first_version: current + 1,
            last_version: version,
            first_position,
            last_position: position,
            last_source_position,
            deduplicated: false,
        };
        if let Some(idem) = req.idempotency {
            batch.insert(keys::request(&idem.request_id), receipt.encode(&idem.fingerprint));
            pending.requests.insert(idem.request_id, (receipt.clone(), idem.fingerprint));
        }
        pending.versions.insert(req.stream_id, version);
        self.head = position;
        self.own = own;
        Ok(receipt)
    }
}

fn put_meta(batch: &mut sled::Batch, entries: MetaEntries) {
    for (k, v) in entries {
        match v {
            Some(v) => batch.insert(keys::meta(&k), v),
            None => batch.remove(keys::meta(&k)),
        }
    }
}
