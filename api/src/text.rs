//! Text a request gives that listings show back: a lease's name (in `ls`,
//! `who` and the proxy's host names) and its project path. A name must read
//! as what it is, so characters a terminal does not show as themselves are
//! refused when the request is read (400), as is a project path longer than
//! any path Linux opens.

use serde::de::{Deserialize, Deserializer, Error};

/// Longest `project` a request may give, in bytes: Linux's `PATH_MAX`.
pub const MAX_PROJECT_BYTES: usize = 4096;

/// The first character of `text` that a terminal would not show as itself:
/// a control character (C0, DEL, C1, so also terminal escapes) or a format
/// character, which is invisible or reorders the text around it (the bidi
/// embeddings, overrides, isolates and marks U+202A-U+202E, U+2066-U+2069,
/// U+200E, U+200F, U+061C; zero-width spaces and joiners; the BOM; tags).
pub fn first_hidden_char(text: &str) -> Option<char> {
    text.chars().find(|&c| c.is_control() || is_format(c))
}

/// Unicode's general category Cf (format), as of Unicode 15.1.
fn is_format(c: char) -> bool {
    matches!(
        c as u32,
        0x00AD
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    )
}

/// `name` of a lease request: refused if it holds a hidden character.
pub(crate) fn shown_name<'de, D: Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    let name = Option::<String>::deserialize(de)?;
    if let Some(hidden) = name.as_deref().and_then(first_hidden_char) {
        return Err(D::Error::custom(format!(
            "name contains U+{:04X}, a control or formatting character that listings \
             would not show as written; use printable characters only",
            hidden as u32
        )));
    }
    Ok(name)
}

/// `project` of a lease request: refused past [`MAX_PROJECT_BYTES`].
pub(crate) fn project_path<'de, D: Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    let project = Option::<String>::deserialize(de)?;
    if let Some(len) = project.as_ref().map(String::len)
        && len > MAX_PROJECT_BYTES
    {
        return Err(D::Error::custom(format!(
            "project is {len} bytes; a path is at most {MAX_PROJECT_BYTES}"
        )));
    }
    Ok(project)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_format_characters_are_hidden_letters_are_not() {
        for text in [
            "a\u{202e}b",
            "\u{2066}",
            "\u{200f}",
            "\u{061c}",
            "\u{200d}",
            "\u{feff}",
            "\u{e0041}",
            "\u{1b}[2J",
            "\u{7f}",
            "\u{85}",
        ] {
            assert!(first_hidden_char(text).is_some(), "{text:?}");
        }
        for text in ["api", "web-2", "واجهة", "日本", "café", "a.b_c"] {
            assert_eq!(first_hidden_char(text), None, "{text:?}");
        }
    }
}
