//! Byte-level navigation of JSON text that is already known to be valid (the record parse in
//! [`crate::record`] validated it): finds the spans of the values and members that JSON pointers
//! address, so the transform can splice redacted values into the original text and cut removed
//! fields out of it instead of building and re-serializing a `serde_json::Value`.
//!
//! Every function answers `Err(Unsupported)` on anything it does not handle with certainty
//! (duplicate keys on the path, text that is not what it expects): callers then fall back to
//! the full `serde_json::Value` path, which defines the behaviour.

/// The scanner cannot answer with certainty; use the `serde_json::Value` path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsupported;

/// One member of an object (`start` is its key's opening quote) or element of an array
/// (`start == value_start`); `end` is one past the value's last byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub start: usize,
    pub value_start: usize,
    pub end: usize,
}

/// Where a pointer leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// Offset of the `{` / `[` of the container holding the value.
    pub parent: usize,
    pub parent_is_array: bool,
    /// Position of the value among the container's entries.
    pub index: usize,
    pub entry: Entry,
}

fn byte(b: &[u8], i: usize) -> Result<u8, Unsupported> {
    b.get(i).copied().ok_or(Unsupported)
}

fn ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// `i` at a `"`: the index one past the closing quote.
fn skip_string(b: &[u8], mut i: usize) -> Result<usize, Unsupported> {
    i += 1;
    loop {
        // Jump to the next quote or backslash (SIMD) instead of walking every byte.
        let rest = b.get(i..).ok_or(Unsupported)?;
        i += memchr::memchr2(b'"', b'\\', rest).ok_or(Unsupported)?;
        match byte(b, i)? {
            b'"' => return Ok(i + 1),
            _ => i += 2,
        }
    }
}

/// `i` at the first byte of a value: the index one past its last byte.
pub fn skip_value(b: &[u8], i: usize) -> Result<usize, Unsupported> {
    match byte(b, i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match byte(b, j)? {
                    b'"' => {
                        j = skip_string(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.checked_sub(1).ok_or(Unsupported)?;
                        if depth == 0 {
                            return Ok(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while let Some(c) = b.get(j) {
                if matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    break;
                }
                j += 1;
            }
            if j == i { Err(Unsupported) } else { Ok(j) }
        }
    }
}

/// Whether the JSON string at `text[start..end]` (quotes included) equals `token`.
fn key_is(text: &str, start: usize, end: usize, token: &str) -> Result<bool, Unsupported> {
    let inner = text.get(start + 1..end - 1).ok_or(Unsupported)?;
    if !inner.contains('\\') {
        return Ok(inner == token);
    }
    let decoded: String =
        serde_json::from_str(text.get(start..end).ok_or(Unsupported)?).map_err(|_| Unsupported)?;
    Ok(decoded == token)
}

/// What [`walk`] saw: whether the container is an array, and the entry a token named.
type Walked = (bool, Option<(usize, Entry)>);

/// The entries of the container at `at` (a `{` or `[`); `None` when the value is a scalar.
/// With `token`, stops collecting nothing but reports the entry named `token` (the array index
/// it parses to for arrays), refusing duplicate keys.
fn walk(
    text: &str,
    at: usize,
    token: Option<&str>,
    table: Option<&mut Vec<Entry>>,
) -> Result<Option<Walked>, Unsupported> {
    let b = text.as_bytes();
    let is_array = match byte(b, at)? {
        b'{' => false,
        b'[' => true,
        _ => return Ok(None),
    };
    let want_index = match (is_array, token) {
        (true, Some(t)) => t.parse::<usize>().ok(),
        _ => None,
    };
    let mut table = table;
    let mut found: Option<(usize, Entry)> = None;
    let mut i = ws(b, at + 1);
    let close = if is_array { b']' } else { b'}' };
    if byte(b, i)? == close {
        return Ok(Some((is_array, None)));
    }
    let mut index = 0usize;
    loop {
        let start = i;
        let value_start = if is_array {
            start
        } else {
            if byte(b, i)? != b'"' {
                return Err(Unsupported);
            }
            let key_end = skip_string(b, i)?;
            let colon = ws(b, key_end);
            if byte(b, colon)? != b':' {
                return Err(Unsupported);
            }
            let vs = ws(b, colon + 1);
            if let Some(t) = token
                && key_is(text, start, key_end, t)?
            {
                if found.is_some() {
                    return Err(Unsupported); // duplicate key: last-wins semantics, use the DOM
                }
                found = Some((
                    index,
                    Entry {
                        start,
                        value_start: vs,
                        end: 0,
                    },
                ));
            }
            vs
        };
        let end = skip_value(b, value_start)?;
        let entry = Entry {
            start,
            value_start,
            end,
        };
        if let Some(f) = found.as_mut()
            && f.0 == index
        {
            f.1.end = end;
        }
        if is_array && want_index == Some(index) {
            found = Some((index, entry));
        }
        if let Some(t) = table.as_deref_mut() {
            t.push(entry);
        }
        index += 1;
        i = ws(b, end);
        match byte(b, i)? {
            b',' => i = ws(b, i + 1),
            c if c == close => return Ok(Some((is_array, found))),
            _ => return Err(Unsupported),
        }
    }
}

/// Follows `tokens` from the value at `at`. `Ok(None)`: the pointer leads nowhere (absent key,
/// index out of range, a scalar on the way), as `serde_json::Value::pointer` would say.
pub fn locate(text: &str, at: usize, tokens: &[String]) -> Result<Option<Located>, Unsupported> {
    let mut cur = at;
    let mut last = None;
    for token in tokens {
        match walk(text, cur, Some(token), None)? {
            Some((is_array, Some((index, entry)))) => {
                last = Some(Located {
                    parent: cur,
                    parent_is_array: is_array,
                    index,
                    entry,
                });
                cur = entry.value_start;
            }
            _ => return Ok(None),
        }
    }
    Ok(last)
}

/// One container's table: its position and its rows in [`LocatorStorage::rows`].
#[derive(Debug, Clone, Copy)]
struct Table {
    at: usize,
    is_array: bool,
    first: usize,
    len: usize,
}

/// One row of a table: key span (objects; the value's start for arrays) and the entry.
type Row = (usize, usize, Entry);

/// The buffers of a [`Locator`], kept between records so that locating allocates nothing once
/// they have grown (see [`Locator::with_storage`]).
#[derive(Debug, Default)]
pub struct LocatorStorage {
    tables: Vec<Table>,
    rows: Vec<Row>,
}

/// [`locate`] for several pointers over the same text: each container on the way is scanned
/// once, however many pointers pass through it.
pub struct Locator<'t> {
    text: &'t str,
    root: usize,
    store: LocatorStorage,
}

impl<'t> Locator<'t> {
    pub fn new(text: &'t str) -> Self {
        Self::with_storage(text, LocatorStorage::default())
    }

    /// A locator over `text` that reuses `storage`'s buffers (emptied first).
    pub fn with_storage(text: &'t str, mut storage: LocatorStorage) -> Self {
        storage.tables.clear();
        storage.rows.clear();
        Self {
            text,
            root: first_value(text),
            store: storage,
        }
    }

    /// Gives the buffers back for the next record.
    pub fn into_storage(self) -> LocatorStorage {
        self.store
    }

    fn cached(&self, at: usize) -> Option<usize> {
        self.store.tables.iter().position(|t| t.at == at)
    }

    /// The table of the container at `text[at..end]`; `None` for a scalar. Built by
    /// serde_json's own scanner (member values borrowed as `RawValue`, whose position in the
    /// text gives their span), which skips strings and nested values faster than a byte loop.
    fn table(&mut self, at: usize, end: usize) -> Result<Option<Table>, Unsupported> {
        if let Some(k) = self.cached(at) {
            return self
                .store
                .tables
                .get(k)
                .copied()
                .map(Some)
                .ok_or(Unsupported);
        }
        let sub = self.text.get(at..end).ok_or(Unsupported)?;
        let mut de = serde_json::Deserializer::from_str(sub);
        let first = self.store.rows.len();
        let seed = TableSeed {
            base: self.text.as_ptr() as usize,
            len: self.text.len(),
            rows: &mut self.store.rows,
        };
        let parsed = serde::de::DeserializeSeed::deserialize(seed, &mut de);
        let is_array = match parsed {
            Ok(Some(is_array)) => is_array,
            Ok(None) => {
                self.store.rows.truncate(first);
                return Ok(None);
            }
            Err(_) => {
                self.store.rows.truncate(first);
                return Err(Unsupported);
            }
        };
        if de.end().is_err() {
            self.store.rows.truncate(first);
            return Err(Unsupported);
        }
        let t = Table {
            at,
            is_array,
            first,
            len: self.store.rows.len() - first,
        };
        self.store.tables.push(t);
        Ok(Some(t))
    }

    fn rows(&self, t: &Table) -> &[Row] {
        self.store
            .rows
            .get(t.first..t.first + t.len)
            .unwrap_or_default()
    }

    pub fn locate(&mut self, tokens: &[String]) -> Result<Option<Located>, Unsupported> {
        let mut cur = self.root;
        let mut cur_end = self.text.len();
        let mut last = None;
        for token in tokens {
            let Some(t) = self.table(cur, cur_end)? else {
                return Ok(None);
            };
            let rows = self.rows(&t);
            let found = if t.is_array {
                token
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| rows.get(i).map(|e| (i, e.2)))
            } else {
                let mut found = None;
                let want = token.as_bytes();
                let text = self.text.as_bytes();
                for (i, &(ks, ke, e)) in rows.iter().enumerate() {
                    // Table keys have no escapes (a table with an escaped key is refused), so
                    // the key's text between its quotes is the key.
                    if ke - ks == want.len() + 2 && text.get(ks + 1..ke - 1) == Some(want) {
                        if found.is_some() {
                            return Err(Unsupported); // duplicate key: use the DOM
                        }
                        found = Some((i, e));
                    }
                }
                found
            };
            let Some((index, entry)) = found else {
                return Ok(None);
            };
            last = Some(Located {
                parent: cur,
                parent_is_array: t.is_array,
                index,
                entry,
            });
            cur = entry.value_start;
            cur_end = entry.end;
        }
        Ok(last)
    }

    /// The number of entries of the container at `at` (0 for a scalar) and the entry at
    /// `index`; `at` must be the start of the root or of a value [`Locator::locate`] went
    /// through or returned.
    pub fn entry(
        &mut self,
        at: usize,
        index: usize,
    ) -> Result<(usize, Option<Entry>), Unsupported> {
        let t = match self.cached(at) {
            Some(k) => self.store.tables.get(k).copied(),
            None => {
                let end = if at == self.root {
                    self.text.len()
                } else {
                    scan_end(self.text, at)?
                };
                self.table(at, end)?
            }
        };
        Ok(match t {
            Some(t) => {
                let rows = self.rows(&t);
                (rows.len(), rows.get(index).map(|r| r.2))
            }
            None => (0, None),
        })
    }

    /// The entries of the container at `at` (empty for a scalar); `at` must be the start of
    /// the root or of a value [`Locator::locate`] went through or returned.
    pub fn entries(&mut self, at: usize) -> Result<Vec<Entry>, Unsupported> {
        let (n, _) = self.entry(at, 0)?;
        (0..n)
            .map(|i| self.entry(at, i)?.1.ok_or(Unsupported))
            .collect()
    }
}

/// The end of the value starting at `at`.
fn scan_end(text: &str, at: usize) -> Result<usize, Unsupported> {
    skip_value(text.as_bytes(), at)
}

/// Offset of a slice borrowed from the text that starts at address `base`.
fn offset_in(base: usize, len: usize, part: &str) -> Result<usize, Unsupported> {
    let off = (part.as_ptr() as usize)
        .checked_sub(base)
        .ok_or(Unsupported)?;
    if off + part.len() > len {
        return Err(Unsupported);
    }
    Ok(off)
}

/// Builds a container's table into `rows` (see [`Locator::table`]); answers whether the
/// container is an array, `None` for a scalar.
struct TableSeed<'r> {
    base: usize,
    len: usize,
    rows: &'r mut Vec<Row>,
}

/// A key borrowed from the text (`None` when it had escapes and had to be copied).
struct BorrowedKey<'de>(Option<&'de str>);

impl<'de> serde::Deserialize<'de> for BorrowedKey<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = BorrowedKey<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<BorrowedKey<'de>, E> {
                Ok(BorrowedKey(Some(s)))
            }
            fn visit_str<E>(self, _: &str) -> Result<BorrowedKey<'de>, E> {
                Ok(BorrowedKey(None))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for TableSeed<'_> {
    type Value = Option<bool>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        use serde::de::Error;
        use serde_json::value::RawValue;
        struct V<'r>(TableSeed<'r>);
        impl<'de> serde::de::Visitor<'de> for V<'_> {
            type Value = Option<bool>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let rows = self.0.rows;
                while let Some(BorrowedKey(key)) = map.next_key()? {
                    let key = key.ok_or_else(|| A::Error::custom("escaped key"))?;
                    let raw: &'de RawValue = map.next_value()?;
                    let k = offset_in(self.0.base, self.0.len, key)
                        .map_err(|_| A::Error::custom("offset"))?;
                    let v = offset_in(self.0.base, self.0.len, raw.get())
                        .map_err(|_| A::Error::custom("offset"))?;
                    let entry = Entry {
                        start: k - 1,
                        value_start: v,
                        end: v + raw.get().len(),
                    };
                    rows.push((k - 1, k + key.len() + 1, entry));
                }
                Ok(Some(false))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let rows = self.0.rows;
                while let Some(raw) = seq.next_element::<&'de RawValue>()? {
                    let v = offset_in(self.0.base, self.0.len, raw.get())
                        .map_err(|_| A::Error::custom("offset"))?;
                    let entry = Entry {
                        start: v,
                        value_start: v,
                        end: v + raw.get().len(),
                    };
                    rows.push((v, v, entry));
                }
                Ok(Some(true))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
        }
        d.deserialize_any(V(self))
    }
}

/// The entries of the container at `at` (empty for a scalar).
pub fn entries(text: &str, at: usize) -> Result<Vec<Entry>, Unsupported> {
    let mut table = Vec::new();
    walk(text, at, None, Some(&mut table))?;
    Ok(table)
}

/// The first non-whitespace byte offset of `text`.
pub fn first_value(text: &str) -> usize {
    ws(text.as_bytes(), 0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn toks(p: &str) -> Vec<String> {
        crate::filter::Pointer::parse(p).unwrap().tokens().to_vec()
    }

    fn at<'a>(text: &'a str, p: &str) -> Option<&'a str> {
        locate(text, first_value(text), &toks(p))
            .unwrap()
            .map(|l| &text[l.entry.value_start..l.entry.end])
    }

    #[test]
    fn locate_finds_values_through_objects_and_arrays_with_any_whitespace() {
        let t = r#" { "a" : { "b" : [ 1 , {"c":"x\"}y"} ] } , "d":true } "#;
        assert_eq!(at(t, "/a/b/1/c"), Some(r#""x\"}y""#));
        assert_eq!(at(t, "/a/b/0"), Some("1"));
        assert_eq!(at(t, "/d"), Some("true"));
        assert_eq!(at(t, "/a/b/2"), None);
        assert_eq!(at(t, "/d/x"), None);
        assert_eq!(at(t, "/nope"), None);
        // Escaped backslashes right before a closing quote, and escapes at the end of a string.
        let t = r#"{"k":"a\\","m":"\\\"q","n":"\"","o":{"p":"]}\\"},"z":1}"#;
        assert_eq!(at(t, "/m"), Some(r#""\\\"q""#));
        assert_eq!(at(t, "/n"), Some(r#""\"""#));
        assert_eq!(at(t, "/o/p"), Some(r#""]}\\""#));
        assert_eq!(at(t, "/z"), Some("1"));
        assert_eq!(skip_value(br#""unterminated\""#, 0), Err(Unsupported));
    }

    #[test]
    fn locate_matches_escaped_keys_and_pointer_escapes() {
        let t = r#"{"a/b":{"c~d":1},"\u0065":2}"#;
        assert_eq!(at(t, "/a~1b/c~0d"), Some("1"));
        assert_eq!(at(t, "/e"), Some("2"));
    }

    #[test]
    fn the_locator_gives_the_same_answers_as_locate() {
        let t = r#"{"e":{"a":1,"d":{"u":"x","c":[1,{"z":2}]}},"l":[3]}"#;
        let ptrs: Vec<Vec<String>> = [
            "/e/d/u",
            "/e/a",
            "/e/d/c/1/z",
            "/l/0",
            "/e/d/u",
            "/x",
            "/e/a/b",
        ]
        .iter()
        .map(|p| toks(p))
        .collect();
        let mut l = Locator::new(t);
        for p in &ptrs {
            assert_eq!(l.locate(p), locate(t, 0, p), "{p:?}");
        }
        assert_eq!(l.entries(5).unwrap(), entries(t, 5).unwrap());
        assert_eq!(l.entries(0).unwrap(), entries(t, 0).unwrap());
        let spaced = r#" { "a" : [ 1 , "x" ] , "b" : { } } "#;
        let mut l = Locator::new(spaced);
        let a = l.locate(&toks("/a")).unwrap().unwrap();
        assert_eq!(a, locate(spaced, 1, &toks("/a")).unwrap().unwrap());
        assert_eq!(
            l.entries(a.entry.value_start).unwrap(),
            entries(spaced, a.entry.value_start).unwrap()
        );
        assert_eq!(
            l.locate(&toks("/a/1")).unwrap(),
            locate(spaced, 1, &toks("/a/1")).unwrap()
        );
        let mut dup = Locator::new(r#"{"a":{"b":1,"b":2}}"#);
        assert_eq!(dup.locate(&toks("/a/b")), Err(Unsupported));
        assert!(dup.locate(&toks("/a")).unwrap().is_some());
    }

    #[test]
    fn duplicate_keys_on_the_path_are_unsupported() {
        let t = r#"{"a":1,"a":2}"#;
        assert_eq!(locate(t, 0, &toks("/a")), Err(Unsupported));
    }

    #[test]
    fn entries_list_members_with_their_spans() {
        let t = r#"{"a":1, "b" :[2]}"#;
        let e = entries(t, 0).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(&t[e[1].start..e[1].end], r#""b" :[2]"#);
        assert!(entries("[]", 0).unwrap().is_empty());
    }
}
