//! The dashboard and the alarms of the templates, held to the metrics the code emits.
//!
//! - The metric names, namespaces and dimensions the code emits are read from the sources of
//!   `functions/` and `tools/` (every `Emf::new(..)` record and the `.dimension(..)`,
//!   `.count(..)` and `.metric(..)` calls that follow it), so a renamed metric or a dimension
//!   added in code fails here until the templates follow.
//! - Every metric on the pipeline's dashboard (plain metrics, `SEARCH` and Metrics Insights
//!   expressions) and every alarm of every template on a metric of ours must be one the code
//!   emits with exactly those dimensions; metrics in AWS namespaces must name a resource of the
//!   right type for their dimension.
//! - The dashboard body is JSON whichever optional parts the stack creates, has a row for every
//!   hop, and the stack with its dashboard creates on the emulator's CloudFormation.
//! - Every alarm says how many of how many periods breach (`DatapointsToAlarm`), how missing
//!   data counts, and notifies the alarm topic; the alarms the operations runbook names exist.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;

use authtrail_harness::{Emulator, venv_bin, workspace_root};
use serde_json::{Value, json};

/// Every template in `cloudformation/`.
fn templates() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(workspace_root().join("cloudformation"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    assert!(names.len() >= 5, "{names:?}");
    names
}
/// Our metrics' namespace (CloudWatch namespaces are case-sensitive).
const NAMESPACE: &str = "authtrail";

// ---------------------------------------------------------------------------------------------
// What the code emits
// ---------------------------------------------------------------------------------------------

/// One metric as the code emits it: namespace, name and its dimension set (name -> the literal
/// value, or `None` when the code computes it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Emitted {
    namespace: String,
    name: String,
    dims: BTreeMap<String, Option<String>>,
    file: String,
}

/// Non-test source files under `dir` (each file up to its first `#[cfg(test)]`).
fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            if !["target", "tests", "benches", "fuzz"].contains(&name.as_str()) {
                sources(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            let rel = path
                .strip_prefix(workspace_root())
                .unwrap()
                .display()
                .to_string();
            out.push((rel, code.to_string()));
        }
    }
}

/// `"literal"` or a `CONST` defined as a string literal somewhere in `all`.
fn string_arg(arg: &str, all: &[(String, String)]) -> Option<String> {
    let arg = arg.trim();
    if let Some(lit) = arg.strip_prefix('"').and_then(|a| a.strip_suffix('"')) {
        return Some(lit.to_string());
    }
    let ident = arg.rsplit("::").next().unwrap_or(arg);
    if ident.is_empty()
        || !ident
            .chars()
            .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit())
    {
        return None;
    }
    let re = regex_lite::Regex::new(&format!(
        r#"const\s+{}\s*:\s*&(?:'static\s+)?str\s*=\s*"([^"]*)""#,
        regex_lite::escape(ident)
    ))
    .unwrap();
    all.iter()
        .find_map(|(_, code)| re.captures(code).map(|c| c[1].to_string()))
}

/// Every metric the functions and tools emit in CloudWatch Embedded Metric Format.
fn emitted_metrics() -> Vec<Emitted> {
    let mut all = Vec::new();
    for top in ["functions", "tools"] {
        sources(&workspace_root().join(top), &mut all);
    }
    let new = regex_lite::Regex::new(r"Emf::new\(\s*([^)]*?)\s*\)").unwrap();
    let dim = regex_lite::Regex::new(r"\.dimension\(\s*([^,]+?)\s*,\s*([^)]*?)\s*\)").unwrap();
    let metric =
        regex_lite::Regex::new(r#"\.(?:count|metric)\(\s*("[^"]+"|[A-Za-z_:][A-Za-z0-9_:]*)\s*,"#)
            .unwrap();
    let mut out = Vec::new();
    for (file, code) in &all {
        let starts: Vec<_> = new.captures_iter(code).collect();
        for (i, c) in starts.iter().enumerate() {
            let from = c.get(0).unwrap().start();
            let to = starts
                .get(i + 1)
                .map_or(code.len(), |n| n.get(0).unwrap().start());
            let record = &code[from..to];
            let namespace = string_arg(&c[1], &all)
                .unwrap_or_else(|| panic!("{file}: Emf::new({}) is not a string", &c[1]));
            let dims: BTreeMap<String, Option<String>> = dim
                .captures_iter(record)
                .map(|d| {
                    let name = string_arg(&d[1], &all)
                        .unwrap_or_else(|| panic!("{file}: dimension name {}", &d[1]));
                    (name, string_arg(&d[2], &all))
                })
                .collect();
            for m in metric.captures_iter(record) {
                let Some(name) = string_arg(&m[1], &all) else {
                    continue;
                };
                out.push(Emitted {
                    namespace: namespace.clone(),
                    name,
                    dims: dims.clone(),
                    file: file.clone(),
                });
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn the_metric_names_are_read_from_every_function_that_emits_metrics() {
    let emitted = emitted_metrics();
    let has = |name: &str, function: &str| {
        emitted.iter().any(|e| {
            e.namespace == NAMESPACE
                && e.name == name
                && e.dims.get("Function") == Some(&Some(function.to_string()))
        })
    };
    for (name, function) in [
        ("Pulled", "producer"),
        ("RunFailed", "producer"),
        ("LagSeconds", "producer"),
        ("Records", "archiver"),
        ("RejectedBatches", "archiver"),
        ("DeadLetters", "forwarder"),
        ("Delivered", "forwarder"),
        ("SpoolOldestAgeSeconds", "forwarder"),
    ] {
        assert!(
            has(name, function),
            "{name} of the {function} not found: {emitted:#?}"
        );
    }
    // The per-emitter record carries the emitter's name as a second dimension.
    let delivered = emitted.iter().find(|e| e.name == "Delivered").unwrap();
    assert_eq!(
        delivered.dims,
        BTreeMap::from([
            ("Emitter".to_string(), None),
            ("Function".to_string(), Some("forwarder".to_string()))
        ])
    );
}

// ---------------------------------------------------------------------------------------------
// What the templates refer to
// ---------------------------------------------------------------------------------------------

/// The template as CloudFormation reads it, via cfn-lint's decoder.
fn template_json(name: &str) -> Value {
    let python = venv_bin("python");
    assert!(
        python.is_file(),
        "{} missing: run `make venv`",
        python.display()
    );
    let out = std::process::Command::new(&python)
        .arg(workspace_root().join("infra/scripts/cfn2json.py"))
        .arg(workspace_root().join("cloudformation").join(name))
        .output()
        .expect("run cfn2json.py");
    assert!(
        out.status.success(),
        "cfn2json.py {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cfn2json.py prints JSON")
}

fn resources_of<'a>(t: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    t["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .map(|(id, r)| (id.as_str(), r))
        .collect()
}

/// A dimension value as a template gives it: a literal or a reference to a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DimValue {
    Literal(String),
    /// `${Resource}` / `${Resource.Attr}` / `!Ref Resource` / `!GetAtt`: the logical id.
    Resource(String),
    /// A `SEARCH` or Metrics Insights query: any value.
    Any,
}

/// One metric a dashboard widget or an alarm refers to.
#[derive(Debug, Clone)]
struct Referenced {
    namespace: String,
    name: String,
    /// `None`: a Metrics Insights query over every dimension set of the namespace.
    dims: Option<BTreeMap<String, DimValue>>,
    place: String,
}

/// A value that [`resolve`] put where the template had `${X}`: `<ref:X>`.
fn dim_value(s: &str) -> DimValue {
    match s.strip_prefix("<ref:").and_then(|r| r.strip_suffix('>')) {
        Some(r) => DimValue::Resource(r.split('.').next().unwrap().to_string()),
        None => DimValue::Literal(s.to_string()),
    }
}

/// The string `Fn::Join` / `Fn::If` / `Fn::Sub` make, with every condition `enabled` or not,
/// and every `${X}` replaced by a marker that [`dim_value`] reads back.
fn resolve(v: &Value, enabled: bool, t: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(o) if o.contains_key("Fn::Join") => {
            let args = o["Fn::Join"].as_array().unwrap();
            let sep = args[0].as_str().unwrap();
            args[1]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| resolve(x, enabled, t))
                .collect::<Vec<_>>()
                .join(sep)
        }
        Value::Object(o) if o.contains_key("Fn::If") => {
            let args = o["Fn::If"].as_array().unwrap();
            let cond = args[0].as_str().unwrap();
            assert!(
                t["Conditions"].get(cond).is_some(),
                "unknown condition {cond}"
            );
            resolve(&args[if enabled { 1 } else { 2 }], enabled, t)
        }
        Value::Object(o) if o.contains_key("Fn::Sub") => {
            let text = o["Fn::Sub"].as_str().expect("Fn::Sub without variables");
            let re = regex_lite::Regex::new(r"\$\{([^}!]+)\}").unwrap();
            re.replace_all(text, |c: &regex_lite::Captures| {
                let name = &c[1];
                let id = name.split('.').next().unwrap();
                assert!(
                    id.starts_with("AWS::")
                        || t["Resources"].get(id).is_some()
                        || t["Parameters"].get(id).is_some(),
                    "${{{name}}} names nothing in the template"
                );
                format!("<ref:{name}>")
            })
            .to_string()
        }
        other => panic!("unexpected intrinsic in a dashboard body: {other}"),
    }
}

/// The dashboard body of `t`'s one dashboard, as JSON, with the optional parts `enabled`.
fn dashboard_body(t: &Value, enabled: bool) -> Value {
    let dashboards = resources_of(t, "AWS::CloudWatch::Dashboard");
    assert_eq!(dashboards.len(), 1, "one dashboard");
    let body = resolve(&dashboards[0].1["Properties"]["DashboardBody"], enabled, t);
    serde_json::from_str(&body).unwrap_or_else(|e| {
        panic!("the dashboard body (optional parts {enabled}) is not JSON: {e}\n{body}")
    })
}

/// The metrics a `SEARCH('{ns,dim,...} MetricName="X" dim="v"', ...)` or a Metrics Insights
/// `SELECT STAT(X) FROM ns | SCHEMA(ns, dims...)` expression reads.
fn expression_metrics(expr: &str, place: &str) -> Vec<Referenced> {
    let search = regex_lite::Regex::new(r"SEARCH\('\{([^}]*)\}\s*([^']*)'").unwrap();
    let term = regex_lite::Regex::new(r#"(\w+)="([^"]*)""#).unwrap();
    let select = regex_lite::Regex::new(
        r#"(?i)^SELECT\s+\w+\((\w+)\)\s+FROM\s+(?:SCHEMA\(\s*"?([\w/]+)"?\s*((?:,\s*\w+\s*)*)\)|"?([\w/]+)"?)"#,
    )
    .unwrap();
    let mut out = Vec::new();
    for c in search.captures_iter(expr) {
        let mut schema = c[1]
            .split(',')
            .map(|s| s.trim().trim_matches('"').to_string());
        let namespace = schema.next().unwrap();
        let mut dims: BTreeMap<String, DimValue> = schema.map(|d| (d, DimValue::Any)).collect();
        let mut name = None;
        // `NOT Dim="v"` excludes a value: it says nothing the code must emit.
        let not = regex_lite::Regex::new(r#"NOT\s+\w+="[^"]*""#).unwrap();
        let terms = not.replace_all(&c[2], "");
        for t in term.captures_iter(&terms) {
            if &t[1] == "MetricName" {
                name = Some(t[2].to_string());
            } else {
                assert!(
                    dims.contains_key(&t[1]),
                    "{place}: {expr}: {} is not in the schema",
                    &t[1]
                );
                dims.insert(t[1].to_string(), DimValue::Literal(t[2].to_string()));
            }
        }
        out.push(Referenced {
            namespace,
            name: name.unwrap_or_else(|| panic!("{place}: {expr}: no MetricName=\"..\"")),
            dims: Some(dims),
            place: place.to_string(),
        });
    }
    if let Some(c) = select.captures(expr.trim()) {
        let name = c[1].to_string();
        let (namespace, dims) = match c.get(2) {
            Some(ns) => (
                ns.as_str().to_string(),
                Some(
                    c[3].split(',')
                        .map(str::trim)
                        .filter(|d| !d.is_empty())
                        .map(|d| (d.to_string(), DimValue::Any))
                        .collect(),
                ),
            ),
            None => (c[4].to_string(), None),
        };
        out.push(Referenced {
            namespace,
            name,
            dims,
            place: place.to_string(),
        });
    }
    assert!(
        !out.is_empty(),
        "{place}: an expression this test cannot read: {expr}"
    );
    out
}

/// Every metric the widgets of a dashboard body refer to.
fn dashboard_metrics(body: &Value) -> Vec<Referenced> {
    let mut out = Vec::new();
    for (i, w) in body["widgets"].as_array().unwrap().iter().enumerate() {
        if w["type"] != "metric" {
            continue;
        }
        let place = format!("widget {i} ({})", w["properties"]["title"]);
        let mut previous: Vec<Value> = Vec::new();
        for row in w["properties"]["metrics"].as_array().unwrap() {
            let row = row.as_array().unwrap();
            let mut items: Vec<Value> = row.iter().filter(|x| !x.is_object()).cloned().collect();
            if items.is_empty() {
                let expr = row[0]["expression"].as_str().expect("an expression");
                out.extend(expression_metrics(expr, &place));
                continue;
            }
            // "." repeats the item of the row before.
            for (k, item) in items.iter_mut().enumerate() {
                if item == "." {
                    *item = previous[k].clone();
                }
            }
            previous = items.clone();
            let s = |v: &Value| v.as_str().unwrap().to_string();
            assert!(items.len().is_multiple_of(2), "{place}: {row:?}");
            out.push(Referenced {
                namespace: s(&items[0]),
                name: s(&items[1]),
                dims: Some(
                    items[2..]
                        .chunks(2)
                        .map(|kv| (s(&kv[0]), dim_value(&s(&kv[1]))))
                        .collect(),
                ),
                place: place.clone(),
            });
        }
    }
    out
}

/// A `{"Ref": X}` / `{"Fn::GetAtt": [X, ..]}` / literal dimension value of an alarm.
fn alarm_dim_value(v: &Value) -> DimValue {
    if let Some(s) = v.as_str() {
        return DimValue::Literal(s.to_string());
    }
    if let Some(r) = v["Ref"].as_str() {
        return DimValue::Resource(r.to_string());
    }
    if let Some(r) = v["Fn::GetAtt"][0].as_str() {
        return DimValue::Resource(r.to_string());
    }
    panic!("unexpected dimension value {v}")
}

/// The metric(s) an alarm watches.
fn alarm_metrics(id: &str, a: &Value) -> Vec<Referenced> {
    let p = &a["Properties"];
    let dims = |d: &Value| -> BTreeMap<String, DimValue> {
        d.as_array()
            .map(|list| {
                list.iter()
                    .map(|x| {
                        (
                            x["Name"].as_str().unwrap().to_string(),
                            alarm_dim_value(&x["Value"]),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    if let Some(name) = p["MetricName"].as_str() {
        return vec![Referenced {
            namespace: p["Namespace"].as_str().unwrap().to_string(),
            name: name.to_string(),
            dims: Some(dims(&p["Dimensions"])),
            place: id.to_string(),
        }];
    }
    let mut out = Vec::new();
    for m in p["Metrics"]
        .as_array()
        .unwrap_or_else(|| panic!("{id}: no metric"))
    {
        if let Some(expr) = m["Expression"].as_str() {
            if !expr.trim_start().to_ascii_uppercase().starts_with("SELECT")
                && !expr.contains("SEARCH(")
            {
                continue; // metric math over the other ids
            }
            out.extend(expression_metrics(expr, id));
        } else {
            let metric = &m["MetricStat"]["Metric"];
            out.push(Referenced {
                namespace: metric["Namespace"].as_str().unwrap().to_string(),
                name: metric["MetricName"].as_str().unwrap().to_string(),
                dims: Some(dims(&metric["Dimensions"])),
                place: id.to_string(),
            });
        }
    }
    out
}

/// An AWS namespace's metric names, and its dimensions with the resource type each names.
type AwsNamespace = (Vec<&'static str>, Vec<(&'static str, &'static str)>);

/// AWS metrics the templates may use: namespace -> (metric names, dimension -> resource type).
fn aws_metrics() -> BTreeMap<&'static str, AwsNamespace> {
    BTreeMap::from([
        (
            "AWS/Lambda",
            (
                vec![
                    "Errors",
                    "Duration",
                    "Invocations",
                    "Throttles",
                    "IteratorAge",
                    "OnFailureDestinationDeliveredEventCount",
                ],
                vec![
                    ("FunctionName", "AWS::Lambda::Function"),
                    ("EventSourceMappingUUID", "AWS::Lambda::EventSourceMapping"),
                ],
            ),
        ),
        (
            "AWS/Kinesis",
            (
                vec![
                    "IncomingRecords",
                    "IncomingBytes",
                    "GetRecords.IteratorAgeMilliseconds",
                    "WriteProvisionedThroughputExceeded",
                    "ReadProvisionedThroughputExceeded",
                ],
                vec![("StreamName", "AWS::Kinesis::Stream")],
            ),
        ),
        (
            "AWS/SQS",
            (
                vec!["ApproximateNumberOfMessagesVisible"],
                vec![("QueueName", "AWS::SQS::Queue")],
            ),
        ),
    ])
}

/// Why `r` is not a metric the code (or AWS, for the template `t`) emits; `None` when it is.
fn unmatched(r: &Referenced, emitted: &[Emitted], t: &Value) -> Option<String> {
    if let Some((names, dims)) = aws_metrics().get(r.namespace.as_str()) {
        if !names.contains(&r.name.as_str()) {
            return Some(format!(
                "{} is not an {} metric this test knows",
                r.name, r.namespace
            ));
        }
        for (dim, value) in r.dims.iter().flatten() {
            let Some((_, kind)) = dims.iter().find(|(d, _)| d == dim) else {
                return Some(format!("{}: no dimension {dim}", r.namespace));
            };
            match value {
                DimValue::Resource(id) if t["Resources"][id]["Type"] == json!(kind) => {}
                other => {
                    return Some(format!(
                        "{dim} must name a {kind} of the stack, not {other:?}"
                    ));
                }
            }
        }
        return None;
    }
    let candidates: Vec<&Emitted> = emitted
        .iter()
        .filter(|e| e.namespace == r.namespace && e.name == r.name)
        .collect();
    if candidates.is_empty() {
        return Some(format!(
            "no code emits {} in namespace {:?}",
            r.name, r.namespace
        ));
    }
    let Some(dims) = &r.dims else {
        return None; // a query over every dimension set of the namespace
    };
    let fits = |e: &&Emitted| {
        e.dims.keys().eq(dims.keys())
            && dims.iter().all(|(k, v)| match (v, &e.dims[k]) {
                (DimValue::Any, _) | (_, None) => true,
                (DimValue::Literal(a), Some(b)) => a == b,
                (DimValue::Resource(_), Some(_)) => false,
            })
    };
    if candidates.iter().any(fits) {
        None
    } else {
        Some(format!(
            "{} is emitted with dimensions {:?}, not {:?}",
            r.name,
            candidates
                .iter()
                .map(|e| (&e.dims, &e.file))
                .collect::<Vec<_>>(),
            dims
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// The dashboard
// ---------------------------------------------------------------------------------------------

#[test]
fn every_metric_on_the_dashboard_is_one_the_code_emits_with_its_dimensions() {
    let emitted = emitted_metrics();
    let t = template_json("pipeline.yaml");
    let refs = dashboard_metrics(&dashboard_body(&t, true));
    assert!(
        refs.len() >= 40,
        "only {} metrics on the dashboard",
        refs.len()
    );
    let wrong: Vec<String> = refs
        .iter()
        .filter_map(|r| unmatched(r, &emitted, &t).map(|why| format!("{}: {why}", r.place)))
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn the_dashboard_body_is_json_whichever_optional_parts_the_stack_creates() {
    let t = template_json("pipeline.yaml");
    let full = dashboard_body(&t, true);
    let minimal = dashboard_body(&t, false);
    let titles = |b: &Value| -> Vec<String> {
        b["widgets"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|w| w["properties"]["title"].as_str().map(str::to_string))
            .collect()
    };
    let (full, minimal) = (titles(&full), titles(&minimal));
    assert!(minimal.len() < full.len());
    // Without producer and forwarder the dashboard still shows the stream, the archiver and
    // the reconciliation, and names none of the missing functions.
    assert!(
        minimal
            .iter()
            .all(|w| !w.starts_with("Producer") && !w.starts_with("Forwarder"))
    );
    assert!(minimal.iter().any(|w| w.starts_with("Archiver")));
    assert!(minimal.iter().any(|w| w.starts_with("Reconciliation")));
}

#[test]
fn the_dashboard_has_a_row_for_every_hop_with_counts_lags_errors_and_durations() {
    let t = template_json("pipeline.yaml");
    let body = dashboard_body(&t, true);
    let refs = dashboard_metrics(&body);
    let shows = |namespace: &str, name: &str, dim: Option<(&str, &str)>| {
        refs.iter().any(|r| {
            r.namespace == namespace
                && r.name == name
                && dim.is_none_or(|(k, v)| {
                    r.dims.as_ref().is_some_and(|d| match d.get(k) {
                        Some(DimValue::Literal(x)) | Some(DimValue::Resource(x)) => x == v,
                        _ => false,
                    })
                })
        })
    };
    let ours = |name: &str, function: &str| shows(NAMESPACE, name, Some(("Function", function)));
    // Pulled, put, archived, delivered per emitter, spooled, dead-lettered, unaccounted.
    for (name, function) in [
        ("Pulled", "producer"),
        ("Put", "producer"),
        ("LagSeconds", "producer"),
        ("CollectionGap", "producer"),
        ("RunFailed", "producer"),
        ("Records", "archiver"),
        ("Objects", "archiver"),
        ("Records", "forwarder"),
        ("Delivered", "forwarder"),
        ("Spooled", "forwarder"),
        ("DeadLetters", "forwarder"),
        ("DeadLettered", "forwarder"),
        ("SpoolOldestAgeSeconds", "forwarder"),
    ] {
        assert!(
            ours(name, function),
            "the dashboard lacks {name} of the {function}"
        );
    }
    assert!(shows(NAMESPACE, "Unaccounted", None), "no Unaccounted");
    assert!(shows(
        "AWS/Kinesis",
        "IncomingRecords",
        Some(("StreamName", "Stream"))
    ));
    for f in ["ProducerFunction", "ArchiverFunction", "ForwarderFunction"] {
        for m in ["Errors", "Duration"] {
            assert!(
                shows("AWS/Lambda", m, Some(("FunctionName", f))),
                "{m} of {f}"
            );
        }
    }
    for f in ["ArchiverFunction", "ForwarderFunction"] {
        assert!(
            shows("AWS/Lambda", "IteratorAge", Some(("FunctionName", f))),
            "iterator age of {f}'s mapping"
        );
    }
    // Numbers a person reads at a glance: every hop row starts with single values over the
    // picked time range, beside its graphs.
    let widgets = body["widgets"].as_array().unwrap();
    let mut rows: BTreeMap<i64, Vec<&Value>> = BTreeMap::new();
    for w in widgets.iter().filter(|w| w["type"] == "metric") {
        rows.entry(w["y"].as_i64().unwrap()).or_default().push(w);
    }
    let hop_rows: Vec<_> = rows
        .values()
        .filter(|r| r.iter().any(|w| w["properties"]["view"] == "singleValue"))
        .collect();
    assert_eq!(
        hop_rows.len(),
        5,
        "producer, stream, archiver, forwarder, reconciliation"
    );
    for row in hop_rows {
        let first = row.iter().min_by_key(|w| w["x"].as_i64()).unwrap();
        assert_eq!(first["properties"]["view"], "singleValue", "{first}");
        assert_eq!(
            first["properties"]["setPeriodToTimeRange"],
            json!(true),
            "{first}"
        );
        assert!(row.iter().any(|w| w["properties"]["view"] == "timeSeries"));
        let width: i64 = row.iter().map(|w| w["width"].as_i64().unwrap()).sum();
        assert!(width <= 24, "a row wider than the grid: {width}");
    }
}

// ---------------------------------------------------------------------------------------------
// Alarms
// ---------------------------------------------------------------------------------------------

#[test]
fn every_alarm_watches_a_metric_the_code_or_aws_emits_with_its_dimensions() {
    let emitted = emitted_metrics();
    let mut checked = 0;
    for name in templates() {
        let t = template_json(&name);
        for (id, a) in resources_of(&t, "AWS::CloudWatch::Alarm") {
            for r in alarm_metrics(id, a) {
                if let Some(why) = unmatched(&r, &emitted, &t) {
                    panic!("{name} {id}: {why}");
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 30, "only {checked} alarm metrics checked");
}

#[test]
fn every_alarm_is_m_of_n_says_how_missing_data_counts_and_notifies_the_alarm_topic() {
    for name in templates() {
        let t = template_json(&name);
        for (id, a) in resources_of(&t, "AWS::CloudWatch::Alarm") {
            let p = &a["Properties"];
            let n = p["EvaluationPeriods"]
                .as_u64()
                .unwrap_or_else(|| panic!("{name} {id}"));
            let m = p["DatapointsToAlarm"]
                .as_u64()
                .unwrap_or_else(|| panic!("{name} {id}: no DatapointsToAlarm"));
            assert!((1..=n).contains(&m), "{name} {id}: {m} of {n}");
            assert!(
                ["notBreaching", "breaching", "ignore", "missing"]
                    .contains(&p["TreatMissingData"].as_str().unwrap_or_default()),
                "{name} {id}: TreatMissingData"
            );
            for key in ["AlarmActions", "OKActions"] {
                assert_eq!(
                    p[key],
                    json!({"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}),
                    "{name} {id}: {key}"
                );
            }
        }
    }
}

/// The alarm of template `t` on our metric `metric`.
fn our_alarm<'a>(t: &'a Value, metric: &str) -> Option<(&'a str, &'a Value)> {
    resources_of(t, "AWS::CloudWatch::Alarm")
        .into_iter()
        .find(|(id, a)| {
            alarm_metrics(id, a)
                .iter()
                .any(|r| r.namespace == NAMESPACE && r.name == metric)
        })
}

#[test]
fn the_runbook_alarms_exist_with_their_evaluation() {
    for name in ["pipeline.yaml", "mpas-producer.yaml", "siem-forwarder.yaml"] {
        let t = template_json(name);
        let has_producer = name != "siem-forwarder.yaml";
        let has_forwarder = name != "mpas-producer.yaml";
        if has_producer {
            // A collection gap is events lost at the source: the first one alarms.
            let (id, gap) = our_alarm(&t, "CollectionGap").expect("CollectionGap alarm");
            let p = &gap["Properties"];
            assert_eq!(
                (
                    p["EvaluationPeriods"].as_u64(),
                    p["DatapointsToAlarm"].as_u64()
                ),
                (Some(1), Some(1)),
                "{name} {id}"
            );
            // Failed runs in a row: every one-minute period of the window failed.
            let (id, failed) = our_alarm(&t, "RunFailed").expect("RunFailed alarm");
            let p = &failed["Properties"];
            assert_eq!(
                p["Period"],
                json!(60),
                "{name} {id}: one period per scheduled run"
            );
            assert!(p["EvaluationPeriods"].as_u64().unwrap() >= 3, "{name} {id}");
            assert_eq!(
                p["EvaluationPeriods"], p["DatapointsToAlarm"],
                "{name} {id}: in a row"
            );
            assert_eq!(
                p["TreatMissingData"], "notBreaching",
                "{name} {id}: a success emits nothing"
            );
        }
        if has_forwarder {
            let (id, dead) = our_alarm(&t, "DeadLetters").expect("DeadLetters alarm");
            assert_eq!(
                dead["Properties"]["DatapointsToAlarm"],
                json!(1),
                "{name} {id}"
            );
            let (id, age) = our_alarm(&t, "SpoolOldestAgeSeconds").expect("spool age alarm");
            assert_eq!(age["Properties"]["Statistic"], "Maximum", "{name} {id}");
        }
    }
    // The reconciler's stack (it runs next to the pipeline) alarms on the first unaccounted
    // event of a settled window, summed over the hops.
    let t = template_json("reconciler.yaml");
    let (id, unaccounted) = our_alarm(&t, "Unaccounted").expect("Unaccounted alarm");
    let p = &unaccounted["Properties"];
    let first = (p["Threshold"] == json!(0) && p["ComparisonOperator"] == "GreaterThanThreshold")
        || (p["Threshold"] == json!(1)
            && p["ComparisonOperator"] == "GreaterThanOrEqualToThreshold");
    assert!(first, "{id}: alarms on the first unaccounted event");
    assert_eq!(
        p["DatapointsToAlarm"],
        json!(1),
        "{id}: one unaccounted event is a loss"
    );
}

// ---------------------------------------------------------------------------------------------
// On the emulator
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_pipeline_stack_creates_its_dashboard_on_the_emulator_with_and_without_optional_parts()
{
    let emu = Emulator::start().await.expect("start moto");
    let sdk = emu.sdk_config().await;
    let s3 = emu.s3().await;
    emu.create_bucket("authtrail-code").await.unwrap();
    for bin in ["archiver", "forwarder", "producer"] {
        s3.put_object()
            .bucket("authtrail-code")
            .key(format!("authtrail/0.1.0/authtrail-{bin}.zip"))
            .body(
                b"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"
                    .to_vec()
                    .into(),
            )
            .send()
            .await
            .unwrap();
    }
    let secret = aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name("mpas-credentials")
        .secret_string(r#"{"clientId":"authtrail","clientSecret":"not-a-real-secret"}"#)
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    let cfn = aws_sdk_cloudformation::Client::new(&sdk);
    let body =
        std::fs::read_to_string(workspace_root().join("cloudformation/pipeline.yaml")).unwrap();
    let full: &[(&str, &str)] = &[
        ("StreamName", "dashboard-events"),
        (
            "ForwarderConfig",
            r#"{"emitters":[{"name":"out","type":"stdout"}]}"#,
        ),
        ("MpasBaseUrl", "http://127.0.0.1:9"),
        ("MpasRealm", "demo"),
        ("ExistingCredentialsSecretArn", &secret),
        ("CodeBucket", "authtrail-code"),
    ];
    let minimal: &[(&str, &str)] = &[
        ("StreamName", "minimal-events"),
        ("CodeBucket", "authtrail-code"),
    ];
    for (stack, params) in [("with-everything", full), ("minimal", minimal)] {
        let mut req = cfn
            .create_stack()
            .stack_name(stack)
            .template_body(body.clone())
            .capabilities(aws_sdk_cloudformation::types::Capability::CapabilityIam);
        for (k, v) in params {
            req = req.parameters(
                aws_sdk_cloudformation::types::Parameter::builder()
                    .parameter_key(*k)
                    .parameter_value(*v)
                    .build(),
            );
        }
        req.send()
            .await
            .unwrap_or_else(|e| panic!("{stack}: {e:?}"));
        let desc = cfn
            .describe_stacks()
            .stack_name(stack)
            .send()
            .await
            .unwrap();
        let s = &desc.stacks()[0];
        assert_eq!(
            s.stack_status().map(|x| x.as_str()),
            Some("CREATE_COMPLETE"),
            "{stack}: {:?}",
            s.stack_status_reason()
        );
        let resources = cfn
            .list_stack_resources()
            .stack_name(stack)
            .send()
            .await
            .unwrap();
        let dashboard = resources
            .stack_resource_summaries()
            .iter()
            .find(|r| r.logical_resource_id() == Some("Dashboard"))
            .unwrap_or_else(|| panic!("{stack}: no dashboard"));
        assert_eq!(
            dashboard.physical_resource_id(),
            Some(format!("authtrail-{stack}").as_str())
        );
    }
}
