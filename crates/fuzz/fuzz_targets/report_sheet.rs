//! Any bytes as a filled-in report sheet (`dvkctl reports import`), as .csv or .xlsx
//! (the first byte chooses): read or refused with a message, without a panic, and never
//! more rows than the sheet can hold.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((kind, body)) = data.split_first() else { return };
    let ext = if kind % 2 == 0 { "csv" } else { "xlsx" };
    let file = tempfile::Builder::new().suffix(&format!(".{ext}")).tempfile().unwrap();
    std::fs::write(file.path(), body).unwrap();
    if let Ok(rows) = dvk_client::reports::read(file.path()) {
        assert!(rows.len() <= body.len());
    }
});
