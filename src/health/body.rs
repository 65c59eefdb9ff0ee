//! Lenient reading of MI's `/healthz` body.
//!
//! MI joins faulty CApp file names into `"Faulty CAPPs" : ["a.car","b.car"]` without JSON
//! escaping, so a name with a quote makes the body invalid JSON. The status code decides
//! readiness; this parser only recovers the names for operators, and never fails.

/// At most this many names are kept from one answer.
pub const MAX_CAPPS: usize = 64;
/// Names longer than this are cut (on a character boundary) and marked with `…`.
pub const MAX_NAME_BYTES: usize = 256;

const KEY: &[u8] = b"\"Faulty CAPPs\"";

/// The faulty CApp names in a `/healthz` body, best effort; empty if there are none or the
/// body has no recognisable list.
pub fn faulty_capps(body: &[u8]) -> Vec<String> {
    read_faulty_capps(body).names
}

/// The faulty CApps a `/healthz` body lists, and whether it listed them all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultyCapps {
    /// The names, best effort (see [`faulty_capps`]).
    pub names: Vec<String>,
    /// The list was read to its `]`, no name cut and none left out: routing may rely on
    /// it (a cut list may hide a CApp that is not mapped).
    pub complete: bool,
}

/// [`faulty_capps`], with whether the list was read whole.
pub fn read_faulty_capps(body: &[u8]) -> FaultyCapps {
    let Some(key_at) = find(body, KEY) else {
        return FaultyCapps::default();
    };
    let rest = &body[key_at + KEY.len()..];
    let Some(rest) = after_token(rest, b':').and_then(|r| after_token(r, b'[')) else {
        return FaultyCapps::default();
    };
    list_items(rest)
}

/// Items of a `"…","…"]` list whose strings may contain unescaped quotes. A quote closes an
/// item only when what follows it is `,` + `"` or `]` (spaces allowed between).
fn list_items(mut rest: &[u8]) -> FaultyCapps {
    let mut names = Vec::new();
    let mut whole = true;
    loop {
        rest = skip_space(rest);
        match rest.first() {
            Some(b'"') => rest = &rest[1..],
            Some(b']') if names.is_empty() => return FaultyCapps::ended(names, whole, &rest[1..]),
            _ => return FaultyCapps::cut(names),
        }
        let Some((name, after)) = item(rest) else {
            // Unterminated: keep what is there (the body may have been cut at the size limit).
            push_name(&mut names, rest);
            return FaultyCapps::cut(names);
        };
        whole &= push_name(&mut names, name);
        let after = skip_space(after);
        match after.first() {
            Some(b']') => return FaultyCapps::ended(names, whole, &after[1..]),
            // More names than are kept: the list is not whole.
            _ if names.len() >= MAX_CAPPS => return FaultyCapps::cut(names),
            Some(b',') => rest = &after[1..],
            _ => return FaultyCapps::cut(names),
        }
    }
}

impl FaultyCapps {
    /// A list that reached its `]`: complete if every name was kept whole and the body
    /// ends there, as MI's does (`]}`). Anything after it may mean a name with `"]` in it
    /// ended the list early and hid the names after it.
    fn ended(names: Vec<String>, whole: bool, after: &[u8]) -> FaultyCapps {
        let ends = after.iter().all(|&b| b == b'}' || b.is_ascii_whitespace());
        FaultyCapps {
            names,
            complete: whole && ends,
        }
    }

    fn cut(names: Vec<String>) -> FaultyCapps {
        FaultyCapps {
            names,
            complete: false,
        }
    }
}

/// Splits `name"…` at the quote that really ends the item.
fn item(text: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut from = 0;
    while let Some(offset) = text[from..].iter().position(|&b| b == b'"') {
        let quote = from + offset;
        let after = skip_space(&text[quote + 1..]);
        let closes = match after.first() {
            Some(b']') | None => true,
            Some(b',') => skip_space(&after[1..]).first() == Some(&b'"'),
            _ => false,
        };
        if closes {
            return Some((&text[..quote], &text[quote + 1..]));
        }
        from = quote + 1;
    }
    None
}

/// Keep a name; false if it had to be changed (empty, not UTF-8, or cut).
fn push_name(names: &mut Vec<String>, raw: &[u8]) -> bool {
    let text = String::from_utf8_lossy(raw);
    let exact = matches!(text, std::borrow::Cow::Borrowed(_));
    let text = text.trim();
    if text.is_empty() {
        return false;
    }
    if text.len() <= MAX_NAME_BYTES {
        names.push(text.to_string());
        return exact;
    }
    let mut cut = MAX_NAME_BYTES;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    names.push(format!("{}…", &text[..cut]));
    false
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn skip_space(text: &[u8]) -> &[u8] {
    let start = text
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(text.len());
    &text[start..]
}

fn after_token(text: &[u8], token: u8) -> Option<&[u8]> {
    let text = skip_space(text);
    (text.first() == Some(&token)).then(|| &text[1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mi_faulty_body_byte_for_byte() {
        let body = br#"{"version":"4.4.0", "update_level":"-", "status": "not ready, faulty CAPPs detected", "Faulty CAPPs" : ["bad_1.0.0.car","other_1.0.0.car"]}"#;
        assert_eq!(faulty_capps(body), ["bad_1.0.0.car", "other_1.0.0.car"]);
    }

    #[test]
    fn ready_body_has_none() {
        let body = br#"{"version":"4.4.0", "update_level":"-", "status" : "ready"}"#;
        assert!(faulty_capps(body).is_empty());
    }

    #[test]
    fn unescaped_quotes_and_commas_inside_names() {
        let body = br#"{"Faulty CAPPs" : ["we"ird.car","a, b".car" , "last"one.car"]}"#;
        assert_eq!(
            faulty_capps(body),
            [r#"we"ird.car"#, r#"a, b".car"#, r#"last"one.car"#]
        );
    }

    #[test]
    fn odd_spacing_and_empty_list() {
        assert_eq!(
            faulty_capps(b"{\"Faulty CAPPs\"\n:\n[ \"x.car\" ]}"),
            ["x.car"]
        );
        assert!(faulty_capps(br#"{"Faulty CAPPs" : []}"#).is_empty());
    }

    #[test]
    fn garbage_and_truncation_never_fail() {
        assert!(faulty_capps(b"").is_empty());
        assert!(faulty_capps(b"not json at all").is_empty());
        assert!(faulty_capps(br#"{"Faulty CAPPs" : "#).is_empty());
        assert!(faulty_capps(br#"{"Faulty CAPPs" : 42}"#).is_empty());
        assert_eq!(
            faulty_capps(br#"{"Faulty CAPPs" : ["a.car","trunc"#),
            ["a.car", "trunc"]
        );
        assert_eq!(faulty_capps(&[0xff, 0xfe, b'"']), Vec::<String>::new());
    }

    #[test]
    fn only_a_list_read_to_its_end_is_complete() {
        let complete = |body: &[u8]| read_faulty_capps(body).complete;
        assert!(complete(br#"{"Faulty CAPPs" : ["a.car","b.car"]}"#));
        assert!(complete(br#"{"Faulty CAPPs" : ["we"ird.car"]}"#));
        assert!(complete(br#"{"Faulty CAPPs" : []}"#));
        assert!(complete(b"{\"Faulty CAPPs\" : [\"a.car\"] }\n"));
        // A name with `"]` in it ends the list early: what follows shows it.
        assert!(!complete(br#"{"Faulty CAPPs" : ["a.car"]","hidden.car"]}"#));
        assert!(!complete(br#"{"Faulty CAPPs" : ["a.car"], "other": 1}"#));
        assert!(!complete(br#"{"Faulty CAPPs" : ["a.car","trunc"#));
        assert!(!complete(br#"{"Faulty CAPPs" : ["a.car","#));
        assert!(!complete(br#"{"Faulty CAPPs" : ["a.car", ""]}"#));
        assert!(!complete(b"{\"Faulty CAPPs\" : [\"\xff.car\"]}"));
        assert!(!complete(b""));
        let many: Vec<String> = (0..=MAX_CAPPS).map(|i| format!("\"c{i}.car\"")).collect();
        let body = format!("{{\"Faulty CAPPs\" : [{}]}}", many.join(","));
        assert!(!complete(body.as_bytes()), "more names than are kept");
        let exactly: Vec<String> = (0..MAX_CAPPS).map(|i| format!("\"c{i}.car\"")).collect();
        let body = format!("{{\"Faulty CAPPs\" : [{}]}}", exactly.join(","));
        assert!(complete(body.as_bytes()));
        let long = format!(
            "{{\"Faulty CAPPs\" : [\"{}\"]}}",
            "x".repeat(MAX_NAME_BYTES + 1)
        );
        assert!(!complete(long.as_bytes()), "a cut name");
    }

    #[test]
    fn bounded_count_and_length() {
        let many: Vec<String> = (0..500).map(|i| format!("\"c{i}.car\"")).collect();
        let body = format!("{{\"Faulty CAPPs\" : [{}]}}", many.join(","));
        assert_eq!(faulty_capps(body.as_bytes()).len(), MAX_CAPPS);
        let long = format!("{{\"Faulty CAPPs\" : [\"{}\"]}}", "é".repeat(1000));
        let names = faulty_capps(long.as_bytes());
        assert!(names[0].len() <= MAX_NAME_BYTES + '…'.len_utf8());
        assert!(names[0].ends_with('…'));
    }
}
