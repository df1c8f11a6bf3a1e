//! Any bytes as an event envelope (from Kafka, a log record that passed its checksum, a
//! client): decoded or refused, and what decodes converts into domain events or is
//! refused, without a panic.

#![no_main]

use dvk_codec::recorded;
use dvk_proto::events::v1::Envelope;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = Envelope::decode(data)
        && let Ok(r) = recorded::decode(1, env)
    {
        let mut trees = dvk_domain::unit::Trees::default();
        let mut problems = Vec::new();
        let _ = trees.apply(&r.event, &mut problems);
    }
});
