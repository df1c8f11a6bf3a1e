//! Free text from users: trimmed, normalised to Unicode NFC (Vietnamese is often typed
//! in decomposed form), free of control characters and bounded in length. Names are
//! one line with single spaces; longer text (a summary, a reason) keeps its lines.

use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};

use crate::DomainError;

/// Longest name of a unit, a model, a runner or a sponsor, in characters.
pub const MAX_NAME: usize = 300;
/// Longest descriptive text of a model (rationale, objectives, ...).
pub const MAX_TEXT: usize = 5_000;
/// Longest reason (for an amendment, a return, a reopening, a retirement).
pub const MAX_REASON: usize = 1_000;
/// Longest report summary.
pub const MAX_SUMMARY: usize = 20_000;
/// Longest decision number or request identifier.
pub const MAX_CODE: usize = 100;

/// Normalises `value` and checks it: at most `max` characters, no control characters
/// other than newline and tab, and not empty when `required`.
pub fn clean(field: &str, value: &str, max: usize, required: bool) -> Result<String, DomainError> {
    let trimmed = value.trim();
    // Most texts arrive composed already: the quick check proves it without rebuilding
    // the string (it answers "maybe" for the rare cases that need the full algorithm).
    let text: String =
        if is_nfc_quick(trimmed.chars()) == IsNormalized::Yes { trimmed.to_owned() } else { trimmed.nfc().collect() };
    if required && text.is_empty() {
        return Err(DomainError::invalid(field, "is required"));
    }
    let len = text.chars().count();
    if len > max {
        return Err(DomainError::invalid(field, format!("is {len} characters long; at most {max} are allowed")));
    }
    if let Some(c) = text.chars().find(|c| c.is_control() && *c != '\n' && *c != '\t') {
        return Err(DomainError::invalid(field, format!("contains the control character U+{:04X}", c as u32)));
    }
    Ok(text)
}

/// A name (of a unit, a model, its runner or sponsor, an issuing body, a decision
/// number): as [`clean`], and every run of whitespace inside it (double spaces, tabs,
/// line breaks, no-break spaces, as the GSO lists and pasted text carry them) becomes
/// one space, so that names read, compare and search the same however they were typed.
pub fn name(field: &str, value: &str, max: usize, required: bool) -> Result<String, DomainError> {
    // Most names have single spaces already: only the others are rebuilt.
    let inner = value.trim();
    if !inner.contains("  ") && !inner.contains(|c: char| c.is_whitespace() && c != ' ') {
        return clean(field, value, max, required);
    }
    clean(field, &inner.split_whitespace().collect::<Vec<_>>().join(" "), max, required)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decomposed_vietnamese_is_stored_composed() {
        // "Dân vận khéo" typed with combining marks (NFD).
        let nfd = "Da\u{302}n va\u{323}\u{302}n khe\u{301}o";
        let cleaned = clean("name", nfd, MAX_NAME, true).unwrap();
        assert_eq!(cleaned, "Dân vận khéo");
        assert_eq!(cleaned.chars().count(), 12);
    }

    #[test]
    fn blank_required_text_is_refused_naming_the_field() {
        let err = clean("details.name", "   ", MAX_NAME, true).unwrap_err();
        assert_eq!(err.violations()[0].field, "details.name");
    }

    #[test]
    fn length_is_counted_in_characters_after_normalisation() {
        let ok = "ắ".repeat(10); // 10 characters, 30 bytes
        assert!(clean("f", &ok, 10, true).is_ok());
        let err = clean("f", &"ắ".repeat(11), 10, true).unwrap_err();
        assert!(err.to_string().contains("11 characters"), "{err}");
    }

    #[test]
    fn control_characters_are_refused_but_newlines_kept() {
        assert!(clean("f", "a\u{0}b", 10, false).is_err());
        assert_eq!(clean("f", "a\nb", 10, false).unwrap(), "a\nb");
    }

    #[test]
    fn names_are_one_line_with_single_spaces() {
        // As in the GSO list: "Xã Cò  Nòi" (04138), "Xã  Hoàng Văn Thụ" (06178).
        assert_eq!(name("name", "Xã Cò  Nòi", MAX_NAME, true).unwrap(), "Xã Cò Nòi");
        assert_eq!(name("name", "Xã  Hoàng Văn Thụ", MAX_NAME, true).unwrap(), "Xã Hoàng Văn Thụ");
        assert_eq!(
            name("name", " Mô hình\t\"Dân vận khéo\"\n  xã A ", MAX_NAME, true).unwrap(),
            "Mô hình \"Dân vận khéo\" xã A"
        );
        assert_eq!(name("name", "Thôn\u{a0}\u{a0}3", MAX_NAME, true).unwrap(), "Thôn 3");
        assert!(name("name", "a\u{0}b", MAX_NAME, true).is_err());
        assert_eq!(name("details.name", "  ", MAX_NAME, true).unwrap_err().violations()[0].field, "details.name");
    }

    #[test]
    fn longer_text_keeps_its_lines_and_spacing() {
        let summary = "1. Kết quả:\n   - 12 mô hình\n\n2. Tồn tại";
        assert_eq!(clean("summary", summary, MAX_SUMMARY, false).unwrap(), summary);
    }

    proptest::proptest! {
        // The quick check is only a shortcut: every accepted text equals the full NFC
        // normalisation of the trimmed input, composed or not (Vietnamese letters with
        // and without combining marks, Latin, controls excluded by the generator).
        #[test]
        fn cleaned_text_is_the_nfc_of_the_input(value in "[ a-zA-Zàáạảãâầấậẩẫăằắặẳẵđêềếệểễôồốộổỗơờớợởỡưừứựửữ\\u{300}\\u{301}\\u{302}\\u{303}\\u{306}\\u{309}\\u{31b}\\u{323}]{0,40}") {
            let expected: String = value.trim().nfc().collect();
            proptest::prop_assert_eq!(clean("f", &value, 1_000, false).unwrap(), expected);
        }

        #[test]
        fn a_name_has_no_run_of_whitespace_and_keeps_its_words(value in "[ \t\na-zđắ]{0,40}") {
            let n = name("f", &value, 1_000, false).unwrap();
            proptest::prop_assert!(!n.contains("  ") && !n.contains(['\t', '\n']));
            proptest::prop_assert_eq!(n.split(' ').filter(|w| !w.is_empty()).collect::<Vec<_>>(), value.split_whitespace().collect::<Vec<_>>());
        }
    }
}
