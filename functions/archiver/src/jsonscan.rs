//! A validating JSON scanner: whether a text is one JSON value, without building anything.
//!
//! It accepts exactly what `serde_json::from_str::<serde::de::IgnoredAny>` accepts (the
//! archiver's definition of "valid JSON", kept since the first release): RFC 8259 values with
//! JSON whitespace around them, strings without raw control characters, the escapes
//! `\" \\ \/ \b \f \n \r \t \uXXXX` (any four hex digits: like `IgnoredAny`, a lone surrogate
//! is not refused), numbers without leading zeros, `true`, `false`, `null`, and nesting of
//! any depth (past [`MAX_DEPTH`] this scanner answers `false` and the caller asks serde_json).
//!
//! The input must already be valid UTF-8 (checked by the caller with `std::str::from_utf8`):
//! a multi-byte character never holds a quote, a backslash or a control byte, so the scanner
//! reads bytes. String contents, most of a record, are skipped eight bytes at a time.
//!
//! Pure and allocation-free. A unit test holds it to serde_json's verdict on many thousands of
//! generated and mutated texts.

/// Nesting depth this scanner follows; deeper texts are answered `false` (the caller then
/// asks serde_json, which has no limit on ignored values).
pub const MAX_DEPTH: usize = 256;

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit of every byte of `w` below `n` (n <= 0x80); SWAR. Bits above the lowest
/// set one may be wrong (a borrow runs upward), the lowest is exact.
#[inline]
fn below(w: u64, n: u8) -> u64 {
    w.wrapping_sub(ONES * u64::from(n)) & !w & HIGHS
}

/// A mask whose lowest set bit is in the first byte of `w` (little-endian) that is a quote,
/// a backslash or a control byte (below 0x20); zero when there is none.
#[inline]
fn special(w: u64) -> u64 {
    below(w ^ (ONES * u64::from(b'"')), 1)
        | below(w ^ (ONES * u64::from(b'\\')), 1)
        | below(w, 0x20)
}

#[inline]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\t' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// The index after the string whose opening quote is at `i - 1`; `None` when it is not a
/// valid string.
#[inline]
fn string(b: &[u8], mut i: usize) -> Option<usize> {
    loop {
        // Eight bytes at a time up to the first quote, backslash or control byte.
        while let Some(chunk) = b.get(i..i + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let mask = special(u64::from_le_bytes(word));
            if mask != 0 {
                i += (mask.trailing_zeros() / 8) as usize;
                break;
            }
            i += 8;
        }
        match *b.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => i = escape(b, i + 1)?,
            c if c < 0x20 => return None,
            _ => i += 1,
        }
    }
}

/// The index after the escape whose backslash is at `i - 1`.
#[inline]
fn escape(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(i + 1),
        b'u' => {
            let hex = b.get(i + 1..i + 5)?;
            hex.iter().all(u8::is_ascii_hexdigit).then_some(i + 5)
        }
        _ => None,
    }
}

#[inline]
fn digits(b: &[u8], mut i: usize) -> usize {
    while let Some(b'0'..=b'9') = b.get(i) {
        i += 1;
    }
    i
}

/// The index after the number starting at `i`.
fn number(b: &[u8], mut i: usize) -> Option<usize> {
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match *b.get(i)? {
        b'0' => {
            i += 1;
            if let Some(b'0'..=b'9') = b.get(i) {
                return None;
            }
        }
        b'1'..=b'9' => i = digits(b, i + 1),
        _ => return None,
    }
    if b.get(i) == Some(&b'.') {
        let end = digits(b, i + 1);
        if end == i + 1 {
            return None;
        }
        i = end;
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        let end = digits(b, i);
        if end == i {
            return None;
        }
        i = end;
    }
    Some(i)
}

/// The index after the literal `word` at `i`.
#[inline]
fn literal(b: &[u8], i: usize, word: &[u8]) -> Option<usize> {
    (b.get(i..i + word.len())? == word).then_some(i + word.len())
}

/// After `{` or `,` in an object: the index after `"key" :` and the whitespace behind it.
#[inline]
fn member_key(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let i = skip_ws(b, string(b, i + 1)?);
    (b.get(i) == Some(&b':')).then(|| skip_ws(b, i + 1))
}

/// Whether `text` (valid UTF-8) is exactly one JSON value with optional JSON whitespace
/// around it, as serde_json reads it; `false` also for nesting deeper than [`MAX_DEPTH`].
pub fn is_json(text: &[u8]) -> bool {
    scan(text).is_some()
}

fn scan(b: &[u8]) -> Option<()> {
    // `true` for an object, `false` for an array, per open container.
    let mut stack = [false; MAX_DEPTH];
    let mut depth = 0usize;
    let mut i = skip_ws(b, 0);
    loop {
        // A value starts at `i`.
        match *b.get(i)? {
            open @ (b'{' | b'[') => {
                let close = if open == b'{' { b'}' } else { b']' };
                i = skip_ws(b, i + 1);
                if b.get(i) == Some(&close) {
                    i += 1;
                } else {
                    *stack.get_mut(depth)? = open == b'{';
                    depth += 1;
                    if open == b'{' {
                        i = member_key(b, i)?;
                    }
                    continue;
                }
            }
            b'"' => i = string(b, i + 1)?,
            b't' => i = literal(b, i, b"true")?,
            b'f' => i = literal(b, i, b"false")?,
            b'n' => i = literal(b, i, b"null")?,
            b'-' | b'0'..=b'9' => i = number(b, i)?,
            _ => return None,
        }
        // After a value: close containers until a comma opens the next value.
        loop {
            i = skip_ws(b, i);
            let Some(top) = depth.checked_sub(1) else {
                return (i == b.len()).then_some(());
            };
            let object = stack[top];
            match (*b.get(i)?, object) {
                (b',', true) => {
                    i = member_key(b, skip_ws(b, i + 1))?;
                    break;
                }
                (b',', false) => {
                    i = skip_ws(b, i + 1);
                    break;
                }
                (b'}', true) | (b']', false) => {
                    depth = top;
                    i += 1;
                }
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn serde_says(text: &[u8]) -> bool {
        std::str::from_utf8(text)
            .is_ok_and(|t| serde_json::from_str::<serde::de::IgnoredAny>(t).is_ok())
    }

    fn agree(text: &[u8]) {
        if std::str::from_utf8(text).is_err() {
            return;
        }
        assert_eq!(
            is_json(text),
            serde_says(text),
            "scanner and serde_json disagree on {:?}",
            String::from_utf8_lossy(text)
        );
    }

    #[test]
    fn valid_texts_are_accepted() {
        for t in [
            r#"{}"#,
            r#" { "a" : 1 } "#,
            "{\"a\":[1,-0,0.5,-1.5e+3,2E-2,1e9,true,false,null,\"x\",{},[]]}\r\n\t",
            r#"{"a":"\"\\\/\b\f\n\r\t\u00e9\uD800 é ✓"}"#,
            r#"{"a":{"b":{"c":[[[{"d":"0123456789abcdef0123456789"}]]]}},"e":""}"#,
            r#"[1,2]"#,
            r#""s""#,
            "42",
        ] {
            assert!(is_json(t.as_bytes()), "{t}");
            agree(t.as_bytes());
        }
    }

    #[test]
    fn invalid_texts_are_refused() {
        for t in [
            "",
            " ",
            "{",
            "}",
            "{\"a\":}",
            "{\"a\"1}",
            "{\"a\":1,}",
            "[1,]",
            "{,}",
            "[,1]",
            "{\"a\":01}",
            "{\"a\":-}",
            "{\"a\":1.}",
            "{\"a\":.5}",
            "{\"a\":1e}",
            "{\"a\":1e+}",
            "{\"a\":+1}",
            "{\"a\":tru}",
            "{\"a\":nul}",
            "{\"a\":True}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\\u12G4\"}",
            "{\"a\":\"\\u12\"}",
            "{\"a\":\"x\ty\"}",
            "{\"a\":\"x",
            "{\"a\":1} x",
            "{\"a\":1}{}",
            "{a:1}",
            "{'a':1}",
            "{\"a\":1]",
            "[1}",
            "\u{c}{}",
            "{\"a\":NaN}",
            "{\"a\":1 2}",
            "{\"a\"::1}",
            "{\"a\":1,,\"b\":2}",
            "{\"a\":\"\x01\"}",
        ] {
            assert!(!is_json(t.as_bytes()), "{t:?}");
            agree(t.as_bytes());
        }
    }

    #[test]
    fn nesting_past_the_limit_is_left_to_serde_json() {
        let nested = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        let deep = nested(MAX_DEPTH + 1);
        assert!(!is_json(deep.as_bytes()));
        assert!(serde_says(deep.as_bytes()), "serde_json has no limit here");
        assert!(is_json(nested(MAX_DEPTH).as_bytes()));
    }

    /// A deterministic generator (no dependency needed).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 33
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    const PIECES: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"",
        "\\",
        "\\u",
        "\\uD83D",
        "0",
        "-",
        "1",
        ".",
        "e",
        "E",
        "+",
        "9",
        "true",
        "false",
        "null",
        " ",
        "\n",
        "\t",
        "\r",
        "\"k\"",
        "\"v\"",
        "a",
        "é",
        "\u{1}",
        "\u{7f}",
        "\"0123456789abcdef01234\"",
        "/",
        "x",
    ];

    fn generated(rng: &mut Lcg) -> Vec<u8> {
        let n = rng.below(24);
        let mut out = String::new();
        for _ in 0..n {
            out.push_str(PIECES[rng.below(PIECES.len())]);
        }
        out.into_bytes()
    }

    fn mutated(rng: &mut Lcg, base: &[u8]) -> Vec<u8> {
        let mut v = base.to_vec();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(v.len() + 1);
            match rng.below(4) {
                0 if at < v.len() => {
                    v.remove(at);
                }
                1 if at < v.len() => v[at] = PIECES[rng.below(PIECES.len())].as_bytes()[0],
                2 => {
                    let piece = PIECES[rng.below(PIECES.len())].as_bytes();
                    v.splice(at..at, piece.iter().copied());
                }
                _ => v.truncate(at),
            }
        }
        v
    }

    #[test]
    fn the_scanner_agrees_with_serde_json_on_generated_and_mutated_texts() {
        let mut rng = Lcg(7);
        let bases: [&[u8]; 4] = [
            br#"{"timestamp":"2025-02-12T19:27:01.123Z","eventType":"user-event","event":{"id":"0f1e","time":1739388470156,"details":{"a":[1,-2.5e3,true,null],"b":"x\"y\\z\u00e9"}}}"#,
            br#"{"a":{"b":[{"c":0},{"d":-0.0}],"e":"0123456789abcdefghij"}}"#,
            br#"[{"k":"v"},[],{},"s",1E+2]"#,
            "{\"long\":\"0123456789abcdef0123456789abcdef0123456789abcdef\",\"é\":\"✓\"}".as_bytes(),
        ];
        for _ in 0..100_000 {
            agree(&generated(&mut rng));
        }
        for _ in 0..100_000 {
            let base = bases[rng.below(bases.len())];
            agree(&mutated(&mut rng, base));
        }
    }
}
