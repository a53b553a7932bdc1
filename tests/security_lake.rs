//! End-to-end tests of the Security Lake writer: the real `authtrail-securitylake` binary under
//! the local Lambda runtime, fed by the event-source runner from moto's Kinesis, writing to
//! moto's S3; the Parquet objects read back by an independent reader (pyarrow, pinned in the
//! project's venv). And `cloudformation/security-lake.yaml` created on moto (without the
//! registration of the custom sources, which moto cannot create) and held to the code.
//!
//! Build the binary first: `cargo build -p authtrail-securitylake --bins` (`make test` does),
//! and `make venv` for moto, pyarrow and cfn-lint.
//!
//! The runner's mapping waits 1 s instead of the template's 300 s: the window decides when a
//! batch is cut, not what the function does with it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use authtrail_harness::{
    ACCOUNT_ID, Emulator, REGION, ScratchDir, bin_path, venv_bin, workspace_root,
};
use authtrail_runner::{
    FunctionConfig, KinesisEventSource, KinesisSourceConfig, LambdaFunction, Outcome,
};
use authtrail_securitylake::OcsfClass;
use aws_sdk_cloudformation::types::{Capability, Parameter, StackStatus};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use serde_json::{Value, json};

const LAKE: &str = "aws-security-data-lake-us-east-1-e2e";
const WORK: &str = "authtrail-securitylake-work";
const CODE_BUCKET: &str = "authtrail-code";
/// 2025-02-12T19:27:50Z; records are 10 s apart, so a batch of 3,000 crosses midnight UTC.
const T0: i64 = 1_739_388_470;

/// The record kinds of the batch, with the OCSF class the mapping must give each.
const KINDS: &[(&str, u16)] = &[
    ("LOGIN", 3002),
    ("LOGIN_ERROR", 3002),
    ("LOGOUT", 3002),
    ("CODE_TO_TOKEN", 3002),
    ("REGISTER", 3001),
    ("UPDATE_PASSWORD", 3001),
    ("USER:CREATE", 3001),
    ("REALM_ROLE_MAPPING:CREATE", 3005),
    ("GROUP_MEMBERSHIP:CREATE", 3006),
    ("CLIENT:UPDATE", 3004),
    ("ldap:bind", 3002),
    ("radius:authorize", 3002),
    ("login_failed", 3002),
    ("unknown-producer", 0),
];

/// One record of the batch: its id, its expected class and time (`None` when malformed), and
/// its bytes.
type Record = (String, Option<(u16, i64)>, Vec<u8>);

/// Record `i` of the batch. Every 100th record is malformed (not JSON).
fn record(i: usize) -> Record {
    let id = format!("ev-{i:05}");
    if i % 100 == 99 {
        return (id, None, format!("not json {i}").into_bytes());
    }
    let (kind, class) = KINDS[i % KINDS.len()];
    let ms = (T0 + 10 * i as i64) * 1000;
    let ts = chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let v = match kind {
        "ldap:bind" => json!({"id": id, "service": "ldap", "method": "bind", "timestamp": ts,
            "success": true, "message": "bind succeeded", "username": "bob",
            "bind_dn": "uid=bob,ou=people,dc=example,dc=com"}),
        "radius:authorize" => json!({"id": id, "service": "radius", "method": "authorize",
            "timestamp": ts, "success": false, "message": "bad password", "username": "bob",
            "ipAddress": "198.51.100.20"}),
        "login_failed" => json!({"id": id, "type": "login_failed", "timestamp": ts,
            "ip": "203.0.113.30", "login": "dave", "error": "wrong_password"}),
        "unknown-producer" => json!({"id": id, "eventName": "SOMETHING_ELSE", "timestamp": ts}),
        admin if admin.contains(':') => {
            let (resource, op) = admin.split_once(':').unwrap();
            let path = match resource {
                "USER" => "users/u-1".to_string(),
                "REALM_ROLE_MAPPING" => "users/u-1/role-mappings/realm".to_string(),
                "GROUP_MEMBERSHIP" => "users/u-1/groups/g-1".to_string(),
                _ => "clients/c-1".to_string(),
            };
            json!({"timestamp": ts, "eventType": "admin-event", "event": {"id": id,
                "time": ms, "realmId": "r", "operationType": op, "resourceType": resource,
                "resourcePath": path, "authDetails": {"realmId": "master",
                "clientId": "security-admin-console", "userId": "a-1",
                "ipAddress": "203.0.113.9"}}})
        }
        user => json!({"timestamp": ts, "eventType": "user-event", "event": {"id": id,
            "time": ms, "type": user, "realmId": "r", "clientId": "account-console",
            "userId": "u-1", "ipAddress": "192.0.2.10",
            "details": {"auth_method": "openid-connect", "username": "alice"}}}),
    };
    (id, Some((class, ms)), format!("{v}\n").into_bytes())
}

/// Puts `records` with random partition keys, 500 per call.
async fn put_all(emu: &Emulator, stream: &str, records: &[Vec<u8>]) {
    let kinesis = emu.kinesis().await;
    for chunk in records.chunks(500) {
        let entries: Vec<PutRecordsRequestEntry> = chunk
            .iter()
            .map(|d| {
                PutRecordsRequestEntry::builder()
                    .data(Blob::new(d.clone()))
                    .partition_key(uuid::Uuid::new_v4().to_string())
                    .build()
                    .unwrap()
            })
            .collect();
        let resp = kinesis
            .put_records()
            .stream_name(stream)
            .set_records(Some(entries))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.failed_record_count(), Some(0));
    }
}

fn function_config(emu: &Emulator, extra: &[(&str, &str)]) -> FunctionConfig {
    let mut cfg = FunctionConfig::new(
        "authtrail-securitylake",
        bin_path("authtrail-securitylake").unwrap(),
    )
    .with_env(emu.env())
    .with_env([
        ("SECURITY_LAKE_BUCKET", LAKE),
        ("SECURITY_LAKE_STATE_BUCKET", WORK),
        ("SECURITY_LAKE_ACCOUNT_ID", ACCOUNT_ID),
    ])
    .with_env(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    .with_timeout(Duration::from_secs(120));
    cfg.memory_mb = 512;
    cfg.echo_logs = false;
    cfg
}

fn mapping(stream: &str) -> KinesisSourceConfig {
    let mut m = KinesisSourceConfig::new(stream);
    m.batch_size = 10_000;
    m.max_batching_window = Duration::from_secs(1);
    m.report_batch_item_failures = true;
    m.retry_backoff = Duration::from_millis(200);
    m
}

/// Keys and ETags of every object under `prefix`.
async fn listing(emu: &Emulator, bucket: &str, prefix: &str) -> BTreeMap<String, String> {
    let s3 = emu.s3().await;
    let mut out = BTreeMap::new();
    let mut token = None;
    loop {
        let resp = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        for o in resp.contents() {
            out.insert(
                o.key().unwrap().to_string(),
                o.e_tag().unwrap_or_default().to_string(),
            );
        }
        match resp.next_continuation_token() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    out
}

/// Downloads every object under `prefix` into `dir`, keeping its key as the path.
async fn download(emu: &Emulator, bucket: &str, prefix: &str, dir: &Path) -> Vec<String> {
    let s3 = emu.s3().await;
    let keys: Vec<String> = listing(emu, bucket, prefix).await.into_keys().collect();
    for key in &keys {
        let o = s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        let body = o.body.collect().await.unwrap().into_bytes();
        let path = dir.join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
    keys
}

/// The independent reader: pyarrow reads every `.parquet` file under the directory and prints,
/// per file, its key, row groups, codec, columns and the rows' `class_uid`, `metadata.uid` and
/// `time`.
const PYARROW_READER: &str = r#"
import json, os, sys
import pyarrow.parquet as pq
root = sys.argv[1]
out = []
for dirpath, _, files in os.walk(root):
    for name in sorted(files):
        if not name.endswith(".parquet"):
            continue
        path = os.path.join(dirpath, name)
        pf = pq.ParquetFile(path)
        table = pf.read()
        meta = table.column("metadata").to_pylist()
        out.append({
            "key": os.path.relpath(path, root),
            "row_groups": pf.metadata.num_row_groups,
            "codec": pf.metadata.row_group(0).column(0).compression,
            "columns": table.column_names,
            "class_uid": table.column("class_uid").to_pylist(),
            "uid": [m["uid"] if m else None for m in meta],
            "time": table.column("time").to_pylist(),
        })
print(json.dumps(out))
"#;

fn read_with_pyarrow(dir: &Path) -> Vec<Value> {
    let python = venv_bin("python");
    assert!(
        python.is_file(),
        "{} missing: run `make venv`",
        python.display()
    );
    let out = std::process::Command::new(python)
        .args(["-c", PYARROW_READER])
        .arg(dir)
        .output()
        .expect("run pyarrow");
    assert!(
        out.status.success(),
        "pyarrow: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("reader prints JSON")
}

/// `YYYYMMDD` of an epoch millisecond.
fn day_of(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y%m%d")
        .to_string()
}

/// Checks the objects pyarrow read against the batch: the partition layout, one class per
/// object matching its source, the event day of every row, time order, zstd, one row group,
/// and every good record exactly once.
fn assert_lake_holds_exactly(
    objects: &[Value],
    stream: &str,
    expected: &HashMap<String, (u16, i64)>,
) {
    let sources: HashMap<String, u16> = OcsfClass::ALL
        .iter()
        .map(|c| (format!("authtrail-{}", c.source_suffix()), c.uid()))
        .collect();
    let mut seen: HashMap<String, String> = HashMap::new();
    for o in objects {
        let key = o["key"].as_str().unwrap();
        let parts: Vec<&str> = key.split('/').collect();
        assert_eq!(parts.len(), 6, "{key}");
        assert_eq!(parts[0], "ext", "{key}");
        let class = sources[parts[1]];
        assert_eq!(parts[2], format!("region={REGION}"), "{key}");
        assert_eq!(parts[3], format!("accountId={ACCOUNT_ID}"), "{key}");
        let day = parts[4]
            .strip_prefix("eventDay=")
            .expect("eventDay partition");
        assert!(
            parts[5].starts_with(&format!("{stream}-shardId-")) && parts[5].ends_with(".parquet"),
            "{key}"
        );
        assert_eq!(o["row_groups"], 1, "{key}");
        assert_eq!(o["codec"], "ZSTD", "{key}");
        let times: Vec<i64> = o["time"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_i64().unwrap())
            .collect();
        assert!(
            times.windows(2).all(|w| w[0] <= w[1]),
            "{key}: rows in time order"
        );
        for ((uid, class_uid), time) in o["uid"]
            .as_array()
            .unwrap()
            .iter()
            .zip(o["class_uid"].as_array().unwrap())
            .zip(&times)
        {
            let uid = uid.as_str().expect("every row has metadata.uid");
            assert_eq!(class_uid.as_u64(), Some(u64::from(class)), "{key}: {uid}");
            let (want_class, want_time) = expected
                .get(uid)
                .unwrap_or_else(|| panic!("{key}: {uid} was never put (or is malformed)"));
            assert_eq!(*want_class, class, "{uid} in {key}");
            assert_eq!(*want_time, *time, "{uid}");
            assert_eq!(day_of(*time), day, "{uid} in {key}");
            if let Some(other) = seen.insert(uid.to_string(), key.to_string()) {
                panic!("{uid} stored twice: in {other} and {key}");
            }
        }
    }
    let missing: Vec<&String> = expected.keys().filter(|u| !seen.contains_key(*u)).collect();
    assert!(
        missing.is_empty(),
        "{} records missing: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_admin_and_foxpass_records_land_as_parquet_per_class_and_day_exactly_once_and_again_add_nothing()
 {
    let stream = "lake-e2e";
    let emu = Emulator::start().await.unwrap();
    emu.create_stream(stream, 2).await.unwrap();
    emu.create_bucket(LAKE).await.unwrap();
    emu.create_bucket(WORK).await.unwrap();
    let batch: Vec<Record> = (0..3000).map(record).collect();
    let data: Vec<Vec<u8>> = batch.iter().map(|(_, _, d)| d.clone()).collect();
    put_all(&emu, stream, &data).await;
    let expected: HashMap<String, (u16, i64)> = batch
        .iter()
        .filter_map(|(id, e, _)| e.map(|e| (id.clone(), e)))
        .collect();
    let malformed = batch.len() - expected.len();

    let function = Arc::new(
        LambdaFunction::start(function_config(&emu, &[]))
            .await
            .unwrap(),
    );
    let source =
        KinesisEventSource::new(&emu.sdk_config().await, mapping(stream), function.clone())
            .await
            .unwrap();
    let stats = source.drain().await.unwrap();
    assert_eq!(stats.total.records_processed, 3000, "{stats}");
    assert_eq!(
        stats.total.partial_failures + stats.total.function_errors,
        0,
        "{stats}"
    );

    let scratch = ScratchDir::new("security-lake").unwrap();
    let keys = download(&emu, LAKE, "ext/", scratch.path()).await;
    let objects = read_with_pyarrow(scratch.path());
    assert_eq!(objects.len(), keys.len(), "every object is a Parquet file");
    assert_lake_holds_exactly(&objects, stream, &expected);
    let classes: BTreeSet<u64> = objects
        .iter()
        .flat_map(|o| {
            o["class_uid"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_u64().unwrap())
        })
        .collect();
    assert_eq!(classes, BTreeSet::from([0, 3001, 3002, 3004, 3005, 3006]));
    let days: BTreeSet<&str> = keys.iter().map(|k| k.split('/').nth(4).unwrap()).collect();
    assert_eq!(
        days,
        BTreeSet::from(["eventDay=20250212", "eventDay=20250213"])
    );

    // Malformed records: in the work bucket with their reasons, never in the lake.
    let mut errors = 0;
    let s3 = emu.s3().await;
    for key in listing(&emu, WORK, "securitylake-errors/").await.keys() {
        let o = s3.get_object().bucket(WORK).key(key).send().await.unwrap();
        let body = o.body.collect().await.unwrap().into_bytes();
        for line in String::from_utf8(body.to_vec()).unwrap().lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            assert!(
                v["reason"].as_str().unwrap().starts_with("not valid JSON"),
                "{v}"
            );
            errors += 1;
        }
    }
    assert_eq!(errors, malformed);
    let summaries = function
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("wrote batch to security lake"))
        .count();
    assert_eq!(summaries as u64, stats.total.invocations);

    // The whole stream delivered again (a new mapping from TRIM_HORIZON): nothing new.
    let lake_before = listing(&emu, LAKE, "").await;
    let work_before = listing(&emu, WORK, "securitylake-errors/").await;
    let again = KinesisEventSource::new(&emu.sdk_config().await, mapping(stream), function.clone())
        .await
        .unwrap();
    let stats = again.drain().await.unwrap();
    assert_eq!(stats.total.records_processed, 3000, "{stats}");
    assert_eq!(listing(&emu, LAKE, "").await, lake_before);
    assert_eq!(
        listing(&emu, WORK, "securitylake-errors/").await,
        work_before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_configuration_fails_the_cold_start_naming_the_variable() {
    let emu = Emulator::start().await.unwrap();
    let function = LambdaFunction::start(function_config(
        &emu,
        &[("SECURITY_LAKE_ACCOUNT_ID", "not-an-account")],
    ))
    .await
    .unwrap();
    let inv = function.invoke("{\"Records\":[]}").await.unwrap();
    assert!(!inv.is_success());
    let logs = function.logs();
    assert!(logs.contains("SECURITY_LAKE_ACCOUNT_ID must be"), "{logs}");
}

// ---------------------------------------------------------------------------------------------
// cloudformation/security-lake.yaml
// ---------------------------------------------------------------------------------------------

/// The template as CloudFormation reads it (short-form tags expanded), via cfn-lint's decoder.
fn template_json() -> Value {
    let out = std::process::Command::new(venv_bin("python"))
        .arg(workspace_root().join("infra/scripts/cfn2json.py"))
        .arg(workspace_root().join("cloudformation/security-lake.yaml"))
        .output()
        .expect("run cfn2json.py (make venv)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Non-test Rust source of the function crate.
fn crate_source() -> String {
    let mut out = String::new();
    let dir = workspace_root().join("functions/securitylake/src");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("writer_tests.rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push_str(text.split("#[cfg(test)]").next().unwrap_or_default());
        }
    }
    out
}

#[test]
fn the_template_registers_one_source_per_ocsf_class_only_when_asked_and_sets_what_the_code_reads() {
    let t = template_json();
    let resources = t["Resources"].as_object().unwrap();
    assert_eq!(t["Parameters"]["RegisterCustomSource"]["Default"], "true");
    // One registered source per class the writer stores, with Security Lake's event class.
    let mut names = BTreeMap::new();
    for (id, r) in resources
        .iter()
        .filter(|(_, r)| r["Type"] == "Custom::SecurityLakeCustomLogSource")
    {
        assert_eq!(r["Condition"], "RegisterSources", "{id}");
        let suffix = r["Properties"]["SourceName"]["Fn::Sub"]
            .as_str()
            .unwrap()
            .strip_prefix("${SourceNamePrefix}-")
            .unwrap()
            .to_string();
        names.insert(suffix, r["Properties"]["EventClasses"].clone());
    }
    let want: BTreeMap<String, Value> = OcsfClass::ALL
        .iter()
        .map(|c| {
            let classes: Vec<&str> = c.security_lake_event_class().into_iter().collect();
            (c.source_suffix().to_string(), json!(classes))
        })
        .collect();
    assert_eq!(names, want);
    // Everything the registration needs exists only with it.
    for id in ["RegistrarFunction", "RegistrarRole", "RegistrarLogGroup"] {
        assert_eq!(resources[id]["Condition"], "RegisterSources", "{id}");
    }
    assert_eq!(
        resources["GlueCrawlerRole"]["Condition"],
        "CreateCrawlerRole"
    );
    // The mapping: at most one batch per shard every 5 minutes, up to 10,000 records.
    let m = &resources["SecurityLakeEventSourceMapping"]["Properties"];
    assert_eq!(m["MaximumBatchingWindowInSeconds"], 300);
    assert_eq!(m["BatchSize"], 10_000);
    assert_eq!(m["ParallelizationFactor"], 1);
    assert_eq!(
        m["FunctionResponseTypes"],
        json!(["ReportBatchItemFailures"])
    );
    assert_eq!(m["BisectBatchOnFunctionError"], true);
    assert!(m["DestinationConfig"]["OnFailure"]["Destination"].is_object());
    // Every variable the template sets is one the function reads.
    let source = crate_source();
    let vars = resources["SecurityLakeFunction"]["Properties"]["Environment"]["Variables"]
        .as_object()
        .unwrap();
    assert!(vars.len() >= 7);
    for var in vars.keys() {
        assert!(
            source.contains(&format!("\"{var}\"")),
            "{var} is never read"
        );
    }
}

#[test]
fn the_writer_follows_the_deployment_standard_of_every_function() {
    let t = template_json();
    let r = &t["Resources"];
    let p = &r["SecurityLakeFunction"]["Properties"];
    assert_eq!(p["Runtime"], "provided.al2023");
    assert_eq!(p["Handler"], "bootstrap");
    assert_eq!(p["Architectures"], json!([{"Ref": "Architecture"}]));
    assert_eq!(t["Parameters"]["Architecture"]["Default"], "arm64");
    assert_eq!(p["Code"]["S3Bucket"], json!({"Ref": "CodeBucket"}));
    assert_eq!(p["Code"]["S3Key"], json!({"Ref": "SecurityLakeCodeKey"}));
    assert!(p["MemorySize"]["Ref"].is_string() && p["Timeout"]["Ref"].is_string());
    let group = p["LoggingConfig"]["LogGroup"]["Ref"].as_str().unwrap();
    assert_eq!(
        r[group]["Properties"]["RetentionInDays"],
        json!({"Ref": "LogRetentionInDays"})
    );
    let alarms: BTreeSet<&str> = r
        .as_object()
        .unwrap()
        .values()
        .filter(|a| a["Type"] == "AWS::CloudWatch::Alarm")
        .filter(|a| {
            a["Properties"]["Dimensions"][0]["Value"] == json!({"Ref": "SecurityLakeFunction"})
        })
        .map(|a| a["Properties"]["MetricName"].as_str().unwrap())
        .collect();
    assert_eq!(alarms, BTreeSet::from(["Errors", "IteratorAge"]));
    let m = &r["SecurityLakeEventSourceMapping"]["Properties"];
    for finite in ["MaximumRetryAttempts", "MaximumRecordAgeInSeconds"] {
        let param = m[finite]["Ref"].as_str().unwrap();
        assert!(
            t["Parameters"][param]["MinValue"]
                .as_i64()
                .is_some_and(|v| v >= 0),
            "{finite} must not allow -1 (infinite)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_without_registration_creates_the_writer_its_mapping_and_a_grant_limited_to_its_sources()
 {
    let emu = Emulator::start().await.unwrap();
    let stream_arn = emu.create_stream("lake-stack", 1).await.unwrap();
    emu.create_bucket(CODE_BUCKET).await.unwrap();
    let s3 = emu.s3().await;
    s3.put_object()
        .bucket(CODE_BUCKET)
        .key("authtrail/0.1.0/authtrail-securitylake.zip")
        .body(
            b"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"
                .to_vec()
                .into(),
        )
        .send()
        .await
        .unwrap();
    let sdk = emu.sdk_config().await;
    let cfn = aws_sdk_cloudformation::Client::new(&sdk);
    let body = std::fs::read_to_string(workspace_root().join("cloudformation/security-lake.yaml"))
        .unwrap();
    let mut req = cfn
        .create_stack()
        .stack_name("lake")
        .template_body(body)
        .capabilities(Capability::CapabilityIam);
    for (k, v) in [
        ("StreamArn", stream_arn.as_str()),
        ("SecurityLakeBucketName", LAKE),
        ("RegisterCustomSource", "false"),
        ("CodeBucket", CODE_BUCKET),
    ] {
        req = req.parameters(
            Parameter::builder()
                .parameter_key(k)
                .parameter_value(v)
                .build(),
        );
    }
    req.send().await.unwrap();
    let stack = cfn
        .describe_stacks()
        .stack_name("lake")
        .send()
        .await
        .unwrap()
        .stacks()[0]
        .clone();
    assert_eq!(
        stack.stack_status(),
        Some(&StackStatus::CreateComplete),
        "{:?}",
        stack.stack_status_reason()
    );
    let outputs: HashMap<String, String> = stack
        .outputs()
        .iter()
        .map(|o| {
            (
                o.output_key().unwrap().to_string(),
                o.output_value().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let resources: HashMap<String, String> = cfn
        .list_stack_resources()
        .stack_name("lake")
        .send()
        .await
        .unwrap()
        .stack_resource_summaries()
        .iter()
        .filter_map(|r| {
            Some((
                r.logical_resource_id()?.to_string(),
                r.physical_resource_id()?.to_string(),
            ))
        })
        .collect();
    for absent in [
        "RegistrarFunction",
        "AuthenticationSource",
        "BaseEventSource",
        "GlueCrawlerRole",
    ] {
        assert!(
            !resources.contains_key(absent),
            "{absent} created without registration"
        );
    }
    assert_eq!(
        outputs["SourceNames"],
        "authtrail-auth,authtrail-account,authtrail-entity,authtrail-access,authtrail-group,authtrail-base"
    );

    let lambda = aws_sdk_lambda::Client::new(&sdk);
    let name = &outputs["SecurityLakeFunctionName"];
    let f = lambda
        .get_function_configuration()
        .function_name(name)
        .send()
        .await
        .unwrap();
    assert_eq!(f.memory_size(), Some(512));
    assert_eq!(f.timeout(), Some(300));
    let env: BTreeMap<String, String> = f
        .environment()
        .and_then(|e| e.variables())
        .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let work = &outputs["WorkBucketName"];
    assert_eq!(
        env,
        BTreeMap::from([
            ("SECURITY_LAKE_BUCKET".to_string(), LAKE.to_string()),
            ("SECURITY_LAKE_SOURCE_PREFIX".into(), "authtrail".into()),
            ("SECURITY_LAKE_REGION".into(), REGION.into()),
            ("SECURITY_LAKE_ACCOUNT_ID".into(), ACCOUNT_ID.into()),
            ("SECURITY_LAKE_STATE_BUCKET".into(), work.clone()),
            (
                "SECURITY_LAKE_STATE_PREFIX".into(),
                "securitylake-state/".into()
            ),
            (
                "SECURITY_LAKE_ERROR_PREFIX".into(),
                "securitylake-errors/".into()
            ),
        ])
    );
    let mappings = lambda
        .list_event_source_mappings()
        .function_name(name)
        .send()
        .await
        .unwrap();
    let m = &mappings.event_source_mappings()[0];
    assert_eq!(m.event_source_arn(), Some(stream_arn.as_str()));
    assert_eq!(m.batch_size(), Some(10_000));
    assert_eq!(m.maximum_batching_window_in_seconds(), Some(300));
    assert_eq!(m.bisect_batch_on_function_error(), Some(true));
    assert_eq!(m.maximum_retry_attempts(), Some(10));

    // The writer's grant of the Security Lake bucket covers its own sources only.
    let iam = aws_sdk_iam::Client::new(&sdk);
    let role = &resources["SecurityLakeRole"];
    let mut grant = None;
    for policy in iam
        .list_role_policies()
        .role_name(role)
        .send()
        .await
        .unwrap()
        .policy_names()
    {
        let doc = iam
            .get_role_policy()
            .role_name(role)
            .policy_name(policy)
            .send()
            .await
            .unwrap();
        let text = doc.policy_document().to_string();
        let lake_arn = format!("arn:aws:s3:::{LAKE}/ext/authtrail-*");
        if text.contains(&lake_arn) {
            grant = Some(text.matches("arn:aws:s3:::").count());
            assert!(text.contains("WriteCustomSources"), "{text}");
            assert!(!text.contains(&format!("arn:aws:s3:::{LAKE}/*")), "{text}");
            assert!(!text.contains(&format!("arn:aws:s3:::{LAKE}\"")), "{text}");
        }
    }
    assert!(
        grant.is_some(),
        "no statement grants the custom sources' prefix"
    );

    // The real binary starts with the environment the stack gives it.
    let mut cfg = FunctionConfig::new(
        "cfn-securitylake",
        bin_path("authtrail-securitylake").unwrap(),
    )
    .with_env(emu.env())
    .with_env(env.clone())
    .with_timeout(Duration::from_secs(30));
    cfg.inherit_env = false;
    cfg.echo_logs = false;
    let f = LambdaFunction::start(cfg).await.unwrap();
    let inv = f.invoke_json(&json!({"Records": []})).await.unwrap();
    let logs = f.logs();
    f.shutdown().await;
    assert!(
        !matches!(inv.outcome, Outcome::InitError { .. }),
        "{:?}\n{logs}",
        inv.outcome
    );
    assert!(inv.is_success(), "{:?}\n{logs}", inv.outcome);
}
