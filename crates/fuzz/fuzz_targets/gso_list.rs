//! Any bytes as a GSO list of administrative units (`dvkctl units import`): parsed or
//! refused with a message, without a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dvk_gso::read(data);
});
