//! Elasticsearch / OpenSearch `_bulk`, checked strictly but kept lean: the request body is kept
//! once, as text, and every item refers into it. Action lines are read with typed visitors
//! instead of a `serde_json::Value`; sources are checked (a JSON object, by the same grammar and
//! limits as `Value`) without being built, and become `Value`s only when a test asks for them
//! ([`BulkRequest::source_value`]). The document store holds a reference to the request that
//! carried each document, and the answer is written straight into bytes.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Write as _;
use std::ops::Range;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Value, json};

use crate::formats::{Refusal, refuse};

/// The four `_bulk` actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkAction {
    Index,
    Create,
    Update,
    Delete,
}

impl BulkAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Index => "index",
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "index" => Some(Self::Index),
            "create" => Some(Self::Create),
            "update" => Some(Self::Update),
            "delete" => Some(Self::Delete),
            _ => None,
        }
    }
}

/// One item of a checked request. Its source (every action but `delete`) is a range of the
/// request's text.
#[derive(Debug, Clone)]
pub struct BulkItem {
    pub action: BulkAction,
    pub index: Arc<str>,
    pub id: Option<Arc<str>>,
    source: Option<Range<usize>>,
}

/// A checked `_bulk` request: the (decompressed) body, kept once, and its items in order.
#[derive(Debug)]
pub struct BulkRequest {
    text: String,
    items: Vec<BulkItem>,
}

impl BulkRequest {
    pub fn items(&self) -> &[BulkItem] {
        &self.items
    }

    /// The source line of item `i`, as received.
    pub fn source_text(&self, i: usize) -> Option<&str> {
        let range = self.items.get(i)?.source.clone()?;
        self.text.get(range)
    }

    /// The source of item `i` as a `Value`. It was checked against the same grammar when the
    /// request arrived, so only `delete` items (no source) give `None`.
    pub fn source_value(&self, i: usize) -> Option<Value> {
        serde_json::from_str(self.source_text(i)?).ok()
    }

    /// Item `i` as the receiver records it: `{"action","index","id","source"}`.
    pub fn item_value(&self, i: usize) -> Value {
        let Some(item) = self.items.get(i) else {
            return Value::Null;
        };
        json!({"action": item.action.as_str(), "index": &*item.index,
               "id": item.id.as_deref(), "source": self.source_value(i)})
    }

    /// Every item as [`BulkRequest::item_value`] writes it.
    pub fn item_values(&self) -> Vec<Value> {
        (0..self.items.len()).map(|i| self.item_value(i)).collect()
    }
}

fn es_error(status: u16, kind: &str, reason: &str) -> Refusal {
    refuse(
        status,
        json!({"error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason}, "status": status}),
        reason,
    )
}

fn malformed() -> Refusal {
    es_error(
        400,
        "illegal_argument_exception",
        "Malformed action/metadata line",
    )
}

/// Elasticsearch / OpenSearch `_bulk`: `Content-Type: application/x-ndjson`, newline-terminated
/// NDJSON of action lines (`index`, `create`, `update`, `delete`; exactly one per line, with an
/// object of metadata) each followed by its source, a JSON object (except after `delete`);
/// `_index` from the action or the URL.
pub fn parse_bulk(
    content_type: Option<&str>,
    url_index: Option<&str>,
    body: Vec<u8>,
) -> Result<BulkRequest, Refusal> {
    if !content_type.is_some_and(|c| c.starts_with("application/x-ndjson")) {
        return Err(es_error(
            406,
            "media_type_header_exception",
            "Content-Type must be application/x-ndjson for _bulk",
        ));
    }
    if body.is_empty() {
        return Err(es_error(
            400,
            "action_request_validation_exception",
            "Validation Failed: 1: no requests added;",
        ));
    }
    if body.last() != Some(&b'\n') {
        return Err(es_error(
            400,
            "illegal_argument_exception",
            "The bulk request must be terminated by a newline [\\n]",
        ));
    }
    let text = String::from_utf8(body)
        .map_err(|_| es_error(400, "parse_exception", "body is not UTF-8"))?;
    let url_index: Option<Arc<str>> = url_index.map(Arc::from);
    let mut last_index: Option<Arc<str>> = None;
    let mut items = Vec::new();
    let mut lines = lines_with_offsets(&text).filter(|(_, l)| !l.trim().is_empty());
    while let Some((_, line)) = lines.next() {
        let (action, meta) = match serde_json::from_str::<ActionLine>(line) {
            Err(e) => {
                return Err(es_error(
                    400,
                    "x_content_parse_exception",
                    &format!("action line: {e}"),
                ));
            }
            Ok(ActionLine::Malformed) => return Err(malformed()),
            Ok(ActionLine::Unknown(name)) => {
                return Err(es_error(
                    400,
                    "illegal_argument_exception",
                    &format!("Unknown action [{name}]"),
                ));
            }
            Ok(ActionLine::MetaNotObject) => {
                return Err(es_error(
                    400,
                    "illegal_argument_exception",
                    "action metadata must be an object",
                ));
            }
            Ok(ActionLine::Action(action, meta)) => (action, meta),
        };
        let index = match meta.index {
            Some(name) => match &last_index {
                // Consecutive items almost always name the same index: share one copy.
                Some(last) if **last == *name => last.clone(),
                _ => {
                    let fresh: Arc<str> = Arc::from(name.as_ref());
                    last_index = Some(fresh.clone());
                    fresh
                }
            },
            None => url_index.clone().ok_or_else(|| {
                es_error(
                    400,
                    "action_request_validation_exception",
                    "Validation Failed: 1: index is missing;",
                )
            })?,
        };
        let id = meta.id.map(|id| Arc::from(id.as_ref()));
        let source = if action == BulkAction::Delete {
            None
        } else {
            let (offset, src) = lines.next().ok_or_else(|| {
                es_error(
                    400,
                    "illegal_argument_exception",
                    "action without a source line",
                )
            })?;
            match serde_json::from_str::<Shape>(src) {
                Err(e) => {
                    return Err(es_error(
                        400,
                        "x_content_parse_exception",
                        &format!("source line: {e}"),
                    ));
                }
                Ok(Shape::Other) => {
                    return Err(es_error(
                        400,
                        "mapper_parsing_exception",
                        "source must be a JSON object",
                    ));
                }
                Ok(Shape::Object) => Some(offset..offset + src.len()),
            }
        };
        items.push(BulkItem {
            action,
            index,
            id,
            source,
        });
    }
    drop(lines);
    Ok(BulkRequest { text, items })
}

/// `text.split('\n')` with each line's byte offset.
fn lines_with_offsets(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut offset = 0;
    text.split('\n').map(move |line| {
        let at = offset;
        offset += line.len() + 1;
        (at, line)
    })
}

/// What happened to one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemOutcome {
    /// Refused by the `reject_bulk_items_containing` rule, with its status.
    Rejected(u16),
    Created,
    Updated,
    Deleted,
    NotFound,
    /// `create` of an id that exists: 409.
    Conflict,
}

impl ItemOutcome {
    pub fn status(self) -> u16 {
        match self {
            Self::Rejected(s) => s,
            Self::Created => 201,
            Self::Updated | Self::Deleted => 200,
            Self::NotFound => 404,
            Self::Conflict => 409,
        }
    }

    fn is_error(self) -> bool {
        matches!(self, Self::Rejected(_) | Self::Conflict)
    }
}

/// The outcome of every item of one request, in request order, ready to be written as ES's
/// answer.
#[derive(Debug)]
pub struct BulkAnswer {
    request: Arc<BulkRequest>,
    outcomes: Vec<(ItemOutcome, Option<u64>)>,
}

impl BulkAnswer {
    /// Whether any item failed (ES's `errors` flag).
    pub fn errors(&self) -> bool {
        self.outcomes.iter().any(|(o, _)| o.is_error())
    }

    pub fn outcomes(&self) -> impl Iterator<Item = ItemOutcome> + '_ {
        self.outcomes.iter().map(|(o, _)| *o)
    }

    /// ES's answer document: `{"took","errors","items":[{"<action>": {...}}, ...]}`.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.outcomes.len() * 110);
        out.extend_from_slice(b"{\"took\":1,\"errors\":");
        out.extend_from_slice(if self.errors() { b"true" } else { b"false" });
        out.extend_from_slice(b",\"items\":[");
        for (n, (item, (outcome, auto_id))) in
            self.request.items.iter().zip(&self.outcomes).enumerate()
        {
            if n > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"");
            out.extend_from_slice(item.action.as_str().as_bytes());
            out.extend_from_slice(b"\":{\"_index\":");
            push_json_str(&mut out, &item.index);
            out.extend_from_slice(b",\"_id\":");
            match (auto_id, &item.id) {
                (Some(auto), _) => push_json_str(&mut out, &auto_id_text(*auto)),
                (None, Some(id)) => push_json_str(&mut out, id),
                (None, None) => push_json_str(&mut out, ""),
            }
            let status = outcome.status();
            let rest = match outcome {
                ItemOutcome::Created => ",\"_version\":1,\"result\":\"created\"",
                ItemOutcome::Updated => ",\"_version\":2,\"result\":\"updated\"",
                ItemOutcome::Deleted => ",\"result\":\"deleted\"",
                ItemOutcome::NotFound => ",\"result\":\"not_found\"",
                ItemOutcome::Rejected(_) | ItemOutcome::Conflict => "",
            };
            out.extend_from_slice(rest.as_bytes());
            let _ = write!(out, ",\"status\":{status}");
            let error = match outcome {
                ItemOutcome::Rejected(429) => Some((
                    "es_rejected_execution_exception",
                    "rejected by the test receiver",
                )),
                ItemOutcome::Rejected(_) => {
                    Some(("mapper_parsing_exception", "rejected by the test receiver"))
                }
                ItemOutcome::Conflict => Some((
                    "version_conflict_engine_exception",
                    "document already exists",
                )),
                _ => None,
            };
            if let Some((kind, reason)) = error {
                out.extend_from_slice(b",\"error\":{\"type\":");
                push_json_str(&mut out, kind);
                out.extend_from_slice(b",\"reason\":");
                push_json_str(&mut out, reason);
                out.push(b'}');
            }
            out.extend_from_slice(b"}}");
        }
        out.extend_from_slice(b"]}");
        out
    }
}

fn auto_id_text(n: u64) -> String {
    format!("auto-{n}")
}

fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Where a stored document's source lives.
#[derive(Debug, Clone)]
struct DocRef {
    request: Arc<BulkRequest>,
    item: usize,
}

/// The Elasticsearch document store: (index, id) to the item that last wrote it.
#[derive(Debug, Default)]
pub struct DocStore {
    docs: HashMap<(Arc<str>, Arc<str>), DocRef>,
    next_id: u64,
}

impl DocStore {
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// Every stored document as a `Value`, by (index, id).
    pub fn documents(&self) -> BTreeMap<(String, String), Value> {
        self.docs
            .iter()
            .map(|((index, id), d)| {
                (
                    (index.to_string(), id.to_string()),
                    d.request.source_value(d.item).unwrap_or(Value::Null),
                )
            })
            .collect()
    }

    /// Applies a request's items in order. `reject` makes items whose source (as compact JSON)
    /// contains the given text fail with the given status (item-level errors); they change
    /// nothing. `index` writes or overwrites, `create` of an existing id is a 409 conflict,
    /// `update` writes its body, `delete` removes.
    pub fn apply(
        &mut self,
        request: &Arc<BulkRequest>,
        reject: Option<&(String, u16)>,
    ) -> BulkAnswer {
        let mut outcomes = Vec::with_capacity(request.items.len());
        for (i, item) in request.items.iter().enumerate() {
            let (id, auto_id) = match &item.id {
                Some(id) => (id.clone(), None),
                None => {
                    self.next_id += 1;
                    (Arc::from(auto_id_text(self.next_id)), Some(self.next_id))
                }
            };
            let rejected = reject.and_then(|(needle, status)| {
                request
                    .source_value(i)
                    .is_some_and(|s| s.to_string().contains(needle.as_str()))
                    .then_some(*status)
            });
            let outcome = if let Some(status) = rejected {
                ItemOutcome::Rejected(status)
            } else {
                let key = (item.index.clone(), id);
                let doc = DocRef {
                    request: request.clone(),
                    item: i,
                };
                match (item.action, self.docs.entry(key)) {
                    (BulkAction::Delete, Entry::Occupied(e)) => {
                        e.remove();
                        ItemOutcome::Deleted
                    }
                    (BulkAction::Delete, Entry::Vacant(_)) => ItemOutcome::NotFound,
                    (BulkAction::Create, Entry::Occupied(_)) => ItemOutcome::Conflict,
                    (_, Entry::Occupied(mut e)) => {
                        e.insert(doc);
                        ItemOutcome::Updated
                    }
                    (_, Entry::Vacant(e)) => {
                        e.insert(doc);
                        ItemOutcome::Created
                    }
                }
            };
            outcomes.push((outcome, auto_id));
        }
        BulkAnswer {
            request: request.clone(),
            outcomes,
        }
    }
}

// ---- Typed reading of action lines and sources ----

/// Accepts exactly the JSON a `serde_json::Value` accepts (the same parser paths: recursion
/// limit, number ranges, string escapes) and builds nothing.
struct Valid;

impl<'de> Deserialize<'de> for Valid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValidVisitor)
    }
}

struct ValidVisitor;

impl<'de> Visitor<'de> for ValidVisitor {
    type Value = Valid;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_str<E>(self, _: &str) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_unit<E>(self) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_none<E>(self) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Valid, A::Error> {
        while seq.next_element::<Valid>()?.is_some() {}
        Ok(Valid)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Valid, A::Error> {
        while map.next_entry::<Valid, Valid>()?.is_some() {}
        Ok(Valid)
    }
}

/// Whether a (valid) JSON value is an object.
enum Shape {
    Object,
    Other,
}

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Shape;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Shape, E> {
                Ok(Shape::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Shape, E> {
                Ok(Shape::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Shape, E> {
                Ok(Shape::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Shape, E> {
                Ok(Shape::Other)
            }
            fn visit_str<E>(self, _: &str) -> Result<Shape, E> {
                Ok(Shape::Other)
            }
            fn visit_unit<E>(self) -> Result<Shape, E> {
                Ok(Shape::Other)
            }
            fn visit_none<E>(self) -> Result<Shape, E> {
                Ok(Shape::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Shape, A::Error> {
                ValidVisitor.visit_seq(seq).map(|_| Shape::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Shape, A::Error> {
                ValidVisitor.visit_map(map).map(|_| Shape::Object)
            }
        }
        d.deserialize_any(V)
    }
}

/// A string borrowed from the input when it has no escapes.
struct Text<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

/// A value kept when it is a string (as `Value::as_str` reads metadata), else checked and
/// dropped.
struct MaybeText<'de>(Option<Cow<'de, str>>);

impl<'de> Deserialize<'de> for MaybeText<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MaybeText<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<MaybeText<'de>, E> {
                Ok(MaybeText(Some(Cow::Borrowed(s))))
            }
            fn visit_str<E>(self, s: &str) -> Result<MaybeText<'de>, E> {
                Ok(MaybeText(Some(Cow::Owned(s.to_string()))))
            }
            fn visit_bool<E>(self, _: bool) -> Result<MaybeText<'de>, E> {
                Ok(MaybeText(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<MaybeText<'de>, E> {
                Ok(MaybeText(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<MaybeText<'de>, E> {
                Ok(MaybeText(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<MaybeText<'de>, E> {
                Ok(MaybeText(None))
            }
            fn visit_unit<E>(self) -> Result<MaybeText<'de>, E> {
                Ok(MaybeText(None))
            }
            fn visit_none<E>(self) -> Result<MaybeText<'de>, E> {
                Ok(MaybeText(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<MaybeText<'de>, A::Error> {
                ValidVisitor.visit_seq(seq).map(|_| MaybeText(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MaybeText<'de>, A::Error> {
                ValidVisitor.visit_map(map).map(|_| MaybeText(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// An action's metadata: `_index` and `_id` when they are strings (the last one wins, as in a
/// `Value` object); other keys are checked and ignored.
#[derive(Default)]
struct Meta<'de> {
    index: Option<Cow<'de, str>>,
    id: Option<Cow<'de, str>>,
}

/// The metadata position of an action line: an object or something else.
enum MetaShape<'de> {
    Object(Meta<'de>),
    Other,
}

impl<'de> Deserialize<'de> for MetaShape<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MetaShape<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MetaShape<'de>, A::Error> {
                let mut meta = Meta::default();
                while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
                    match key.as_ref() {
                        "_index" => meta.index = map.next_value::<MaybeText<'de>>()?.0,
                        "_id" => meta.id = map.next_value::<MaybeText<'de>>()?.0,
                        _ => {
                            map.next_value::<Valid>()?;
                        }
                    }
                }
                Ok(MetaShape::Object(meta))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<MetaShape<'de>, A::Error> {
                ValidVisitor.visit_seq(seq).map(|_| MetaShape::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<MetaShape<'de>, E> {
                Ok(MetaShape::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<MetaShape<'de>, E> {
                Ok(MetaShape::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<MetaShape<'de>, E> {
                Ok(MetaShape::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<MetaShape<'de>, E> {
                Ok(MetaShape::Other)
            }
            fn visit_str<E>(self, _: &str) -> Result<MetaShape<'de>, E> {
                Ok(MetaShape::Other)
            }
            fn visit_unit<E>(self) -> Result<MetaShape<'de>, E> {
                Ok(MetaShape::Other)
            }
            fn visit_none<E>(self) -> Result<MetaShape<'de>, E> {
                Ok(MetaShape::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// An action line, read in one pass. JSON syntax errors come out as `Err` (checked first, as
/// when the line was parsed whole); shape errors as variants, in the order the checks run:
/// exactly one key, a known action, an object of metadata.
enum ActionLine<'de> {
    Action(BulkAction, Meta<'de>),
    Malformed,
    Unknown(String),
    MetaNotObject,
}

impl<'de> Deserialize<'de> for ActionLine<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ActionLine<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an action line")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ActionLine<'de>, A::Error> {
                let Some(Text(name)) = map.next_key::<Text<'de>>()? else {
                    return Ok(ActionLine::Malformed);
                };
                let first = match BulkAction::from_name(&name) {
                    Some(action) => match map.next_value::<MetaShape<'de>>()? {
                        MetaShape::Object(meta) => ActionLine::Action(action, meta),
                        MetaShape::Other => ActionLine::MetaNotObject,
                    },
                    None => {
                        map.next_value::<Valid>()?;
                        ActionLine::Unknown(name.into_owned())
                    }
                };
                let mut more = false;
                while map.next_entry::<Valid, Valid>()?.is_some() {
                    more = true;
                }
                Ok(if more { ActionLine::Malformed } else { first })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<ActionLine<'de>, A::Error> {
                ValidVisitor.visit_seq(seq).map(|_| ActionLine::Malformed)
            }
            fn visit_bool<E>(self, _: bool) -> Result<ActionLine<'de>, E> {
                Ok(ActionLine::Malformed)
            }
            fn visit_i64<E>(self, _: i64) -> Result<ActionLine<'de>, E> {
                Ok(ActionLine::Malformed)
            }
            fn visit_u64<E>(self, _: u64) -> Result<ActionLine<'de>, E> {
                Ok(ActionLine::Malformed)
            }
            fn visit_f64<E>(self, _: f64) -> Result<ActionLine<'de>, E> {
                Ok(ActionLine::Malformed)
            }
            fn visit_str<E>(self, _: &str) -> Result<ActionLine<'de>, E> {
                Ok(ActionLine::Malformed)
            }
            fn visit_unit<E>(self) -> Result<ActionLine<'de>, E> {
                Ok(ActionLine::Malformed)
            }
            fn visit_none<E>(self) -> Result<ActionLine<'de>, E> {
                Ok(ActionLine::Malformed)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const NDJSON: Option<&str> = Some("application/x-ndjson");

    fn parse(url_index: Option<&str>, body: &str) -> Result<BulkRequest, Refusal> {
        parse_bulk(NDJSON, url_index, body.as_bytes().to_vec())
    }

    fn apply(store: &mut DocStore, body: &str, reject: Option<&(String, u16)>) -> Value {
        let request = Arc::new(parse(None, body).unwrap());
        serde_json::from_slice(&store.apply(&request, reject).to_json()).unwrap()
    }

    fn refusal(body: &str) -> (u16, String, String) {
        let r = parse(Some("u"), body).unwrap_err();
        let kind = r.body["error"]["type"].as_str().unwrap().to_string();
        assert_eq!(r.body["status"], r.status, "ES's error document");
        (r.status, kind, r.reason)
    }

    #[test]
    fn bulk_requires_ndjson_pairs_and_a_final_newline() {
        let body = "{\"index\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"x\":1}\n{\"delete\":{\"_id\":\"2\"}}\n";
        let request = parse(Some("b"), body).unwrap();
        let items = request.items();
        assert_eq!(items.len(), 2);
        assert_eq!(
            (items[1].action, &*items[1].index),
            (BulkAction::Delete, "b")
        );
        let e = parse_bulk(Some("application/json"), None, body.as_bytes().to_vec()).unwrap_err();
        assert_eq!(e.status, 406);
        assert_eq!(
            parse_bulk(None, None, body.as_bytes().to_vec())
                .unwrap_err()
                .status,
            406
        );
        let e = parse(None, body.trim_end()).unwrap_err();
        assert!(e.reason.contains("newline") && e.status == 400);
        assert!(
            parse(None, "")
                .unwrap_err()
                .reason
                .contains("no requests added")
        );
        let e =
            parse_bulk(NDJSON, None, b"{\"index\":{}}\n{\"x\":\"\xff\"}\n".to_vec()).unwrap_err();
        assert_eq!((e.status, e.reason.as_str()), (400, "body is not UTF-8"));
        let (status, _, reason) = refusal("{\"index\":{}}\n");
        assert_eq!(
            (status, reason.as_str()),
            (400, "action without a source line")
        );
        // Blank lines between items are skipped, as ES does.
        assert_eq!(
            parse(Some("b"), "\n{\"index\":{}}\n  \n{\"x\":1}\n\n")
                .unwrap()
                .items()
                .len(),
            1
        );
    }

    #[test]
    fn bulk_index_comes_from_the_action_line_or_else_the_url_and_must_be_somewhere() {
        let r = parse(
            Some("url"),
            "{\"index\":{\"_index\":\"act\"}}\n{}\n{\"index\":{}}\n{}\n{\"index\":{\"_index\":7}}\n{}\n",
        )
        .unwrap();
        let names: Vec<&str> = r.items().iter().map(|i| &*i.index).collect();
        assert_eq!(
            names,
            ["act", "url", "url"],
            "a non-string _index is not an index name"
        );
        let e = parse(None, "{\"index\":{}}\n{\"x\":1}\n").unwrap_err();
        assert!(e.reason.contains("index is missing"));
        assert_eq!(
            e.body["error"]["type"],
            "action_request_validation_exception"
        );
        let e = parse(
            None,
            "{\"index\":{\"_index\":\"a\"}}\n{}\n{\"create\":{\"_id\":\"x\"}}\n{}\n",
        )
        .unwrap_err();
        assert!(e.reason.contains("index is missing"), "checked per item");
    }

    #[test]
    fn bulk_action_lines_need_exactly_one_known_action_with_an_object_of_metadata() {
        for line in [
            "{}",
            "{\"index\":{},\"create\":{}}",
            "{\"index\":{},\"index\":{}}",
            "[1]",
            "\"index\"",
            "3",
            "null",
        ] {
            let (status, kind, reason) = refusal(&format!("{line}\n{{}}\n"));
            assert_eq!(
                (status, kind.as_str(), reason.as_str()),
                (
                    400,
                    "illegal_argument_exception",
                    "Malformed action/metadata line"
                ),
                "{line}"
            );
        }
        let (_, kind, reason) = refusal("{\"upsert\":{}}\n{}\n");
        assert_eq!(
            (kind.as_str(), reason.as_str()),
            ("illegal_argument_exception", "Unknown action [upsert]")
        );
        for meta in ["1", "\"a\"", "[]", "null"] {
            let (_, _, reason) = refusal(&format!("{{\"index\":{meta}}}\n{{}}\n"));
            assert_eq!(reason, "action metadata must be an object", "{meta}");
        }
        for line in ["{\"index\":{}", "{\"index\":{}} x", "nope"] {
            let (status, kind, reason) = refusal(&format!("{line}\n{{}}\n"));
            assert_eq!(
                (status, kind.as_str()),
                (400, "x_content_parse_exception"),
                "{line}"
            );
            assert!(reason.starts_with("action line: "), "{reason}");
        }
        // Each action is read, and other metadata keys are allowed.
        let r = parse(
            Some("u"),
            "{\"index\":{\"_id\":\"a\\\"b\",\"routing\":{\"x\":[1]}}}\n{}\n{\"create\":{}}\n{}\n{\"update\":{\"_id\":\"1\"}}\n{\"doc\":{}}\n{\"delete\":{\"_id\":\"1\"}}\n",
        )
        .unwrap();
        let actions: Vec<BulkAction> = r.items().iter().map(|i| i.action).collect();
        assert_eq!(
            actions,
            [
                BulkAction::Index,
                BulkAction::Create,
                BulkAction::Update,
                BulkAction::Delete
            ]
        );
        assert_eq!(
            r.items()[0].id.as_deref(),
            Some("a\"b"),
            "escaped ids are decoded"
        );
        assert_eq!(r.items()[1].id, None);
    }

    #[test]
    fn bulk_sources_must_be_json_objects() {
        for src in ["[1]", "\"s\"", "1", "null", "true"] {
            let (status, kind, reason) = refusal(&format!("{{\"index\":{{}}}}\n{src}\n"));
            assert_eq!(
                (status, kind.as_str(), reason.as_str()),
                (
                    400,
                    "mapper_parsing_exception",
                    "source must be a JSON object"
                ),
                "{src}"
            );
        }
        for src in ["{\"a\":}", "{\"a\":1} {}", "{\"a\":\"\\q\"}", "{'a':1}"] {
            let (status, kind, reason) = refusal(&format!("{{\"index\":{{}}}}\n{src}\n"));
            assert_eq!(
                (status, kind.as_str()),
                (400, "x_content_parse_exception"),
                "{src}"
            );
            assert!(reason.starts_with("source line: "), "{reason}");
        }
    }

    #[test]
    fn bulk_sources_are_accepted_exactly_when_serde_json_value_accepts_them() {
        let deep = |n: usize| format!("{{\"a\":{}1{}}}", "[".repeat(n), "]".repeat(n));
        for (src, accepted) in [
            (deep(100), true),
            (deep(200), false),
            ("{\"n\":1e400}".to_string(), false),
            ("{\"n\":-0.0,\"m\":18446744073709551616}".to_string(), true),
            ("{\"s\":\"\\ud800\"}".to_string(), false),
            (
                "{\"s\":\"\\u00e9\\n\",\"a\":{\"b\":[null,true,{}]}}".to_string(),
                true,
            ),
            ("{\"a\":1,\"a\":2}".to_string(), true),
        ] {
            let by_value = serde_json::from_str::<Value>(&src).is_ok();
            let here = parse(Some("u"), &format!("{{\"index\":{{}}}}\n{src}\n")).is_ok();
            assert_eq!((here, by_value), (accepted, accepted), "{src}");
        }
    }

    #[test]
    fn bulk_index_with_the_same_id_overwrites_instead_of_duplicating() {
        let mut store = DocStore::default();
        let r1 = apply(
            &mut store,
            "{\"index\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"x\":1}\n",
            None,
        );
        let r2 = apply(
            &mut store,
            "{\"index\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"x\":2}\n",
            None,
        );
        assert_eq!(r1["items"][0]["index"]["status"], 201);
        assert_eq!(r2["items"][0]["index"]["result"], "updated");
        assert_eq!(r2["items"][0]["index"]["_version"], 2);
        assert_eq!(store.len(), 1);
        assert_eq!(
            store.documents()[&("a".into(), "1".into())],
            json!({"x": 2})
        );
    }

    #[test]
    fn bulk_create_of_an_existing_id_is_a_409_conflict_that_keeps_the_first_document() {
        let mut store = DocStore::default();
        let r = apply(
            &mut store,
            "{\"create\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"x\":1}\n{\"create\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"x\":2}\n",
            None,
        );
        assert_eq!(r["errors"], true);
        assert_eq!(r["items"][0]["create"]["status"], 201);
        assert_eq!(
            r["items"][1],
            json!({"create": {"_index": "a", "_id": "1", "status": 409,
                   "error": {"type": "version_conflict_engine_exception", "reason": "document already exists"}}})
        );
        assert_eq!(
            store.documents()[&("a".into(), "1".into())],
            json!({"x": 1})
        );
    }

    #[test]
    fn bulk_rejected_items_are_errors_with_their_status_and_store_nothing() {
        let mut store = DocStore::default();
        let rule = ("LOGIN_ERROR".to_string(), 400);
        let r = apply(
            &mut store,
            "{\"index\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"type\": \"LOGIN_ERROR\"}\n{\"index\":{\"_index\":\"a\",\"_id\":\"2\"}}\n{\"type\":\"LOGIN\"}\n",
            Some(&rule),
        );
        assert_eq!(r["errors"], true);
        assert_eq!(
            r["items"][0],
            json!({"index": {"_index": "a", "_id": "1", "status": 400,
                   "error": {"type": "mapper_parsing_exception", "reason": "rejected by the test receiver"}}})
        );
        assert_eq!(r["items"][1]["index"]["status"], 201);
        assert_eq!(
            store.documents().keys().cloned().collect::<Vec<_>>(),
            [("a".to_string(), "2".to_string())]
        );
        let busy = ("LOGIN".to_string(), 429);
        let r = apply(
            &mut store,
            "{\"index\":{\"_index\":\"a\",\"_id\":\"3\"}}\n{\"type\":\"LOGIN\"}\n",
            Some(&busy),
        );
        assert_eq!(r["items"][0]["index"]["status"], 429);
        assert_eq!(
            r["items"][0]["index"]["error"]["type"],
            "es_rejected_execution_exception"
        );
        // Without a rule, or when nothing matches, the answer has no errors.
        let r = apply(
            &mut store,
            "{\"index\":{\"_index\":\"a\",\"_id\":\"3\"}}\n{\"type\":\"LOGIN\"}\n",
            Some(&rule),
        );
        assert_eq!(r["errors"], false);
    }

    #[test]
    fn bulk_answer_is_the_document_es_gives_with_items_in_request_order() {
        let mut store = DocStore::default();
        apply(
            &mut store,
            "{\"index\":{\"_index\":\"a\",\"_id\":\"old\"}}\n{}\n",
            None,
        );
        let r = apply(
            &mut store,
            concat!(
                "{\"index\":{\"_index\":\"a\",\"_id\":\"z\"}}\n{\"n\":1}\n",
                "{\"delete\":{\"_index\":\"a\",\"_id\":\"old\"}}\n",
                "{\"delete\":{\"_index\":\"a\",\"_id\":\"gone\"}}\n",
                "{\"update\":{\"_index\":\"a\",\"_id\":\"z\"}}\n{\"doc\":{\"n\":2}}\n",
                "{\"index\":{\"_index\":\"b\"}}\n{\"n\":3}\n",
                "{\"create\":{\"_index\":\"a\",\"_id\":\"a\\\"q\"}}\n{\"n\":4}\n",
            ),
            None,
        );
        assert_eq!(
            r,
            json!({"took": 1, "errors": false, "items": [
                {"index": {"_index": "a", "_id": "z", "_version": 1, "result": "created", "status": 201}},
                {"delete": {"_index": "a", "_id": "old", "result": "deleted", "status": 200}},
                {"delete": {"_index": "a", "_id": "gone", "result": "not_found", "status": 404}},
                {"update": {"_index": "a", "_id": "z", "_version": 2, "result": "updated", "status": 200}},
                {"index": {"_index": "b", "_id": "auto-1", "_version": 1, "result": "created", "status": 201}},
                {"create": {"_index": "a", "_id": "a\"q", "_version": 1, "result": "created", "status": 201}},
            ]})
        );
        let docs = store.documents();
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[&("a".into(), "z".into())], json!({"doc": {"n": 2}}));
        assert_eq!(docs[&("b".into(), "auto-1".into())], json!({"n": 3}));
    }

    #[test]
    fn bulk_items_are_recorded_with_their_sources_as_values() {
        let r = parse(
            Some("u"),
            "{\"index\":{\"_id\":\"1\"}}\n{\"s\":\"\\u00e9\",\"k\":[1, 2]}\n{\"delete\":{\"_index\":\"x\",\"_id\":\"2\"}}\n",
        )
        .unwrap();
        assert_eq!(r.source_text(0), Some("{\"s\":\"\\u00e9\",\"k\":[1, 2]}"));
        assert_eq!(
            r.item_values(),
            [
                json!({"action": "index", "index": "u", "id": "1", "source": {"s": "é", "k": [1, 2]}}),
                json!({"action": "delete", "index": "x", "id": "2", "source": null}),
            ]
        );
    }
}
