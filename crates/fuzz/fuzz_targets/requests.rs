//! Any bytes as a write request (the first byte chooses RegisterModel, SubmitReport or
//! a unit record of ImportUnits): decoded and validated as the services do, refused with
//! errors naming fields or accepted, without a panic; accepted figures stay in bounds.

#![no_main]

use dvk_domain::error::Violations;
use dvk_domain::unit::Tree;
use dvk_codec::convert;
use dvk_proto::events::v1::UnitRecord;
use dvk_proto::registration::v1::RegisterModelRequest;
use dvk_proto::reporting::v1::SubmitReportRequest;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Some((kind, body)) = data.split_first() else { return };
    match kind % 3 {
        0 => {
            let Ok(req) = RegisterModelRequest::decode(body) else { return };
            let mut v = Violations::new();
            v.check(convert::unit_in("unit", req.unit.as_ref()));
            v.check(convert::date_in("registered_on", req.registered_on.as_ref()));
            v.check(convert::details_in(req.details.as_ref()));
            if let Err(e) = v.finish(|| ()) {
                assert!(!e.to_string().is_empty());
            }
        }
        1 => {
            let Ok(req) = SubmitReportRequest::decode(body) else { return };
            let mut v = Violations::new();
            v.check(convert::unit_in("unit", req.unit.as_ref()));
            v.check(convert::period_in("period", req.period.as_ref()));
            let figures = convert::figures_in(req.figures.as_ref());
            if figures.validate("figures").is_ok() {
                for (_, value) in figures.iter() {
                    assert!((0..=100_000_000_000_000).contains(&value));
                }
            }
            let _ = v.finish(|| ());
        }
        _ => {
            let Ok(record) = UnitRecord::decode(body) else { return };
            for tree in [Tree::Pre2025, Tree::Y2025] {
                let _ = convert::unit_record_in("units[0]", tree, &record);
            }
        }
    }
});
