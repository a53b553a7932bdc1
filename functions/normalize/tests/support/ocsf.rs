//! A checker of OCSF events against the OCSF schema files (read at test time, not copied into
//! code): every attribute an event carries exists for its class (the class, the classes it
//! extends, their includes and the profiles the event lists in `metadata.profiles`) or for the
//! object it belongs to (recursively, along the objects' `extends`); required attributes are
//! present; `constraints` (`at_least_one`, `just_one`) hold; values have their dictionary type
//! (strings, integers, booleans, IP addresses, arrays); enum values (`*_id`) are listed and
//! their captions (`activity_name`, `status`, ...) match; `class_uid`, `category_uid`,
//! `type_uid` and their names agree with the class file.
//!
//! The schema directory is `OCSF_SCHEMA_DIR` when set, else the copy in the crate's
//! `schema/ocsf-1.1.0`. A missing directory or file fails the test, naming the path.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// The crate's copy of the schema.
pub fn bundled_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/ocsf-1.1.0")
}

/// The schema directory the checker reads.
pub fn schema_dir() -> PathBuf {
    match std::env::var_os("OCSF_SCHEMA_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => bundled_dir(),
    }
}

/// An attribute as the class or object defines it, merged over the dictionary's definition.
#[derive(Debug, Clone)]
struct Attr {
    def: Value,
}

impl Attr {
    fn str(&self, key: &str) -> Option<&str> {
        self.def.get(key).and_then(Value::as_str)
    }
    fn profile(&self) -> Option<&str> {
        self.str("profile")
    }
    fn required(&self) -> bool {
        self.str("requirement") == Some("required")
    }
    fn enum_caption(&self, id: &str) -> Option<Option<&str>> {
        let e = self.def.get("enum")?.as_object()?;
        Some(
            e.get(id)
                .map(|v| v.get("caption").and_then(Value::as_str).unwrap_or_default()),
        )
    }
}

/// Attributes and constraints of a class or object, with its caption.
#[derive(Debug, Clone, Default)]
struct Shape {
    caption: String,
    attrs: BTreeMap<String, Attr>,
    constraints: Map<String, Value>,
}

/// The schema files, read on demand.
pub struct Schema {
    dir: PathBuf,
    dictionary: Map<String, Value>,
    types: Map<String, Value>,
    categories: Map<String, Value>,
    /// Event files by their `name`.
    events: HashMap<String, PathBuf>,
    shapes: std::cell::RefCell<HashMap<String, Shape>>,
}

/// Deep merge: members of `over` replace those of `base`, objects merge member by member.
fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

impl Schema {
    /// Reads the schema at [`schema_dir`]; panics naming the path when it is not there.
    pub fn load() -> Self {
        Self::load_from(&schema_dir())
    }

    /// Reads the schema at `dir`.
    pub fn load_from(dir: &Path) -> Self {
        assert!(
            dir.join("dictionary.json").is_file(),
            "the OCSF 1.1.0 schema is not at {} (set OCSF_SCHEMA_DIR to a checkout of the \
             schema's v1.1.0 release, or restore the crate's schema/ocsf-1.1.0 copy)",
            dir.display()
        );
        let read = |rel: &str| read_json(&dir.join(rel));
        let dict = read("dictionary.json");
        let mut events = HashMap::new();
        index_events(&dir.join("events"), &mut events);
        Self {
            dir: dir.to_path_buf(),
            dictionary: dict
                .get("attributes")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            types: dict
                .pointer("/types/attributes")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            categories: read("categories.json")
                .get("attributes")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            events,
            shapes: Default::default(),
        }
    }

    /// The category uid of an event file, following `extends` to the file naming its category.
    fn category_of(&self, file: &Value) -> Option<u64> {
        if let Some(cat) = file.get("category").and_then(Value::as_str) {
            return self.categories.get(cat)?.get("uid")?.as_u64();
        }
        let parent = file.get("extends")?.as_str()?;
        self.category_of(&read_json(self.events.get(parent)?))
    }

    /// The event file of `class_uid`.
    fn class_file(&self, class_uid: u64) -> Option<(String, Value)> {
        if class_uid == 0 {
            return Some((
                "base_event".into(),
                read_json(self.events.get("base_event")?),
            ));
        }
        self.events.iter().find_map(|(name, path)| {
            let file = read_json(path);
            let uid = file.get("uid")?.as_u64()?;
            let cat = self.category_of(&file)?;
            (cat * 1000 + uid == class_uid).then(|| (name.clone(), file))
        })
    }

    /// Attributes of the file at `rel` (an event or object file), `extends` and `$include`
    /// resolved; attributes of included profiles are tagged with the profile's name.
    fn shape_of(&self, file: &Value, is_event: bool) -> Shape {
        let mut shape = match file.get("extends").and_then(Value::as_str) {
            Some(parent) if is_event => {
                let path = self.events.get(parent).cloned().unwrap_or_default();
                self.shape_of(&read_json(&path), true)
            }
            Some(parent) => self.object(parent),
            None => Shape::default(),
        };
        shape.caption = file
            .get("caption")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if let Some(c) = file.get("constraints").and_then(Value::as_object) {
            shape.constraints = c.clone();
        }
        let Some(attrs) = file.get("attributes").and_then(Value::as_object) else {
            return shape;
        };
        let includes: Vec<&str> = match attrs.get("$include") {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        for inc in includes {
            let included = read_json(&self.dir.join(inc));
            let profile = inc
                .starts_with("profiles/")
                .then(|| included.get("name").and_then(Value::as_str))
                .flatten();
            let annotations = included.get("annotations").cloned();
            for (k, v) in included
                .get("attributes")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                let mut def = v.clone();
                if let Some(a) = &annotations {
                    let mut with = a.clone();
                    merge(&mut with, &def);
                    def = with;
                }
                if let (Some(p), Some(o)) = (profile, def.as_object_mut()) {
                    o.insert("profile".into(), Value::String(p.into()));
                }
                self.put(&mut shape, k, &def);
            }
        }
        for (k, v) in attrs {
            if k != "$include" {
                self.put(&mut shape, k, v);
            }
        }
        shape
    }

    /// Merges `def` into the shape's attribute `name` (over the dictionary's definition).
    fn put(&self, shape: &mut Shape, name: &str, def: &Value) {
        let attr = shape.attrs.entry(name.to_string()).or_insert_with(|| Attr {
            def: self
                .dictionary
                .get(name)
                .cloned()
                .unwrap_or_else(|| Value::Object(Map::new())),
        });
        merge(&mut attr.def, def);
    }

    /// The shape of object `name` (cached).
    fn object(&self, name: &str) -> Shape {
        if let Some(s) = self.shapes.borrow().get(name) {
            return s.clone();
        }
        let path = self.dir.join(format!("objects/{name}.json"));
        let shape = self.shape_of(&read_json(&path), false);
        self.shapes
            .borrow_mut()
            .insert(name.to_string(), shape.clone());
        shape
    }

    /// Every way `event` departs from the schema (empty: it follows it).
    pub fn check(&self, event: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        let Some(class_uid) = event.get("class_uid").and_then(Value::as_u64) else {
            return vec!["class_uid: missing or not an integer".into()];
        };
        let Some((name, file)) = self.class_file(class_uid) else {
            return vec![format!(
                "class_uid {class_uid}: no such class in the schema"
            )];
        };
        let shape = self.shape_of(&file, true);
        let profiles: Vec<String> = event
            .pointer("/metadata/profiles")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str().map(str::to_string))
            .collect();
        let category = if class_uid == 0 {
            Some(0)
        } else {
            self.category_of(&file)
        };
        let activity = event.get("activity_id").and_then(Value::as_u64);
        let expect = |k: &str, v: Value, errors: &mut Vec<String>| {
            if event.get(k) != Some(&v) {
                errors.push(format!(
                    "{k}: {:?}, expected {v} for class {name}",
                    event.get(k)
                ));
            }
        };
        if let Some(c) = category {
            expect("category_uid", Value::from(c), &mut errors);
            if let Some(cap) = self.category_caption(c) {
                expect("category_name", Value::from(cap), &mut errors);
            }
        }
        expect(
            "class_name",
            Value::from(shape.caption.clone()),
            &mut errors,
        );
        if let Some(a) = activity {
            expect("type_uid", Value::from(class_uid * 100 + a), &mut errors);
            let caption = shape
                .attrs
                .get("activity_id")
                .and_then(|d| d.enum_caption(&a.to_string()));
            if let Some(Some(c)) = caption {
                expect(
                    "type_name",
                    Value::from(format!("{}: {c}", shape.caption)),
                    &mut errors,
                );
            }
        }
        let ctx = Ctx {
            schema: self,
            profiles: &profiles,
        };
        if let Some(obj) = event.as_object() {
            ctx.object("", obj, &shape, &mut errors);
        } else {
            errors.push("the event is not a JSON object".into());
        }
        errors
    }

    fn category_caption(&self, uid: u64) -> Option<String> {
        if uid == 0 {
            return Some("Uncategorized".into());
        }
        self.categories.values().find_map(|c| {
            (c.get("uid")?.as_u64()? == uid)
                .then(|| c.get("caption")?.as_str().map(str::to_string))?
        })
    }

    /// The base scalar type of a dictionary type (`timestamp_t` -> `long_t`).
    fn base_type<'t>(&'t self, t: &'t str) -> &'t str {
        match self
            .types
            .get(t)
            .and_then(|d| d.get("type"))
            .and_then(Value::as_str)
        {
            Some(parent) if parent != t => self.base_type(parent),
            _ => t,
        }
    }
}

/// The walk over one event.
struct Ctx<'s> {
    schema: &'s Schema,
    profiles: &'s [String],
}

/// Attributes whose values the class decides (checked against the class file instead).
const CLASSIFICATION: &[&str] = &["class_uid", "category_uid", "type_uid"];

impl Ctx<'_> {
    fn active(&self, attr: &Attr) -> bool {
        attr.profile()
            .is_none_or(|p| self.profiles.iter().any(|x| x == p))
    }

    fn object(
        &self,
        path: &str,
        obj: &Map<String, Value>,
        shape: &Shape,
        errors: &mut Vec<String>,
    ) {
        for (k, v) in obj {
            let at = format!("{path}{k}");
            let Some(attr) = shape.attrs.get(k) else {
                errors.push(format!("{at}: not an attribute of {}", shape.caption));
                continue;
            };
            if !self.active(attr) {
                errors.push(format!(
                    "{at}: belongs to profile {:?}, not listed in metadata.profiles",
                    attr.profile().unwrap_or_default()
                ));
            }
            self.value(&at, v, attr, errors);
            if let (Some(sibling), Some(id)) = (attr.str("sibling"), v.as_u64()) {
                let caption = attr.enum_caption(&id.to_string()).flatten();
                if let (Some(c), Some(given)) = (caption, obj.get(sibling))
                    && id != 99
                    && !CLASSIFICATION.contains(&k.as_str())
                    && given != c
                {
                    errors.push(format!(
                        "{path}{sibling}: {given}, the caption of {k} {id} is {c:?}"
                    ));
                }
            }
        }
        for (name, attr) in &shape.attrs {
            if attr.required() && self.active(attr) && !obj.contains_key(name) {
                errors.push(format!(
                    "{path}{name}: required by {} but missing",
                    shape.caption
                ));
            }
        }
        let present = |names: &Value| -> usize {
            names
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter(|n| obj.contains_key(*n))
                .count()
        };
        if let Some(list) = shape.constraints.get("at_least_one")
            && present(list) == 0
        {
            errors.push(format!(
                "{path}: {} needs at least one of {list}",
                shape.caption
            ));
        }
        if let Some(list) = shape.constraints.get("just_one")
            && present(list) != 1
        {
            errors.push(format!(
                "{path}: {} needs exactly one of {list}",
                shape.caption
            ));
        }
    }

    fn value(&self, at: &str, v: &Value, attr: &Attr, errors: &mut Vec<String>) {
        let ty = attr.str("type").unwrap_or("string_t");
        if attr.def.get("is_array").and_then(Value::as_bool) == Some(true) {
            match v.as_array() {
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        self.one(&format!("{at}[{i}]"), item, ty, attr, errors);
                    }
                }
                None => errors.push(format!("{at}: must be an array of {ty}")),
            }
        } else {
            self.one(at, v, ty, attr, errors);
        }
    }

    fn one(&self, at: &str, v: &Value, ty: &str, attr: &Attr, errors: &mut Vec<String>) {
        if !ty.ends_with("_t") {
            if ty == "object" {
                if !v.is_object() {
                    errors.push(format!("{at}: must be an object"));
                }
                return;
            }
            match v.as_object() {
                Some(o) => {
                    let shape = self.schema.object(ty);
                    self.object(&format!("{at}."), o, &shape, errors);
                }
                None => errors.push(format!("{at}: must be a {ty} object")),
            }
            return;
        }
        let ok = match (ty, self.schema.base_type(ty)) {
            ("ip_t", _) => v.as_str().is_some_and(|s| s.parse::<IpAddr>().is_ok()),
            ("json_t", _) => true,
            (_, "string_t") => v.is_string(),
            (_, "integer_t" | "long_t") => v.is_i64() || v.is_u64(),
            (_, "float_t") => v.is_number(),
            (_, "boolean_t") => v.is_boolean(),
            _ => true,
        };
        if !ok {
            errors.push(format!("{at}: {v} is not a valid {ty}"));
        }
        let name = at.rsplit(['.', '[']).next().unwrap_or(at);
        if CLASSIFICATION.contains(&name) {
            return;
        }
        if let Some(id) = v.as_u64()
            && attr.enum_caption(&id.to_string()) == Some(None)
        {
            errors.push(format!(
                "{at}: {id} is not one of the values the schema lists"
            ));
        }
    }
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read OCSF schema file {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("OCSF schema file {} is not JSON: {e}", path.display()))
}

fn index_events(dir: &Path, out: &mut HashMap<String, PathBuf>) {
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list OCSF schema directory {}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            index_events(&path, out);
        } else if path.extension().is_some_and(|x| x == "json")
            && let Some(name) = read_json(&path).get("name").and_then(Value::as_str)
        {
            out.insert(name.to_string(), path);
        }
    }
}
