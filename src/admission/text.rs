//! Short, printable text from untrusted strings, for messages a person or a log reads.
//!
//! Image references, container names and reasons come from the request or from evidence. Before
//! they reach a denial, a warning or an annotation, control characters (and the Unicode
//! direction overrides that reorder what a terminal shows) are escaped, and the text is cut on a
//! character boundary with "…".

/// The mark that ends a cut text.
pub(crate) const ELLIPSIS: char = '…';

/// `text` with every control or direction-override character written as `\u{…}`.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_unsafe(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// `text` escaped, then cut to at most `max_chars` characters (the "…" included).
pub(crate) fn clean(text: &str, max_chars: usize) -> String {
    cut(&escape(text), max_chars)
}

/// `text` cut to at most `max_chars` characters, the last of them "…" when anything was cut.
pub(crate) fn cut(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    if max_chars > 0 {
        out.push(ELLIPSIS);
    }
    out
}

/// Characters a terminal or log viewer would act on rather than show.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_direction_characters_are_escaped() {
        assert_eq!(escape("a\nb\u{1b}[31m"), "a\\u{a}b\\u{1b}[31m");
        assert_eq!(escape("x\u{202e}y"), "x\\u{202e}y");
        assert_eq!(escape("nginx:1.25 ✓"), "nginx:1.25 ✓");
    }

    #[test]
    fn cut_counts_characters_and_ends_with_an_ellipsis() {
        assert_eq!(cut("abcdef", 6), "abcdef");
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("ééééé", 3), "éé…");
        assert_eq!(cut("abc", 0), "");
        assert_eq!(clean("a\tb", 4), "a\\u…");
    }
}
