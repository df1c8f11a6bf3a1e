//! Old event versions, brought to the form this release reads: the one place where
//! a stored event's type and schema version decide how it is read (after cqrs-es'
//! `EventUpcaster::can_upcast(event_type, event_version)`). Nothing here validates:
//! an upcaster rewrites what an earlier release wrote into the shape today's decoder
//! expects, so any earlier release's log replays.

use dvk_proto::events::v1::envelope::Payload;

use crate::convert::{DecodeError, bad};
use crate::event::event_type;

/// The schema version this release writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Rewrites payloads of one event type written at schema version `up_to` or earlier.
struct Upcaster {
    event_type: &'static str,
    up_to: u32,
    upcast: fn(&mut Payload),
}

impl Upcaster {
    fn can_upcast(&self, event_type: &str, version: u32) -> bool {
        self.event_type == event_type && version <= self.up_to
    }
}

/// Every upcaster, oldest first.
const UPCASTERS: &[Upcaster] = &[
    // Unit names were stored as the GSO lists spell them, double spaces included,
    // until names were kept on one line with single spaces; a re-import compares the
    // stored units with today's form of the same records.
    Upcaster { event_type: "dvk.events.v1.UnitsImported", up_to: 1, upcast: single_spaced_unit_names },
];

/// Brings `payload`, stored as `stored_type` at `version` (0: unset, read as 1), to
/// today's form. Refused: a type that is not the payload's, and a version newer than
/// this release reads (a log written by a later release).
pub fn upcast(stored_type: &str, version: u32, payload: &mut Payload) -> Result<(), DecodeError> {
    let actual = event_type(payload);
    if !stored_type.is_empty() && stored_type != actual {
        return Err(bad("event", format!("stored as {stored_type} but holds {actual}")));
    }
    let version = version.max(1);
    if version > SCHEMA_VERSION {
        return Err(bad(
            "event",
            format!("{actual} has schema version {version}; this release reads up to {SCHEMA_VERSION}"),
        ));
    }
    for upcaster in UPCASTERS.iter().filter(|u| u.can_upcast(actual, version)) {
        (upcaster.upcast)(payload);
    }
    Ok(())
}

fn single_spaced(s: &mut String) {
    if s.contains("  ") || s.contains(|c: char| c.is_whitespace() && c != ' ') || s.trim().len() != s.len() {
        *s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    }
}

fn single_spaced_unit_names(payload: &mut Payload) {
    if let Payload::UnitsImported(u) = payload {
        for record in &mut u.units {
            single_spaced(&mut record.name);
            single_spaced(&mut record.english_name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dvk_proto::events::v1 as pe;

    fn imported(name: &str) -> Payload {
        Payload::UnitsImported(pe::UnitsImported {
            units: vec![pe::UnitRecord { name: name.into(), ..Default::default() }],
            ..Default::default()
        })
    }

    fn name(p: &Payload) -> &str {
        let Payload::UnitsImported(u) = p else { panic!("units imported") };
        &u.units[0].name
    }

    #[test]
    fn version_one_unit_names_are_single_spaced() {
        let mut p = imported(" Xã Cò  Nòi\t");
        upcast("dvk.events.v1.UnitsImported", 1, &mut p).unwrap();
        assert_eq!(name(&p), "Xã Cò Nòi");
        // An envelope that never set its version reads as version 1.
        let mut p = imported("Xã  Chiềng Hắc");
        upcast("", 0, &mut p).unwrap();
        assert_eq!(name(&p), "Xã Chiềng Hắc");
    }

    #[test]
    fn a_newer_version_or_another_type_is_refused_by_name() {
        let mut p = imported("Xã A");
        let e = upcast("dvk.events.v1.UnitsImported", SCHEMA_VERSION + 1, &mut p).unwrap_err();
        assert!(e.to_string().contains("schema version 2; this release reads up to 1"), "{e}");
        let e = upcast("dvk.events.v1.ModelStarted", 1, &mut p).unwrap_err();
        assert!(e.to_string().contains("stored as dvk.events.v1.ModelStarted but holds dvk.events.v1.UnitsImported"));
    }

    #[test]
    fn every_upcaster_names_a_real_event_type() {
        use prost_reflect::DescriptorPool;
        let pool = DescriptorPool::decode(dvk_proto::FILE_DESCRIPTOR_SET).unwrap();
        for u in UPCASTERS {
            assert!(pool.get_message_by_name(u.event_type).is_some(), "{} is not a message", u.event_type);
            assert!(u.up_to <= SCHEMA_VERSION, "{} upcasts a version this release does not read", u.event_type);
        }
    }
}
