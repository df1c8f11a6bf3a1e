//! Hostile files given to dvkctl's importers: any bytes as a GSO list, a CSV report
//! sheet or an .xlsx are parsed or refused with a message, never a panic, and never
//! an unbounded allocation (inputs are bounded here; the readers stream).

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_as_a_gso_list_are_parsed_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = dvk_gso::read(bytes.as_slice());
    }

    #[test]
    fn any_text_as_a_gso_list_with_its_header_is_parsed_or_refused(rows in proptest::collection::vec("[0-9A-Za-zÀ-ỹ ,\"\\n]{0,60}", 0..20)) {
        let mut text = "Tỉnh Thành Phố,Mã TP,Quận Huyện,Mã QH,Phường Xã,Mã PX,Cấp,Tên Tiếng Anh\n".to_owned();
        text.push_str(&rows.join("\n"));
        let _ = dvk_gso::read(text.as_bytes());
    }

    #[test]
    fn any_report_sheet_is_read_or_refused(body in proptest::collection::vec("[0-9a-z_.,\\- \"H]{0,40}", 0..10), ext in prop_oneof![Just("csv"), Just("xlsx")]) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("sheet.{ext}"));
        let mut text = dvk_client::reports::columns().iter().map(|(c, _)| *c).collect::<Vec<_>>().join(",");
        text.push('\n');
        text.push_str(&body.join("\n"));
        std::fs::write(&path, text).unwrap();
        if let Ok(rows) = dvk_client::reports::read(&path) {
            prop_assert!(rows.len() <= body.len());
        }
    }
}
