//! A stored event as the application reads it: [`Recorded<DomainEvent>`], decoded
//! from an `Envelope` once (upcast, then read by structure), and the envelope a new
//! event is written as.

use dvk_domain::DomainEvent;
use dvk_proto::common::v1::Actor;
use dvk_proto::events::v1::Envelope;
use prost_types::Timestamp;

use crate::convert::{DecodeError, bad};
use crate::{StreamId, event, upcast};

/// An event in a log, with where and by whom it was recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded<E = DomainEvent> {
    /// Its position in the log it was read from.
    pub position: u64,
    pub stream: StreamId,
    /// Its version in its stream (1: the stream's first event).
    pub version: u64,
    /// The service that wrote it and its position there (for an event received from
    /// another service's log; this log's own events carry this log's source).
    pub source: String,
    pub source_position: u64,
    pub actor: Option<Actor>,
    pub occurred_at: Option<Timestamp>,
    pub recorded_at: Option<Timestamp>,
    pub event: E,
    /// Parts of the stored event this release could not read (a unit record or a link
    /// of a tree event), passed over: the caller reports them.
    pub passed_over: Vec<String>,
}

impl<E> Recorded<E> {
    /// An event of this log's own at `position`, version `version` of `stream`, with
    /// no actor or time (as tests and fixtures build them).
    pub fn new(position: u64, stream: StreamId, version: u64, source: &str, event: E) -> Self {
        Recorded {
            position,
            stream,
            version,
            source: source.to_owned(),
            source_position: position,
            actor: None,
            occurred_at: None,
            recorded_at: None,
            event,
            passed_over: Vec::new(),
        }
    }
}

/// A stored event that does not decode (a corrupt or foreign log, or one written by a
/// later release), with what is known of where it came from.
#[derive(Debug, thiserror::Error)]
#[error("event at position {position} ({source_name} {source_position}, {stream} version {version}): {error}")]
pub struct Unreadable {
    pub position: u64,
    /// Its stream as stored, and its version there: a read model still counts the
    /// version, so that the stream's next write expects the right one.
    pub stream: String,
    pub version: u64,
    pub source_name: String,
    pub source_position: u64,
    pub recorded_at: Option<Timestamp>,
    pub error: DecodeError,
}

impl Unreadable {
    /// An event of `source` at `position` (its own log's, so the same source
    /// position) that does not decode, as tests build them.
    pub fn new(position: u64, stream: &StreamId, version: u64, source: &str, error: DecodeError) -> Self {
        Unreadable {
            position,
            stream: stream.to_string(),
            version,
            source_name: source.to_owned(),
            source_position: position,
            recorded_at: None,
            error,
        }
    }
}

/// Decodes the event stored at `position`.
#[allow(clippy::result_large_err, reason = "the event decoded is larger still, and an unreadable one is rare")]
pub fn decode(position: u64, env: Envelope) -> Result<Recorded, Unreadable> {
    let Envelope {
        stream_id,
        stream_version,
        source,
        source_position,
        event_type,
        schema_version,
        occurred_at,
        recorded_at,
        actor,
        payload,
        ..
    } = env;
    let mut passed_over = Vec::new();
    let event = (|| {
        let stream =
            StreamId::parse(&stream_id).ok_or_else(|| bad("stream id", format!("{stream_id:?} is unknown")))?;
        let mut payload = payload.ok_or_else(|| bad("event", "no payload"))?;
        upcast::upcast(&event_type, schema_version, &mut payload)?;
        let event = event::decode(&stream, payload, &mut passed_over)?;
        Ok((stream, event))
    })();
    match event {
        Ok((stream, event)) => Ok(Recorded {
            position,
            stream,
            version: stream_version,
            source,
            source_position,
            actor,
            occurred_at,
            recorded_at,
            event,
            passed_over,
        }),
        Err(error) => Err(Unreadable {
            position,
            stream: stream_id,
            version: stream_version,
            source_name: source,
            source_position,
            recorded_at,
            error,
        }),
    }
}

/// The envelope a new event is appended as (the log stamps its id, stream, version,
/// source and position).
pub fn envelope(event: &DomainEvent, actor: Actor, occurred_at: Timestamp, correlation_id: &str) -> Envelope {
    let payload = event::encode(event);
    Envelope {
        event_type: event::event_type(&payload).into(),
        schema_version: upcast::SCHEMA_VERSION,
        occurred_at: Some(occurred_at),
        actor: Some(actor),
        correlation_id: correlation_id.to_owned(),
        payload: Some(payload),
        ..Envelope::default()
    }
}

/// A tree event kept outside a log (a snapshot's copy of the trees), written as an
/// envelope of its type and this release's schema version.
pub fn tree_envelope(event: &DomainEvent) -> Envelope {
    let payload = event::encode(event);
    Envelope {
        event_type: event::event_type(&payload).into(),
        schema_version: upcast::SCHEMA_VERSION,
        payload: Some(payload),
        ..Envelope::default()
    }
}

/// A tree event read back from [`tree_envelope`]'s form (or an older snapshot's, which
/// kept the payload alone). It was folded when it was first read, so nothing of it is
/// passed over that was not reported then.
pub fn tree_event(env: Envelope) -> Result<DomainEvent, DecodeError> {
    use dvk_proto::events::v1::envelope::Payload as P;
    let mut payload = env.payload.ok_or_else(|| bad("event", "no payload"))?;
    upcast::upcast(&env.event_type, env.schema_version, &mut payload)?;
    let stream = match &payload {
        P::UnitsImported(u) => {
            StreamId::Units(crate::convert::tree_in("tree", u.tree).map_err(|e| bad("units imported", e))?)
        }
        P::UnitsReorganized(_) => StreamId::Reorganization,
        other => return Err(bad("tree event", event::event_type(other))),
    };
    event::decode(&stream, payload, &mut Vec::new())
}
