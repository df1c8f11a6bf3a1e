//! Hostile bytes: whatever arrives as an envelope (from Kafka, from a damaged log
//! that passed its checksum, from a client) decodes or is refused, and converting
//! what decodes into domain events never panics.

use dvk_codec::recorded;
use dvk_domain::report::{Figure, Figures};
use dvk_proto::events::v1::Envelope;
use proptest::prelude::*;
use prost::Message;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_decode_or_are_refused_without_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(env) = Envelope::decode(bytes.as_slice())
            && let Ok(r) = recorded::decode(1, env)
        {
            let mut trees = dvk_domain::unit::Trees::default();
            let mut problems = Vec::new();
            let _ = trees.apply(&r.event, &mut problems);
        }
    }

    #[test]
    fn mutated_real_envelopes_never_panic(flip in 0usize..400, bit in 0u8..8, cut in 0usize..400) {
        // A real model registration, then one bit flipped and the tail cut.
        let env = Envelope {
            stream_id: "model-1".into(),
            source: "registration".into(),
            source_position: 7,
            payload: Some(dvk_proto::events::v1::envelope::Payload::ModelRegistered(
                dvk_proto::events::v1::ModelRegistered {
                    model_id: "0190a1b2-0000-7000-8000-000000000001".into(),
                    unit: Some(dvk_proto::common::v1::UnitCode { code: "07192".into() }),
                    tree: dvk_proto::common::v1::Tree::Pre2025 as i32,
                    registered_on: Some(dvk_proto::common::v1::Date { year: 2024, month: 3, day: 8 }),
                    details: Some(dvk_proto::events::v1::ModelDetails { name: "Mô hình".into(), ..Default::default() }),
                },
            )),
            ..Envelope::default()
        };
        let mut bytes = env.encode_to_vec();
        let i = flip % bytes.len();
        bytes[i] ^= 1 << bit;
        bytes.truncate(cut.max(1).min(bytes.len()));
        if let Ok(env) = Envelope::decode(bytes.as_slice()) {
            let _ = recorded::decode(1, env);
        }
    }

    #[test]
    fn periods_parse_or_are_refused_naming_the_field(s in "\\PC{0,16}") {
        match dvk_domain::Period::parse("period", &s) {
            Ok(p) => prop_assert_eq!(dvk_domain::Period::parse("period", &p.to_string()).unwrap(), p),
            Err(e) => prop_assert!(e.to_string().contains("period"), "{}", e),
        }
    }

    #[test]
    fn any_figures_are_judged_without_overflow(values in proptest::collection::vec(any::<i64>(), Figure::COUNT)) {
        let f: Figures = Figure::ALL.into_iter().zip(values).collect();
        if f.validate("figures").is_ok() {
            // Accepted figures are within bounds: a national sum of 100,000 of them fits.
            for (_, v) in f.iter() {
                prop_assert!((0..=100_000_000_000_000).contains(&v));
                prop_assert!(v.checked_mul(100_000).is_some());
            }
        }
    }
}
