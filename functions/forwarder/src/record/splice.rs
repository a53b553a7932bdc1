//! The text path of the transform: removed fields are cut out of the record's text and redacted
//! values spliced into it, located by the byte scanner ([`super::scan`]); the rest of the text
//! stays as it came. Every function answers `None` when the text path cannot be sure, and the
//! caller then takes the `serde_json::Value` path.

use authtrail_core::redact::{HASH_PREFIX, MASK, RedactionMode, Redactor};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::scan;
use crate::filter::{FieldFilter, Pointer};

/// Redaction compiled for the text path: pointer tokens and the replacement (the HMAC state keyed
/// once, cloned per value, instead of keying a new HMAC per value).
#[derive(Clone)]
pub(super) struct TextRedaction {
    pointers: Vec<Vec<String>>,
    /// The mask as a JSON string literal.
    mask: String,
    /// `Some` in hash mode.
    hash: Option<Box<Hmac<Sha256>>>,
}

impl std::fmt::Debug for TextRedaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the HMAC state (it is derived from the key).
        f.debug_struct("TextRedaction")
            .field("fields", &self.pointers.len())
            .finish_non_exhaustive()
    }
}

impl TextRedaction {
    /// `r` compiled, or `None` when it cannot be (the `Value` path is used then).
    pub(super) fn compile(r: &Redactor) -> Option<Self> {
        let pointers = r
            .fields()
            .iter()
            .map(|f| Pointer::parse(f).map(|p| p.tokens().to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .ok()?;
        let hash = match r.mode() {
            RedactionMode::Mask => None,
            RedactionMode::Hash(key) => Some(Box::new(
                Hmac::<Sha256>::new_from_slice(key.expose().as_bytes()).ok()?,
            )),
        };
        Some(Self {
            pointers,
            mask: serde_json::to_string(MASK).ok()?,
            hash,
        })
    }

    /// What replaces the value `text` (a valid JSON value, not `null`), as
    /// [`Redactor::apply`] would write it.
    fn replacement(&self, text: &str) -> Option<Edit> {
        let Some(mac) = &self.hash else {
            return Some(Edit::Mask);
        };
        let mut mac = (**mac).clone();
        if text.starts_with('"') {
            match text.get(1..text.len() - 1) {
                Some(inner) if !inner.contains('\\') => mac.update(inner.as_bytes()),
                _ => mac.update(serde_json::from_str::<String>(text).ok()?.as_bytes()),
            }
        } else {
            mac.update(
                serde_json::from_str::<Value>(text)
                    .ok()?
                    .to_string()
                    .as_bytes(),
            );
        }
        let digest = mac.finalize().into_bytes();
        let mut hex_digits = [0u8; 64];
        hex::encode_to_slice(digest, &mut hex_digits).ok()?;
        Some(Edit::Hash(hex_digits))
    }
}

/// Buffers of the text path, kept per thread between records.
#[derive(Default)]
struct Scratch {
    locator: scan::LocatorStorage,
    /// Removed entries: (container, index).
    removed: Vec<(usize, usize)>,
    /// Cuts, then redactions: (start, end, replacement).
    edits: Vec<(usize, usize, Edit)>,
}

thread_local! {
    static SCRATCH: std::cell::Cell<Scratch> = std::cell::Cell::new(Scratch::default());
}

/// What replaces a span of the text.
#[derive(Clone, Copy)]
pub(super) enum Edit {
    /// Removed.
    Cut,
    /// The mask.
    Mask,
    /// The hex digits of a keyed pseudonym.
    Hash([u8; 64]),
}

/// The text path of a transform of `filter` and `redaction` on `raw` (one line, a JSON
/// object); `None` means "use the `Value` path". The buffers are kept per thread.
pub(super) fn splice(
    filter: &FieldFilter,
    raw: &str,
    redaction: Option<&TextRedaction>,
) -> Option<String> {
    SCRATCH.with(|cell| {
        let mut scratch = cell.take();
        let mut loc = scan::Locator::with_storage(raw, std::mem::take(&mut scratch.locator));
        let out = splice_in(filter, raw, redaction, &mut loc, &mut scratch);
        scratch.locator = loc.into_storage();
        cell.set(scratch);
        out
    })
}

fn splice_in(
    filter: &FieldFilter,
    raw: &str,
    redaction: Option<&TextRedaction>,
    loc: &mut scan::Locator<'_>,
    scratch: &mut Scratch,
) -> Option<String> {
    cuts(filter, loc, scratch)?;
    let cuts = scratch.edits.len();
    if let Some(red) = redaction {
        redactions(red, raw, loc, &mut scratch.edits, cuts)?;
    }
    write_edits(raw, redaction, &mut scratch.edits)
}

/// The spans `excludeIf` removes, into `scratch.edits` (adjacent members of one container
/// merged into one cut, with the comma that separated them from the rest).
fn cuts(filter: &FieldFilter, loc: &mut scan::Locator<'_>, scratch: &mut Scratch) -> Option<()> {
    // Removals, by the container holding them.
    let removed = &mut scratch.removed;
    removed.clear();
    for p in filter.exclude() {
        let Some(l) = loc.locate(p.tokens()).ok()? else {
            continue;
        };
        if l.parent_is_array {
            return None; // later indices would shift
        }
        removed.push((l.parent, l.index));
    }
    removed.sort_unstable();
    removed.dedup();
    let edits = &mut scratch.edits;
    edits.clear();
    let mut k = 0;
    while k < removed.len() {
        let (parent, i) = *removed.get(k)?;
        let mut j = i;
        while removed.get(k + 1) == Some(&(parent, j + 1)) {
            k += 1;
            j += 1;
        }
        k += 1;
        let (n, _) = loc.entry(parent, 0).ok()?;
        let at = |loc: &mut scan::Locator<'_>, x: usize| loc.entry(parent, x).ok()?.1;
        let cut = if j + 1 < n {
            (at(loc, i)?.start, at(loc, j + 1)?.start)
        } else if i > 0 {
            (at(loc, i - 1)?.end, at(loc, j)?.end)
        } else {
            (at(loc, 0)?.start, at(loc, j)?.end)
        };
        edits.push((cut.0, cut.1, Edit::Cut));
    }
    Some(())
}

/// The redactions, on what the filter left (`edits[..cuts]` are the filter's cuts).
fn redactions(
    red: &TextRedaction,
    raw: &str,
    loc: &mut scan::Locator<'_>,
    edits: &mut Vec<(usize, usize, Edit)>,
    cuts: usize,
) -> Option<()> {
    for tokens in &red.pointers {
        let Some(l) = loc.locate(tokens).ok()? else {
            continue;
        };
        let (s, e) = (l.entry.value_start, l.entry.end);
        let (removals, redactions) = edits.split_at(cuts);
        if removals.iter().any(|&(a, b, _)| a <= s && e <= b) {
            continue; // removed by the filter first
        }
        if removals.iter().any(|&(a, b, _)| s <= a && b <= e) {
            return None; // the redacted value is itself filtered
        }
        if redactions.iter().any(|&(a, b, _)| s < b && a < e) {
            return None; // overlapping redactions apply in order: use the DOM
        }
        let text = raw.get(s..e)?;
        if text == "null" {
            continue;
        }
        edits.push((s, e, red.replacement(text)?));
    }
    Some(())
}

/// `raw` with the edits applied.
fn write_edits(
    raw: &str,
    redaction: Option<&TextRedaction>,
    edits: &mut [(usize, usize, Edit)],
) -> Option<String> {
    // Cuts inside other cuts (a field and its parent both excluded) are dropped.
    edits.sort_unstable_by(|x, y| x.0.cmp(&y.0).then(y.1.cmp(&x.1)));
    let mut out = String::with_capacity(raw.len() + 80 * edits.len());
    let mut pos = 0usize;
    for &(s, e, rep) in edits.iter() {
        if s < pos {
            if e <= pos {
                continue;
            }
            return None;
        }
        out.push_str(raw.get(pos..s)?);
        match rep {
            Edit::Cut => {}
            Edit::Mask => out.push_str(redaction.map(|r| r.mask.as_str())?),
            Edit::Hash(hex_digits) => {
                out.push('"');
                out.push_str(HASH_PREFIX);
                out.push_str(std::str::from_utf8(&hex_digits).ok()?);
                out.push('"');
            }
        }
        pos = e;
    }
    out.push_str(raw.get(pos..)?);
    Some(out)
}
