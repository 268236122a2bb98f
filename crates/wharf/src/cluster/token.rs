//! Room names as channel and subject tokens.

/// A room name as one channel or subject token: ASCII letters, digits, `-` and `_` stay, every
/// other byte becomes `~` and two upper-case hex digits, and the empty name is `~`. One-to-one,
/// so two rooms never share a channel, a subject or a stored stream.
///
/// NATS subjects cannot hold `.`, `*`, `>` or white space in a token, nor an empty token;
/// Redis takes any bytes, and the same name on both keeps the engines interchangeable. The
/// backplane's room channels (`<prefix>.room.<token>`) and the NATS history's subjects use it.
///
/// ```
/// use wharf::cluster::room_token;
/// assert_eq!(room_token("chat:1"), "chat~3A1");
/// assert_eq!(room_token("caf\u{e9}"), "caf~C3~A9");
/// assert_eq!(room_token(""), "~");
/// ```
pub fn room_token(room: &str) -> String {
    if room.is_empty() {
        return "~".to_owned();
    }
    let mut token = String::with_capacity(room.len());
    for byte in room.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            token.push(char::from(byte));
        } else {
            token.push_str(&format!("~{byte:02X}"));
        }
    }
    token
}

#[cfg(test)]
mod tests {
    use super::room_token;

    #[test]
    fn room_names_escape_one_to_one_into_one_token() {
        assert_eq!(room_token("lobby"), "lobby");
        assert_eq!(room_token("chat:1"), "chat~3A1");
        assert_eq!(room_token("a.b *>"), "a~2Eb~20~2A~3E");
        assert_eq!(room_token("~"), "~7E");
        assert_eq!(room_token("é"), "~C3~A9");
        // `~` is escaped itself, so an escaped name never equals another name's escape.
        assert_ne!(room_token("~2E"), room_token("."));
        let rooms = [
            "", "~", "chat", "chat:*", "chat:>", "a.b", "a b", "a\tb", "café", "~3A", ":", "a_b",
            "a-b", "A",
        ];
        let mut tokens: Vec<String> = rooms.iter().map(|r| room_token(r)).collect();
        for (room, token) in rooms.iter().zip(&tokens) {
            let safe = |b: u8| b.is_ascii_alphanumeric() || b"-_~".contains(&b);
            assert!(
                !token.is_empty() && token.bytes().all(safe),
                "{room:?} → {token}"
            );
        }
        tokens.sort();
        tokens.dedup();
        assert_eq!(tokens.len(), rooms.len(), "distinct rooms, distinct tokens");
    }
}
