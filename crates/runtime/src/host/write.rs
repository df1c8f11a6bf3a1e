//! The shared write path: authorisation before idempotency, request ids and body
//! fingerprints, expected versions, and the answer once the read models include the
//! write.

use std::sync::Arc;
use std::time::SystemTime;

use dvk_codec::{StreamId, recorded};
use dvk_domain::{DomainError, DomainEvent};
use dvk_eventlog::{AppendRequest, EventLog, ExpectedVersion, LogError, Receipt};
use prost::Message;
use sha2::Digest;
use tokio::sync::{RwLock, watch};
use tonic::Status;

use super::ReadModel;
use crate::metrics::Metrics;
use crate::policy::{Access, KnowsUnits, Target};
use crate::status;

/// What a write decided: the stream, the expected version and the events.
#[derive(Debug)]
pub struct Decision {
    pub stream: StreamId,
    pub expected: ExpectedVersion,
    pub events: Vec<DomainEvent>,
}

/// What a service's RPC handlers share: the log, the read models and how far they
/// have folded the log, and the metrics.
pub struct Core<S> {
    pub log: EventLog,
    pub state: Arc<RwLock<S>>,
    pub projected: watch::Receiver<u64>,
    pub metrics: Arc<Metrics>,
    pub(super) source: &'static str,
}

impl<S> Clone for Core<S> {
    fn clone(&self) -> Self {
        Self {
            log: self.log.clone(),
            state: self.state.clone(),
            projected: self.projected.clone(),
            metrics: self.metrics.clone(),
            source: self.source,
        }
    }
}

impl<S> std::fmt::Debug for Core<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core").field("source", &self.source).field("log", &self.log).finish_non_exhaustive()
    }
}

fn invalid(field: &str, why: &str) -> Status {
    status::domain(DomainError::invalid(field, why))
}

impl<S: ReadModel> Core<S> {
    /// The position token of this service's log.
    pub fn position(&self, p: u64) -> dvk_proto::common::v1::Position {
        dvk_proto::common::v1::Position { source: self.source.into(), position: p }
    }

    /// Waits until the read models include the log position `position`.
    pub async fn projected(&self, position: u64) -> Result<(), Status> {
        let mut rx = self.projected.clone();
        rx.wait_for(|p| *p >= position).await.map(drop).map_err(|_| Status::unavailable("the service is shutting down"))
    }

    /// The common write path, for the caller the guard admitted (`access`: its role is
    /// checked). Authorisation comes before idempotency: `target` resolves what the
    /// request acts on in the current read models, and the scope of the RPC's rule is
    /// checked there; its refusal is final, even for a request id already written, so
    /// a stored answer (a model id, "approved") goes only to callers who may act on its
    /// target. Then the request body (without its id) is fingerprinted: a retry with
    /// the same `request_id` and body gets the first answer, whoever of the allowed
    /// callers sends it; another body is refused. `decide` runs against the same read
    /// models; the answer comes once they include the write, so the caller's next read
    /// sees it.
    ///
    /// `target` and `decide` answer in the service's own error type `E`; what the write
    /// path itself refuses (a missing request id, the scope, a reused id) arrives there
    /// as the `Status` this crate maps it to.
    pub async fn write<E: From<Status>>(
        &self,
        access: &Access,
        request_id: &str,
        body: &impl Message,
        target: impl FnOnce(&S) -> Result<Target, E>,
        decide: impl FnOnce(&S) -> Result<Decision, E>,
    ) -> Result<Receipt, E>
    where
        S: KnowsUnits,
    {
        let method = access.method();
        let request_id = request_id.trim();
        if request_id.is_empty() {
            return Err(invalid("request_id", "is required: a client-chosen id that makes retries safe").into());
        }
        if request_id.len() > dvk_domain::text::MAX_CODE {
            return Err(invalid("request_id", "is longer than 100 bytes").into());
        }
        let mut hasher = sha2::Sha256::new();
        hasher.update(method.as_bytes());
        hasher.update([0]);
        hasher.update(body.encode_to_vec());
        let fingerprint = hasher.finalize().to_vec();
        // A retry is not looked up first: the log's writer finds its request id in the
        // same step that appends (and refuses a reused one), and a retry whose decision
        // is refused or differs (a new id drawn) is answered below from the first
        // attempt's stored receipt. A new request thus costs no extra lookup. The
        // same body names the same target, so the caller authorised here may have the
        // stored answer.
        let decision = {
            let state = self.state.read().await;
            access.check(state.units(), &target(&state)?).map_err(E::from)?;
            decide(&state)
        };
        let decision = match decision {
            Ok(d) => d,
            Err(refusal) => {
                // The same request may have been written meanwhile (a retry racing a
                // first attempt whose answer the client never got): answer as it was.
                if let Some(receipt) = self.earlier_answer(request_id, &fingerprint).await? {
                    return Ok(receipt);
                }
                return Err(refusal);
            }
        };
        let now = prost_types::Timestamp::from(SystemTime::now());
        let actor = access.caller.actor();
        let events = decision.events.iter().map(|e| recorded::envelope(e, actor.clone(), now, request_id)).collect();
        let append = AppendRequest::new(decision.stream.to_string(), decision.expected, events)
            .with_request_id(request_id, fingerprint.clone());
        let receipt = match self.log.append(append).await {
            Ok(r) => r,
            // The id is taken: by this request's first attempt (or a concurrent one),
            // answered as it was, or by another request, refused.
            Err(LogError::RequestIdReused { .. }) => match self.earlier_answer(request_id, &fingerprint).await? {
                Some(r) => return Ok(r),
                None => return Err(Status::aborted("concurrent request with the same request_id; retry").into()),
            },
            Err(e) => return Err(status::log(e).into()),
        };
        self.metrics.log_head.set(receipt.last_position as i64);
        self.projected(receipt.last_position).await?;
        Ok(receipt)
    }

    async fn earlier_answer(&self, request_id: &str, fingerprint: &[u8]) -> Result<Option<Receipt>, Status> {
        match self.log.find_request(request_id).map_err(status::log)? {
            None => Ok(None),
            Some((receipt, stored)) if stored == fingerprint => {
                self.projected(receipt.last_position).await?;
                Ok(Some(receipt))
            }
            Some(_) => Err(Status::already_exists(format!(
                "request_id {request_id:?} was already used for a different request"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Rule, Scope};
    use crate::{Caller, Role};
    use dvk_codec::{Recorded, Unreadable};
    use dvk_domain::unit::{Trees, UnitLookup};
    use dvk_domain::{Tree, UnitCode};
    use dvk_eventlog::LogConfig;
    use dvk_proto::events::v1::ModelStarted;
    use tonic::Code;

    /// Read models that hold nothing but empty trees: the write path is under test, not
    /// a projection.
    #[derive(Default)]
    struct Nothing(Trees);

    impl ReadModel for Nothing {
        fn apply(&mut self, _: &Recorded) {}
        fn skip(&mut self, _: &Unreadable) {}
    }

    impl KnowsUnits for Nothing {
        fn units(&self) -> &dyn UnitLookup {
            &self.0
        }
    }

    static START: Rule = Rule { method: "StartModel", roles: &[Role::Reporter], scope: Scope::Subtree };

    fn core(dir: &std::path::Path) -> (Core<Nothing>, watch::Sender<u64>) {
        let log = EventLog::open(LogConfig::new(dir, "registration")).unwrap();
        // The read models are taken to include everything: answers need not wait.
        let (projected_tx, projected) = watch::channel(u64::MAX);
        let core = Core {
            log,
            state: Arc::new(RwLock::new(Nothing::default())),
            projected,
            metrics: Arc::new(Metrics::new("registration")),
            source: "registration",
        };
        (core, projected_tx)
    }

    /// A reporter admitted to StartModel: national (allowed on every unit), or acting
    /// for unit 01 (and so not on unit 02).
    fn caller(subject: &str, unit: Option<&str>) -> Access {
        let unit = unit.map(|u| UnitCode::parse("unit", u).unwrap());
        START.admit(Caller { subject: subject.into(), role: Role::Reporter, unit }).unwrap()
    }

    fn body(day: i32) -> ModelStarted {
        ModelStarted { started_on: Some(dvk_proto::common::v1::Date { year: 2024, month: 3, day }) }
    }

    fn decision(day: i32) -> Result<Decision, Status> {
        let started_on = dvk_domain::Date::new("started_on", 2024, 3, day as u32).unwrap();
        Ok(Decision {
            stream: StreamId::Model(dvk_domain::model::ModelId::parse("id", "m").unwrap()),
            expected: ExpectedVersion::Any,
            events: vec![DomainEvent::Model(dvk_domain::model::ModelEvent::Started { started_on })],
        })
    }

    /// The model's unit.
    fn target(_: &Nothing) -> Result<Target, Status> {
        Ok(Target::unit(Tree::Pre2025, UnitCode::parse("unit", "02").unwrap()))
    }

    #[tokio::test]
    async fn a_stored_answer_goes_only_to_callers_allowed_on_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let (core, _projected) = core(dir.path());
        let (a, b, c) = (caller("a", None), caller("b", Some("01")), caller("c", None));
        let first = core.write(&a, "r-1", &body(1), target, |_| decision(1)).await.unwrap();
        assert!(!first.deduplicated);
        // The same request again, whose decision is refused now (the model has moved
        // on): the first caller's retry and an allowed caller's replay get the answer.
        let moved_on = |_: &Nothing| Err(Status::aborted("model m is at version 1, not 0"));
        let retry = core.write(&a, "r-1", &body(1), target, moved_on).await.unwrap();
        assert_eq!((retry.last_position, retry.deduplicated), (first.last_position, true));
        let replay = core.write(&c, "r-1", &body(1), target, moved_on).await.unwrap();
        assert_eq!(replay.last_position, first.last_position);
        // And when the decision is made again (a new model id drawn), the log finds the id.
        let replay = core.write(&c, "r-1", &body(1), target, |_| decision(1)).await.unwrap();
        assert_eq!(replay.last_position, first.last_position);
        // A caller not allowed on the target is refused by the rule's scope, however the
        // decision would go.
        for decide in [moved_on as fn(&Nothing) -> Result<Decision, Status>, |_| decision(1)] {
            let e = core.write(&b, "r-1", &body(1), target, decide).await.unwrap_err();
            assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
            assert_eq!(e.message(), "StartModel: unit 02 is outside the caller's unit 01", "{e:?}");
        }
        // Another body under the id is refused, to allowed callers.
        let e = core.write(&c, "r-1", &body(2), target, moved_on).await.unwrap_err();
        assert_eq!(e.code(), Code::AlreadyExists);
        assert_eq!(core.log.head(), first.last_position, "nothing but the first write was written");
        core.log.close().unwrap();
    }
}
