//! Room name patterns, where `*` stands for any run of characters: `[[rooms.history.rule]]`
//! patterns use them, and so can an application's own rules (which rooms a token may use).

/// Whether `name` matches `pattern`, where `*` stands for any run of characters (also none)
/// and every other character for itself.
///
/// ```
/// use wharf::pattern::matches;
/// assert!(matches("chat:*", "chat:lobby"));
/// assert!(matches("*:news", "eu:news"));
/// assert!(matches("lobby", "lobby"));
/// assert!(!matches("chat:*", "chats:x"));
/// ```
pub fn matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty(); // no `*`: an exact name
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_like_globs() {
        for (pattern, name, expected) in [
            ("chat:*", "chat:lobby", true),
            ("chat:*", "chat:", true),
            ("chat:*", "chats:x", false),
            ("*:news", "eu:news", true),
            ("*:news", "eu:newsy", false),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "acb", false),
            ("ab*ba", "aba", false),
            ("lobby", "lobby", true),
            ("lobby", "lobby2", false),
            ("*", "", true),
        ] {
            assert_eq!(matches(pattern, name), expected, "{pattern} ~ {name}");
        }
    }
}
