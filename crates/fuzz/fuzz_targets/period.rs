//! Any text as a period: parsed (and printed back to the same period) or refused with
//! an error naming the field.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match dvk_domain::Period::parse("period", text) {
        Ok(p) => assert_eq!(dvk_domain::Period::parse("period", &p.to_string()).unwrap(), p),
        Err(e) => assert!(e.to_string().contains("period"), "{e}"),
    }
});
