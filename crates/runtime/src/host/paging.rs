//! Paging of `List*` and history requests.

use dvk_domain::DomainError;
use dvk_proto::events::v1::Envelope;
use tonic::Status;

use super::{Core, ReadModel};
use crate::status;

fn invalid(field: &str, why: &str) -> Status {
    status::domain(DomainError::invalid(field, why))
}

/// Page size of a `List*` request: 0 means the default of 100; at most 1000.
pub fn page_size(requested: i32) -> Result<usize, Status> {
    match requested {
        0 => Ok(100),
        n if n < 0 => Err(invalid("page_size", "must not be negative")),
        n => Ok((n as usize).min(1000)),
    }
}

impl<S: ReadModel> Core<S> {
    /// One page of a stream's events, oldest first: `(events, next_page_token)`. The
    /// token is the next stream version to read.
    pub fn history(&self, stream: &str, size: usize, page_token: &str) -> Result<(Vec<Envelope>, String), Status> {
        let from: u64 = if page_token.is_empty() {
            1
        } else {
            match page_token.parse() {
                Ok(v) if v >= 1 => v,
                _ => return Err(invalid("page_token", "is not a token from a previous page")),
            }
        };
        let records = self.log.read_stream(stream, from).map_err(status::log)?;
        let more = records.len() > size;
        let events =
            records.iter().take(size).map(|r| r.envelope().map_err(status::log)).collect::<Result<Vec<_>, _>>()?;
        let next = if more { (from + size as u64).to_string() } else { String::new() };
        Ok((events, next))
    }
}
