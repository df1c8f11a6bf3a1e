//! The single writer thread: group commit. It takes every queued append, decides each
//! against the stream versions and request ids (including those decided earlier in the
//! same group), writes the group as one atomic sled batch, flushes once, then answers.

use std::collections::HashMap;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::SystemTime;

use prost::Message;
use tokio::sync::oneshot;

use crate::{AppendRequest, ExpectedVersion, LogError, Receipt, Shared, keys, record};

/// Longest stream id and request id accepted, in bytes.
const MAX_ID: usize = 512;

pub(crate) enum Job {
    Append(AppendRequest, oneshot::Sender<Result<Receipt, LogError>>),
    Meta(
        Vec<(Vec<u8>, Option<Vec<u8>>)>,
        oneshot::Sender<Result<(), LogError>>,
    ),
}

enum Reply {
    Append(
        oneshot::Sender<Result<Receipt, LogError>>,
        Result<Receipt, LogError>,
    ),
    Meta(oneshot::Sender<Result<(), LogError>>),
}

pub(crate) fn spawn(
    shared: Arc<Shared>,
    jobs: mpsc::Receiver<Job>,
    head: u64,
    max_group: usize,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("eventlog-writer-{}", shared.source))
        .spawn(move || {
            Writer {
                shared,
                head,
                failed: None,
            }
            .run(jobs, max_group)
        })
}

struct Writer {
    shared: Arc<Shared>,
    /// The last position written (durable once the current group is flushed).
    head: u64,
    /// Set when a write or flush failed: sled's state is then unknown, so stop.
    failed: Option<String>,
}

/// What the group decided so far, seen by later appends of the same group.
#[derive(Default)]
struct Pending {
    versions: HashMap<String, u64>,
    requests: HashMap<String, (Receipt, Vec<u8>)>,
}

impl Writer {
    fn run(mut self, jobs: mpsc::Receiver<Job>, max_group: usize) {
        while let Ok(first) = jobs.recv() {
            let mut group = vec![first];
            while group.len() < max_group {
                match jobs.try_recv() {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
            self.commit(group);
        }
    }

    fn commit(&mut self, group: Vec<Job>) {
        if let Some(why) = &self.failed {
            for job in group {
                match job {
                    Job::Append(_, tx) => drop(tx.send(Err(LogError::Failed(why.clone())))),
                    Job::Meta(_, tx) => drop(tx.send(Err(LogError::Failed(why.clone())))),
                }
            }
            return;
        }
        let start_head = self.head;
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
                    for (k, v) in entries {
                        match v {
                            Some(v) => batch.insert(keys::meta(&k), v),
                            None => batch.remove(keys::meta(&k)),
                        }
                        writes += 1;
                    }
                    replies.push(Reply::Meta(tx));
                }
            }
        }
        let outcome = if writes == 0 {
            Ok(())
        } else {
            self.shared
                .log
                .apply_batch(batch)
                .and_then(|()| self.shared.db.flush().map(drop))
        };
        match outcome {
            Ok(()) => {
                if self.head != start_head {
                    self.shared.durable.send_replace(self.head);
                }
                for r in replies {
                    match r {
                        Reply::Append(tx, result) => drop(tx.send(result)),
                        Reply::Meta(tx) => drop(tx.send(Ok(()))),
                    }
                }
            }
            Err(e) => {
                let why = e.to_string();
                tracing::error!(error = %why, source = %self.shared.source, "event log write failed; refusing further writes");
                self.failed = Some(why.clone());
                self.head = start_head;
                for r in replies {
                    match r {
                        Reply::Append(tx, _) => drop(tx.send(Err(LogError::Failed(why.clone())))),
                        Reply::Meta(tx) => drop(tx.send(Err(LogError::Failed(why.clone())))),
                    }
                }
            }
        }
    }

    fn stream_version(&self, pending: &Pending, stream: &str) -> Result<u64, LogError> {
        if let Some(v) = pending.versions.get(stream) {
            return Ok(*v);
        }
        Ok(self
            .shared
            .log
            .get(keys::stream(stream))?
            .and_then(|v| keys::u64_value(&v))
            .unwrap_or(0))
    }

    fn decide(
        &mut self,
        req: AppendRequest,
        batch: &mut sled::Batch,
        pending: &mut Pending,
        writes: &mut usize,
    ) -> Result<Receipt, LogError> {
        if req.stream_id.is_empty() || req.stream_id.len() > MAX_ID {
            return Err(LogError::InvalidAppend(format!(
                "stream id must be 1..={MAX_ID} bytes"
            )));
        }
        if req.events.is_empty() {
            return Err(LogError::InvalidAppend(
                "an append needs at least one event".into(),
            ));
        }
        if let Some(idem) = &req.idempotency {
            if idem.request_id.is_empty() || idem.request_id.len() > MAX_ID {
                return Err(LogError::InvalidAppend(format!(
                    "request id must be 1..={MAX_ID} bytes"
                )));
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
                            reason: format!(
                                "stored answer of request {:?} is malformed",
                                idem.request_id
                            ),
                        })
                    })
                    .transpose()?,
            };
            if let Some((mut receipt, fingerprint)) = earlier {
                if fingerprint != idem.fingerprint || receipt.stream_id != req.stream_id {
                    return Err(LogError::RequestIdReused {
                        request_id: idem.request_id.clone(),
                    });
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
        let now = SystemTime::now();
        let first_position = self.head + 1;
        let mut version = current;
        let mut position = self.head;
        for mut env in req.events {
            version += 1;
            position += 1;
            if env.source.is_empty() {
                env.source = self.shared.source.clone();
                env.source_position = position;
                env.stream_id = req.stream_id.clone();
                env.stream_version = version;
            }
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
            }
            let payload = env.encode_to_vec();
            batch.insert(
                &keys::event(position)[..],
                record::encode(position, &payload),
            );
            batch.insert(
                keys::version(&req.stream_id, version),
                &position.to_be_bytes()[..],
            );
            *writes += 2;
        }
        batch.insert(keys::stream(&req.stream_id), &version.to_be_bytes()[..]);
        for (k, v) in req.meta {
            match v {
                Some(v) => batch.insert(keys::meta(&k), v),
                None => batch.remove(keys::meta(&k)),
            }
        }
        let receipt = Receipt {
            stream_id: req.stream_id.clone(),
            first_version: current + 1,
            last_version: version,
            first_position,
            last_position: position,
            deduplicated: false,
        };
        if let Some(idem) = req.idempotency {
            batch.insert(
                keys::request(&idem.request_id),
                receipt.encode(&idem.fingerprint),
            );
            pending
                .requests
                .insert(idem.request_id, (receipt.clone(), idem.fingerprint));
        }
        pending.versions.insert(req.stream_id, version);
        self.head = position;
        Ok(receipt)
    }
}
