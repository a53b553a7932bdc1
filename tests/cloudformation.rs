//! The CloudFormation templates in `cloudformation/`, held against the emulator and the code.
//!
//! - Every template is created on moto's CloudFormation and what moto builds is checked: stack
//!   status, outputs, the writer role's trust policy (principal account, `sts:ExternalId`), the
//!   exact actions of every role policy, the functions' settings and environment, and the event
//!   source mappings. moto skips `AWS::SecretsManager::Secret`, `AWS::S3::BucketPolicy`,
//!   `AWS::CloudWatch::Alarm`, `AWS::SQS::QueuePolicy` and `AWS::Lambda::EventInvokeConfig`
//!   (with a warning, leaving their `Ref`s empty), ignores `StreamEncryption`/`StreamModeDetails`
//!   on streams and `Architectures`/`LoggingConfig` on functions: those are covered by cfn-lint
//!   and checkov (`make lint`) and by the static checks below, not here.
//! - Templates and code agree: every environment variable a template sets is one its function
//!   reads; every variable a function requires is set (the real binary starts under the local
//!   Lambda runner with the environment moto resolved for it and must not fail at init); every
//!   event source mapping of a function that returns batch item failures sets
//!   `ReportBatchItemFailures`, finite retries and record age, bisection and an on-failure
//!   destination; the forwarder's mapping keeps what it gives up on (S3 destination, retries
//!   bounded by the record age), its spool prefix is readable, writable and listable, a schedule
//!   invokes it every minute for redrive, and the spool's aggregate metrics have alarms.
//!
//! Templates are read as JSON through cfn-lint's decoder (`infra/scripts/cfn2json.py`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use authtrail_harness::{ACCOUNT_ID, Emulator, REGION, bin_path, venv_bin, workspace_root};
use authtrail_runner::{FunctionConfig, LambdaFunction, Outcome};
use aws_sdk_cloudformation::types::{Capability, Parameter, StackStatus};
use serde_json::{Value, json};

const CODE_BUCKET: &str = "authtrail-code";
const TEMPLATES: &[&str] = &[
    "kinesis-stream.yaml",
    "s3-archive.yaml",
    "siem-forwarder.yaml",
    "mpas-producer.yaml",
    "pipeline.yaml",
];
const STDOUT_FORWARDER_CONFIG: &str = r#"{"emitters":[{"name":"out","type":"stdout"}]}"#;

// ---------------------------------------------------------------------------------------------
// Helpers: templates, stacks, IAM documents
// ---------------------------------------------------------------------------------------------

fn template_path(name: &str) -> PathBuf {
    workspace_root().join("cloudformation").join(name)
}

/// The template as CloudFormation reads it (short-form tags expanded), via cfn-lint's decoder.
fn template_json(name: &str) -> Value {
    let python = venv_bin("python");
    assert!(
        python.is_file(),
        "{} missing: run `make venv`",
        python.display()
    );
    let out = std::process::Command::new(&python)
        .arg(workspace_root().join("infra/scripts/cfn2json.py"))
        .arg(template_path(name))
        .output()
        .expect("run cfn2json.py");
    assert!(
        out.status.success(),
        "cfn2json.py {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cfn2json.py prints JSON")
}

/// Which function crate a template's `AWS::Lambda::Function` runs, from its code key parameter.
fn function_crate(resource: &Value) -> &'static str {
    let key = resource["Properties"]["Code"]["S3Key"]["Ref"]
        .as_str()
        .expect("Code.S3Key is a Ref to a parameter");
    match key {
        "ArchiverCodeKey" => "archiver",
        "ForwarderCodeKey" => "forwarder",
        "ProducerCodeKey" => "producer",
        other => panic!("unknown code key parameter {other}"),
    }
}

/// Resources of one type in a template, by logical id.
/// The default of the template parameter a resource property refers to (`{"Ref": ...}`).
fn parameter_default(template: &Value, properties: &Value, key: &str, name: &str) -> u64 {
    let param = properties[key]["Ref"]
        .as_str()
        .unwrap_or_else(|| panic!("{name}: {key}"));
    template["Parameters"][param]["Default"]
        .as_u64()
        .unwrap_or_else(|| panic!("{name}: {param} has no numeric default"))
}

fn resources_of<'a>(template: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    template["Resources"]
        .as_object()
        .expect("Resources")
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .map(|(id, r)| (id.as_str(), r))
        .collect()
}

/// Non-test Rust source of a function crate: each file up to its first `#[cfg(test)]`.
fn crate_source(krate: &str) -> String {
    fn walk(dir: &Path, out: &mut String) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read src dir")
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read source");
                let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                out.push_str(code);
                out.push('\n');
            }
        }
    }
    let mut out = String::new();
    walk(
        &workspace_root().join("functions").join(krate).join("src"),
        &mut out,
    );
    out
}

/// IAM returns policy documents URL-encoded (RFC 3986). moto does so for trust policies, but
/// returns the inline policies that its CloudFormation created as a Python dict literal
/// (`{'Version': ...}`): those are read with Python's `ast.literal_eval`.
fn decode_policy(doc: &str) -> Value {
    if let Ok(v) = serde_json::from_str(doc) {
        return v;
    }
    if doc.starts_with("{'") {
        use std::io::Write as _;
        let mut child = std::process::Command::new(venv_bin("python"))
            .args([
                "-c",
                "import ast, json, sys; print(json.dumps(ast.literal_eval(sys.stdin.read())))",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run python");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(doc.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "not a Python literal: {doc}");
        return serde_json::from_slice(&out.stdout).expect("policy document is JSON");
    }
    let bytes = doc.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
            i += 1;
        }
    }
    serde_json::from_slice(&out).expect("policy document is JSON")
}

fn as_list(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().expect("string").to_string())
            .collect(),
        Value::Null => vec![],
        other => panic!("expected a string or list, got {other}"),
    }
}

/// Statement Sid -> (actions, resources) of a policy document.
fn statements(doc: &Value) -> BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> {
    let list = match &doc["Statement"] {
        Value::Array(a) => a.clone(),
        one => vec![one.clone()],
    };
    // moto's CloudFormation leaves `Fn::If [.., !Ref AWS::NoValue]` list items as nulls (AWS
    // drops them), and returns `Fn::GetAtt LogGroup.Arn` without the `:*` that AWS appends.
    let unify = |r: String| match r.strip_suffix(":*") {
        Some(base) if r.starts_with("arn:aws:logs:") => base.to_string(),
        _ => r,
    };
    list.iter()
        .filter(|s| !s.is_null())
        .map(|s| {
            let sid = s["Sid"]
                .as_str()
                .expect("every statement has a Sid")
                .to_string();
            assert_eq!(s["Effect"], "Allow", "{sid}");
            (
                sid,
                (
                    as_list(&s["Action"]).into_iter().collect(),
                    as_list(&s["Resource"]).into_iter().map(unify).collect(),
                ),
            )
        })
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

struct Aws {
    emu: Emulator,
    cfn: aws_sdk_cloudformation::Client,
    iam: aws_sdk_iam::Client,
    lambda: aws_sdk_lambda::Client,
    s3: aws_sdk_s3::Client,
}

struct Stack {
    outputs: HashMap<String, String>,
    /// logical id -> physical id
    resources: HashMap<String, String>,
}

impl Stack {
    fn output(&self, key: &str) -> &str {
        self.outputs
            .get(key)
            .unwrap_or_else(|| panic!("output {key} missing: {:?}", self.outputs))
    }
    fn physical(&self, logical: &str) -> &str {
        self.resources
            .get(logical)
            .unwrap_or_else(|| panic!("resource {logical} missing: {:?}", self.resources))
    }
}

impl Aws {
    /// Starts moto and uploads a stand-in zip for every function key the templates default to
    /// (moto checks that `Code.S3Bucket/S3Key` exists; it never runs the code).
    async fn start() -> Self {
        let emu = Emulator::start().await.expect("start moto");
        let sdk = emu.sdk_config().await;
        let aws = Self {
            cfn: aws_sdk_cloudformation::Client::new(&sdk),
            iam: aws_sdk_iam::Client::new(&sdk),
            lambda: aws_sdk_lambda::Client::new(&sdk),
            s3: emu.s3().await,
            emu,
        };
        aws.emu.create_bucket(CODE_BUCKET).await.unwrap();
        for bin in [
            "authtrail-archiver",
            "authtrail-forwarder",
            "authtrail-producer",
        ] {
            aws.s3
                .put_object()
                .bucket(CODE_BUCKET)
                .key(format!("authtrail/0.1.0/{bin}.zip"))
                .body(
                    b"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"
                        .to_vec()
                        .into(),
                )
                .send()
                .await
                .unwrap();
        }
        aws
    }

    async fn create_stack(&self, name: &str, template: &str, params: &[(&str, &str)]) -> Stack {
        let body = std::fs::read_to_string(template_path(template)).unwrap();
        let mut req = self
            .cfn
            .create_stack()
            .stack_name(name)
            .template_body(body)
            .capabilities(Capability::CapabilityIam);
        for (k, v) in params {
            req = req.parameters(
                Parameter::builder()
                    .parameter_key(*k)
                    .parameter_value(*v)
                    .build(),
            );
        }
        req.send()
            .await
            .unwrap_or_else(|e| panic!("CreateStack {template}: {e:?}"));
        let desc = self
            .cfn
            .describe_stacks()
            .stack_name(name)
            .send()
            .await
            .unwrap();
        let stack = &desc.stacks()[0];
        assert_eq!(
            stack.stack_status(),
            Some(&StackStatus::CreateComplete),
            "{template}: {:?}",
            stack.stack_status_reason()
        );
        let outputs = stack
            .outputs()
            .iter()
            .map(|o| {
                (
                    o.output_key().unwrap().to_string(),
                    o.output_value().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let res = self
            .cfn
            .list_stack_resources()
            .stack_name(name)
            .send()
            .await
            .unwrap();
        let resources = res
            .stack_resource_summaries()
            .iter()
            .filter_map(|r| {
                Some((
                    r.logical_resource_id()?.to_string(),
                    r.physical_resource_id()?.to_string(),
                ))
            })
            .collect();
        Stack { outputs, resources }
    }

    async fn trust_policy(&self, role: &str) -> Value {
        let out = self.iam.get_role().role_name(role).send().await.unwrap();
        decode_policy(out.role().unwrap().assume_role_policy_document().unwrap())
    }

    /// The role's inline policies merged: Sid -> (actions, resources).
    async fn role_statements(
        &self,
        role: &str,
    ) -> BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> {
        let names = self
            .iam
            .list_role_policies()
            .role_name(role)
            .send()
            .await
            .unwrap();
        let mut all = BTreeMap::new();
        for name in names.policy_names() {
            let doc = self
                .iam
                .get_role_policy()
                .role_name(role)
                .policy_name(name)
                .send()
                .await
                .unwrap();
            all.extend(statements(&decode_policy(doc.policy_document())));
        }
        all
    }

    async fn function(
        &self,
        name: &str,
    ) -> aws_sdk_lambda::operation::get_function_configuration::GetFunctionConfigurationOutput {
        self.lambda
            .get_function_configuration()
            .function_name(name)
            .send()
            .await
            .unwrap()
    }

    async fn function_env(&self, name: &str) -> BTreeMap<String, String> {
        self.function(name)
            .await
            .environment()
            .and_then(|e| e.variables())
            .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    async fn mapping(
        &self,
        function: &str,
    ) -> aws_sdk_lambda::types::EventSourceMappingConfiguration {
        let out = self
            .lambda
            .list_event_source_mappings()
            .function_name(function)
            .send()
            .await
            .unwrap();
        assert_eq!(out.event_source_mappings().len(), 1, "{function}");
        out.event_source_mappings()[0].clone()
    }

    async fn create_secret(&self, name: &str, value: &str) -> String {
        let sm = aws_sdk_secretsmanager::Client::new(&self.emu.sdk_config().await);
        sm.create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
            .unwrap()
            .arn()
            .unwrap()
            .to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// Shared assertions
// ---------------------------------------------------------------------------------------------

/// The four values a writer needs, and the role's trust and permissions, exactly.
async fn assert_writer_access(aws: &Aws, stack: &Stack, stream: &str, writer: &str, ext: &str) {
    assert_eq!(stack.output("AwsAccountId"), ACCOUNT_ID);
    assert_eq!(stack.output("AwsRegion"), REGION);
    assert_eq!(stack.output("KinesisStreamName"), stream);
    let role = stack.output("IamRoleName");
    assert_eq!(
        stack.output("RoleArn"),
        format!("arn:aws:iam::{ACCOUNT_ID}:role/{role}")
    );
    let summary = aws
        .emu
        .kinesis()
        .await
        .describe_stream_summary()
        .stream_name(stream)
        .send()
        .await
        .unwrap();
    let stream_arn = summary.stream_description_summary().unwrap().stream_arn();
    assert_eq!(stack.output("StreamArn"), stream_arn);

    let trust = aws.trust_policy(role).await;
    let stmts = trust["Statement"].as_array().unwrap();
    assert_eq!(stmts.len(), 1, "{trust}");
    let s = &stmts[0];
    assert_eq!(s["Effect"], "Allow");
    assert_eq!(as_list(&s["Action"]), vec!["sts:AssumeRole"]);
    assert_eq!(
        as_list(&s["Principal"]["AWS"]),
        vec![format!("arn:aws:iam::{writer}:root")]
    );
    assert_eq!(
        s["Condition"],
        json!({"StringEquals": {"sts:ExternalId": ext}}),
        "only the External ID condition, no MFA condition"
    );

    let perms = aws.role_statements(role).await;
    let key = stack.output("StreamKeyArn");
    assert_eq!(
        perms,
        BTreeMap::from([
            (
                "WriteRecords".to_string(),
                (
                    set(&[
                        "kinesis:DescribeStream",
                        "kinesis:PutRecord",
                        "kinesis:PutRecords"
                    ]),
                    set(&[stream_arn])
                )
            ),
            (
                "EncryptRecords".to_string(),
                (set(&["kms:GenerateDataKey"]), set(&[key]))
            ),
        ])
    );
}

const STREAM_READ: &[&str] = &[
    "kinesis:DescribeStream",
    "kinesis:DescribeStreamSummary",
    "kinesis:GetRecords",
    "kinesis:GetShardIterator",
    "kinesis:ListShards",
    "kinesis:SubscribeToShard",
];

fn log_group_arn(group: &str) -> String {
    format!("arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:{group}")
}

fn queue_arn(url: &str) -> String {
    format!(
        "arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{}",
        url.rsplit('/').next().unwrap()
    )
}

/// The archiver's function, mapping and role as s3-archive.yaml and pipeline.yaml build them.
async fn assert_archiver(aws: &Aws, stack: &Stack, bucket: &str) {
    let name = stack.output("ArchiverFunctionName");
    let f = aws.function(name).await;
    assert_eq!(f.runtime().map(|r| r.as_str()), Some("provided.al2023"));
    assert_eq!(f.handler(), Some("bootstrap"));
    assert_eq!(f.memory_size(), Some(256));
    assert_eq!(f.timeout(), Some(120));
    assert_eq!(
        aws.function_env(name).await,
        BTreeMap::from([
            ("ARCHIVE_BUCKET".into(), bucket.to_string()),
            ("ARCHIVE_PREFIX".into(), "raw/".into()),
            ("ARCHIVE_ERROR_PREFIX".into(), "errors/".into()),
            ("ARCHIVE_STATE_PREFIX".into(), "archiver-state/".into()),
            ("ARCHIVE_COMPRESSION".into(), "gzip".into()),
            (
                "ARCHIVE_DIGEST_KEY_ID".into(),
                stack.output("DigestKeyArn").to_string()
            ),
            ("ARCHIVE_DIGEST_PREFIX".into(), "digests/".into()),
            ("ARCHIVE_DIGEST_SETTLE_SECONDS".into(), "600".into()),
        ])
    );

    let m = aws.mapping(name).await;
    assert_eq!(m.event_source_arn(), Some(stack.output("StreamArn")));
    assert_eq!(m.batch_size(), Some(10_000));
    assert_eq!(m.maximum_batching_window_in_seconds(), Some(60));
    assert_eq!(
        m.function_response_types()
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>(),
        vec!["ReportBatchItemFailures"]
    );
    assert_eq!(m.bisect_batch_on_function_error(), Some(true));
    // Retried until the records would leave the stream: the archive never skips a batch.
    assert_eq!(m.maximum_retry_attempts(), Some(10_000));
    assert_eq!(m.maximum_record_age_in_seconds(), Some(86_400));
    let failure_queue = queue_arn(stack.physical("ArchiverFailureQueue"));
    assert_eq!(
        m.destination_config()
            .and_then(|d| d.on_failure())
            .and_then(|o| o.destination()),
        Some(failure_queue.as_str())
    );

    let role = stack.physical("ArchiverRole");
    let trust = aws.trust_policy(role).await;
    assert_eq!(
        trust["Statement"][0]["Principal"],
        json!({"Service": "lambda.amazonaws.com"})
    );
    let b = format!("arn:aws:s3:::{bucket}");
    assert_eq!(
        aws.role_statements(role).await,
        BTreeMap::from([
            (
                "WriteOwnLogs".to_string(),
                (
                    set(&["logs:CreateLogStream", "logs:PutLogEvents"]),
                    set(&[&log_group_arn(stack.physical("ArchiverLogGroup"))])
                )
            ),
            (
                "ReadStream".to_string(),
                (set(STREAM_READ), set(&[stack.output("StreamArn")]))
            ),
            (
                "DecryptStream".to_string(),
                (set(&["kms:Decrypt"]), set(&[stack.output("StreamKeyArn")]))
            ),
            (
                "ReadAndWriteArchiveObjects".to_string(),
                (
                    set(&["s3:GetObject", "s3:PutObject"]),
                    set(&[
                        &format!("{b}/raw/*"),
                        &format!("{b}/errors/*"),
                        &format!("{b}/archiver-state/*"),
                        &format!("{b}/digests/*")
                    ])
                )
            ),
            (
                "MissingObjectsAnswer404Not403".to_string(),
                (set(&["s3:ListBucket"]), set(&[&b]))
            ),
            (
                "ReportFailedBatches".to_string(),
                (set(&["sqs:SendMessage"]), set(&[&failure_queue]))
            ),
        ])
    );
}

/// The forwarder's function, mapping and role (without optional secrets or Firehose).
async fn assert_forwarder(aws: &Aws, stack: &Stack, stream_arn: &str, key_arn: Option<&str>) {
    let name = stack.output("ForwarderFunctionName");
    let dlq = stack.output("DeadLetterBucketName");
    let f = aws.function(name).await;
    assert_eq!(f.runtime().map(|r| r.as_str()), Some("provided.al2023"));
    assert_eq!(f.memory_size(), Some(256));
    assert_eq!(f.timeout(), Some(60));
    assert_eq!(
        aws.function_env(name).await,
        BTreeMap::from([
            ("FORWARDER_CONFIG".into(), STDOUT_FORWARDER_CONFIG.into()),
            ("DLQ_BUCKET".into(), dlq.to_string()),
            ("DLQ_PREFIX".into(), "dlq/".into()),
            ("SPOOL_PREFIX".into(), "spool/".into()),
        ])
    );
    let m = aws.mapping(name).await;
    assert_eq!(m.event_source_arn(), Some(stream_arn));
    assert_eq!(m.batch_size(), Some(1000));
    assert_eq!(m.maximum_batching_window_in_seconds(), Some(1));
    assert_eq!(
        m.function_response_types()
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>(),
        vec!["ReportBatchItemFailures"]
    );
    assert_eq!(m.bisect_batch_on_function_error(), Some(true));
    // Only a failed spool write fails a batch: retry until the record ages out (a day, the
    // stream's default retention), then keep the whole batch in the dead-letter bucket.
    assert_eq!(m.maximum_retry_attempts(), Some(10_000));
    assert_eq!(m.maximum_record_age_in_seconds(), Some(86_400));
    let dlq_arn = format!("arn:aws:s3:::{dlq}");
    assert_eq!(
        m.destination_config()
            .and_then(|d| d.on_failure())
            .and_then(|o| o.destination()),
        Some(dlq_arn.as_str())
    );

    let mut expected = BTreeMap::from([
        (
            "WriteOwnLogs".to_string(),
            (
                set(&["logs:CreateLogStream", "logs:PutLogEvents"]),
                set(&[&log_group_arn(stack.physical("ForwarderLogGroup"))]),
            ),
        ),
        (
            "ReadStream".to_string(),
            (set(STREAM_READ), set(&[stream_arn])),
        ),
        (
            "WriteDeadLetters".to_string(),
            (
                set(&["s3:PutObject"]),
                set(&[&format!("arn:aws:s3:::{dlq}/dlq/*")]),
            ),
        ),
        (
            "Spool".to_string(),
            (
                set(&["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]),
                set(&[&format!("arn:aws:s3:::{dlq}/spool/*")]),
            ),
        ),
        (
            "ListDeadLetterBucket".to_string(),
            (set(&["s3:ListBucket"]), set(&[&dlq_arn])),
        ),
        (
            "ReportFailedBatches".to_string(),
            (
                set(&["s3:PutObject"]),
                set(&[&format!("arn:aws:s3:::{dlq}/aws/lambda/*")]),
            ),
        ),
    ]);
    if let Some(key) = key_arn {
        expected.insert(
            "DecryptStream".to_string(),
            (set(&["kms:Decrypt"]), set(&[key])),
        );
    }
    let role = stack.physical("ForwarderRole");
    let got = aws.role_statements(role).await;
    for (sid, want) in &expected {
        assert_eq!(got.get(sid), Some(want), "{sid}");
    }
    let extra: Vec<_> = got.keys().filter(|k| !expected.contains_key(*k)).collect();
    assert!(
        extra
            .iter()
            .all(|k| ["ReadReferencedSecrets", "WriteFirehose"].contains(&k.as_str())),
        "unexpected statements {extra:?}"
    );
}

/// The producer's function and role (credentials from an existing secret).
async fn assert_producer(
    aws: &Aws,
    stack: &Stack,
    stream_arn: &str,
    key_arn: Option<&str>,
    secret_arn: &str,
) {
    let name = stack.output("ProducerFunctionName");
    let bucket = stack.output("CheckpointBucketName");
    let f = aws.function(name).await;
    assert_eq!(f.runtime().map(|r| r.as_str()), Some("provided.al2023"));
    assert_eq!(f.handler(), Some("bootstrap"));
    assert_eq!(f.memory_size(), Some(256));
    assert_eq!(f.timeout(), Some(120));
    let concurrency = aws
        .lambda
        .get_function_concurrency()
        .function_name(name)
        .send()
        .await
        .unwrap();
    assert_eq!(concurrency.reserved_concurrent_executions(), Some(1));
    assert_eq!(
        aws.function_env(name).await,
        BTreeMap::from([
            ("MPAS_BASE_URL".into(), "http://127.0.0.1:9".into()),
            ("MPAS_REALM".into(), "demo".into()),
            ("MPAS_START_FROM".into(), "oldest".into()),
            ("MPAS_CREDENTIALS_SECRET_ARN".into(), secret_arn.into()),
            ("KINESIS_STREAM_NAME".into(), stream_arn.into()),
            ("CHECKPOINT_BUCKET".into(), bucket.into()),
            ("REDACT_USER_EVENTS".into(), "true".into()),
            ("REDACT_ADMIN_EVENTS".into(), "true".into()),
            ("REDACTION_MODE".into(), "mask".into()),
        ])
    );
    assert!(
        stack.resources.contains_key("ProducerSchedule"),
        "the every-minute rule exists"
    );
    assert!(
        aws.lambda
            .list_event_source_mappings()
            .function_name(name)
            .send()
            .await
            .unwrap()
            .event_source_mappings()
            .is_empty(),
        "the producer is scheduled, not stream-triggered"
    );

    let b = format!("arn:aws:s3:::{bucket}");
    let mut expected = BTreeMap::from([
        (
            "WriteOwnLogs".to_string(),
            (
                set(&["logs:CreateLogStream", "logs:PutLogEvents"]),
                set(&[&log_group_arn(stack.physical("ProducerLogGroup"))]),
            ),
        ),
        (
            "WriteStream".to_string(),
            (set(&["kinesis:PutRecords"]), set(&[stream_arn])),
        ),
        (
            "ReadBackStream".to_string(),
            (
                set(&[
                    "kinesis:DescribeStreamSummary",
                    "kinesis:GetRecords",
                    "kinesis:GetShardIterator",
                    "kinesis:ListShards",
                ]),
                set(&[stream_arn]),
            ),
        ),
        (
            "ReadAndWriteCursor".to_string(),
            (
                set(&["s3:GetObject", "s3:PutObject"]),
                set(&[&format!("{b}/*")]),
            ),
        ),
        (
            "MissingCursorAnswers404Not403".to_string(),
            (set(&["s3:ListBucket"]), set(&[&b])),
        ),
        (
            "ReadCredentials".to_string(),
            (set(&["secretsmanager:GetSecretValue"]), set(&[secret_arn])),
        ),
    ]);
    if let Some(key) = key_arn {
        expected.insert(
            "EncryptRecords".to_string(),
            (set(&["kms:GenerateDataKey"]), set(&[key])),
        );
        expected.insert(
            "DecryptReadBack".to_string(),
            (set(&["kms:Decrypt"]), set(&[key])),
        );
    }
    assert_eq!(
        aws.role_statements(stack.physical("ProducerRole")).await,
        expected
    );
}

/// An S3 bucket exists and has default encryption.
async fn assert_encrypted_bucket(aws: &Aws, bucket: &str) {
    aws.s3.head_bucket().bucket(bucket).send().await.unwrap();
    let enc = aws
        .s3
        .get_bucket_encryption()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    let rules = enc.server_side_encryption_configuration().unwrap().rules();
    assert!(!rules.is_empty(), "{bucket} has default encryption");
}

const CREDENTIALS_JSON: &str = r#"{"clientId":"authtrail","clientSecret":"not-a-real-secret"}"#;

// ---------------------------------------------------------------------------------------------
// Stacks on the emulator
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn kinesis_stream_stack_lets_only_the_writer_account_with_the_external_id_put_records() {
    let aws = Aws::start().await;
    let stack = aws
        .create_stack(
            "logs",
            "kinesis-stream.yaml",
            &[
                ("StreamName", "customer-logs"),
                ("ShardCount", "2"),
                ("WriterAccountId", "210987654321"),
                ("ExternalId", "authtrail-ext-42-0123456789abcdef0123"),
            ],
        )
        .await;
    assert_writer_access(
        &aws,
        &stack,
        "customer-logs",
        "210987654321",
        "authtrail-ext-42-0123456789abcdef0123",
    )
    .await;
    let shards = aws
        .emu
        .kinesis()
        .await
        .describe_stream_summary()
        .stream_name("customer-logs")
        .send()
        .await
        .unwrap()
        .stream_description_summary()
        .unwrap()
        .open_shard_count();
    assert_eq!(shards, 2);
}

#[tokio::test]
async fn kinesis_stream_stack_defaults_the_writer_to_its_own_account() {
    let aws = Aws::start().await;
    let stack = aws
        .create_stack(
            "logs",
            "kinesis-stream.yaml",
            &[("ExternalId", "own-account-ext-0123456789abcdef0123")],
        )
        .await;
    assert_writer_access(
        &aws,
        &stack,
        "authtrail-events",
        ACCOUNT_ID,
        "own-account-ext-0123456789abcdef0123",
    )
    .await;
}

#[tokio::test]
async fn s3_archive_stack_creates_an_encrypted_bucket_and_an_archiver_batching_a_minute_per_shard()
{
    let aws = Aws::start().await;
    let stack = aws
        .create_stack(
            "archive",
            "s3-archive.yaml",
            &[
                ("StreamName", "archive-events"),
                ("ExternalId", "ext-archive-0123456789abcdef0123456"),
                ("BucketName", "customer-archive"),
                ("ExpirationDays", "365"),
                ("CodeBucket", CODE_BUCKET),
            ],
        )
        .await;
    assert_writer_access(
        &aws,
        &stack,
        "archive-events",
        ACCOUNT_ID,
        "ext-archive-0123456789abcdef0123456",
    )
    .await;
    assert_eq!(stack.output("BucketName"), "customer-archive");
    assert_encrypted_bucket(&aws, "customer-archive").await;
    assert_archiver(&aws, &stack, "customer-archive").await;
}

#[tokio::test]
async fn s3_archive_stack_archives_into_an_existing_bucket_without_creating_one() {
    let aws = Aws::start().await;
    aws.emu.create_bucket("existing-archive").await.unwrap();
    let stack = aws
        .create_stack(
            "archive",
            "s3-archive.yaml",
            &[
                ("ExternalId", "ext-archive-0123456789abcdef0123456"),
                ("UseExistingBucket", "true"),
                ("BucketName", "existing-archive"),
                ("CodeBucket", CODE_BUCKET),
            ],
        )
        .await;
    assert_eq!(stack.output("BucketName"), "existing-archive");
    assert!(!stack.resources.contains_key("ArchiveBucket"));
    let buckets = aws.s3.list_buckets().send().await.unwrap();
    let mut names: Vec<_> = buckets.buckets().iter().filter_map(|b| b.name()).collect();
    names.sort();
    assert_eq!(names, vec![CODE_BUCKET, "existing-archive"]);
    assert_archiver(&aws, &stack, "existing-archive").await;
}

/// Whether an IAM action pattern (`kms:*`, `kms:S*`, `*`) covers `action`.
fn action_covers(pattern: &str, action: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern.eq_ignore_ascii_case(action),
        Some((head, tail)) => {
            let (a, h, t) = (
                action.to_ascii_lowercase(),
                head.to_ascii_lowercase(),
                tail.to_ascii_lowercase(),
            );
            a.len() >= h.len() + t.len() && a.starts_with(&h) && a.ends_with(&t)
        }
    }
}

#[test]
fn the_digest_key_lets_only_the_archiver_sign_and_anyone_in_the_account_read_its_public_key() {
    for name in ["s3-archive.yaml", "pipeline.yaml"] {
        let t = template_json(name);
        let key = &t["Resources"]["DigestKey"]["Properties"];
        assert_eq!(key["KeySpec"], "ECC_NIST_P256", "{name}");
        assert_eq!(key["KeyUsage"], "SIGN_VERIFY", "{name}");
        let statements = key["KeyPolicy"]["Statement"].as_array().unwrap();
        let allowing = |action: &str| -> Vec<&Value> {
            statements
                .iter()
                .filter(|st| st["Effect"] == "Allow")
                .filter(|st| {
                    as_list(&st["Action"])
                        .iter()
                        .any(|p| action_covers(p, action))
                })
                .collect()
        };
        let signers = allowing("kms:Sign");
        assert_eq!(signers.len(), 1, "{name}: one statement may sign");
        assert_eq!(
            signers[0]["Principal"],
            json!({"AWS": {"Fn::GetAtt": ["ArchiverRole", "Arn"]}}),
            "{name}"
        );
        assert_eq!(as_list(&signers[0]["Action"]), vec!["kms:Sign".to_string()]);
        for read in ["kms:GetPublicKey", "kms:DescribeKey"] {
            let everyone = allowing(read)
                .into_iter()
                .find(|st| st["Principal"] == json!({"AWS": "*"}))
                .unwrap_or_else(|| panic!("{name}: {read} for the account"));
            assert_eq!(
                everyone["Condition"],
                json!({"StringEquals": {"kms:CallerAccount": {"Ref": "AWS::AccountId"}}}),
                "{name}"
            );
            assert_eq!(
                as_list(&everyone["Action"]),
                vec![
                    "kms:GetPublicKey".to_string(),
                    "kms:DescribeKey".to_string()
                ]
            );
        }
        let env = &t["Resources"]["ArchiverFunction"]["Properties"]["Environment"]["Variables"];
        assert_eq!(
            env["ARCHIVE_DIGEST_KEY_ID"],
            json!({"Fn::GetAtt": ["DigestKey", "Arn"]}),
            "{name}"
        );
    }
}

#[test]
fn the_archiver_is_invoked_hourly_to_close_digests_and_their_failures_raise_an_alarm() {
    for name in ["s3-archive.yaml", "pipeline.yaml"] {
        let t = template_json(name);
        let r = &t["Resources"];
        let rule = &r["ArchiverDigestSchedule"]["Properties"];
        assert_eq!(rule["ScheduleExpression"], "cron(15 * * * ? *)", "{name}");
        assert_eq!(rule["State"], "ENABLED");
        assert_eq!(
            rule["Targets"][0]["Arn"],
            json!({"Fn::GetAtt": ["ArchiverFunction", "Arn"]}),
            "{name}"
        );
        let permission = &r["ArchiverDigestSchedulePermission"]["Properties"];
        assert_eq!(permission["Principal"], "events.amazonaws.com");
        assert_eq!(
            permission["SourceArn"],
            json!({"Fn::GetAtt": ["ArchiverDigestSchedule", "Arn"]})
        );
        assert_eq!(
            permission["FunctionName"],
            json!({"Ref": "ArchiverFunction"})
        );
        let alarm = &r["ArchiverDigestFailuresAlarm"]["Properties"];
        assert_eq!(alarm["Namespace"], "authtrail");
        assert_eq!(alarm["MetricName"], "DigestFailures");
        assert_eq!(
            alarm["Dimensions"],
            json!([{"Name": "Function", "Value": "archiver"}])
        );
        assert_eq!(alarm["Threshold"], json!(0));
        assert!(
            alarm["AlarmActions"].to_string().contains("AlarmTopicArn"),
            "{name}"
        );
        // The settle time leaves the in-flight batches of the closed hour time to land.
        let env = &r["ArchiverFunction"]["Properties"]["Environment"]["Variables"];
        assert_eq!(env["ARCHIVE_DIGEST_SETTLE_SECONDS"], "600");
    }
}

#[test]
fn object_lock_and_storage_class_transitions_are_off_by_default_and_follow_their_parameters() {
    for name in ["s3-archive.yaml", "pipeline.yaml"] {
        let t = template_json(name);
        let p = &t["Parameters"];
        assert_eq!(p["ObjectLockMode"]["Default"], "NONE", "{name}");
        assert_eq!(
            p["ObjectLockMode"]["AllowedValues"],
            json!(["NONE", "GOVERNANCE", "COMPLIANCE"])
        );
        assert_eq!(p["TransitionToStandardIaDays"]["Default"], json!(0));
        assert_eq!(p["TransitionToGlacierIrDays"]["Default"], json!(0));
        let bucket = &t["Resources"]["ArchiveBucket"]["Properties"];
        assert_eq!(
            bucket["ObjectLockConfiguration"]["Fn::If"][1],
            json!({
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {
                    "Mode": {"Ref": "ObjectLockMode"},
                    "Days": {"Ref": "ObjectLockDays"}
                }}
            }),
            "{name}"
        );
        assert_eq!(bucket["ObjectLockEnabled"]["Fn::If"][0], "HasObjectLock");
        let rules = bucket["LifecycleConfiguration"]["Rules"].to_string();
        for part in [
            r#""Prefix":{"Ref":"ArchivePrefix"}"#,
            r#""StorageClass":"STANDARD_IA","TransitionInDays":{"Ref":"TransitionToStandardIaDays"}"#,
            r#""StorageClass":"GLACIER_IR","TransitionInDays":{"Ref":"TransitionToGlacierIrDays"}"#,
        ] {
            assert!(rules.contains(part), "{name}: {part} in {rules}");
        }
    }
}

#[tokio::test]
async fn s3_archive_stack_with_object_lock_and_transitions_creates() {
    let aws = Aws::start().await;
    let stack = aws
        .create_stack(
            "locked",
            "s3-archive.yaml",
            &[
                ("ExternalId", "ext-archive-0123456789abcdef0123456"),
                ("BucketName", "locked-archive"),
                ("ObjectLockMode", "COMPLIANCE"),
                ("ObjectLockDays", "2555"),
                ("TransitionToStandardIaDays", "30"),
                ("TransitionToGlacierIrDays", "90"),
                ("GlueDatabaseName", "audit_archive"),
                ("CodeBucket", CODE_BUCKET),
            ],
        )
        .await;
    assert_eq!(stack.output("GlueDatabase"), "audit_archive");
    assert_archiver(&aws, &stack, "locked-archive").await;
}

#[test]
fn the_glue_table_is_the_readmes_athena_table_with_partition_projection() {
    let readme =
        std::fs::read_to_string(workspace_root().join("functions/archiver/README.md")).unwrap();
    let ddl_start = readme
        .find("CREATE EXTERNAL TABLE authtrail_raw")
        .expect("DDL in README");
    let ddl = &readme[ddl_start..ddl_start + readme[ddl_start..].find(");").unwrap()];
    let property = regex_lite::Regex::new(r"'(projection\.[a-z.]+)' = '([^']*)'").unwrap();
    let projected: BTreeMap<String, String> = property
        .captures_iter(ddl)
        .map(|c| (c[1].to_string(), c[2].to_string()))
        .collect();
    assert!(projected.len() >= 6, "{projected:?}");
    for name in ["s3-archive.yaml", "pipeline.yaml"] {
        let t = template_json(name);
        let table = &t["Resources"]["ArchiveTable"]["Properties"]["TableInput"];
        assert_eq!(table["Name"], "authtrail_raw", "{name}");
        assert_eq!(table["TableType"], "EXTERNAL_TABLE");
        for (k, v) in &projected {
            assert_eq!(table["Parameters"][k], json!(v), "{name}: {k}");
        }
        let template = table["Parameters"]["storage.location.template"].to_string();
        assert!(
            template.contains("${ArchivePrefix}${!dt}/"),
            "{name}: {template}"
        );
        assert_eq!(
            table["PartitionKeys"],
            json!([{"Name": "dt", "Type": "string"}])
        );
        let sd = &table["StorageDescriptor"];
        assert_eq!(
            sd["SerdeInfo"]["SerializationLibrary"],
            "org.openx.data.jsonserde.JsonSerDe"
        );
        assert!(ddl.contains("org.openx.data.jsonserde.JsonSerDe"));
        let columns: Vec<&str> = sd["Columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["Name"].as_str().unwrap())
            .collect();
        assert_eq!(columns, vec!["timestamp", "eventtype", "event"], "{name}");
        assert_eq!(
            t["Resources"]["ArchiveDatabase"]["Properties"]["DatabaseInput"]["Name"],
            json!({"Ref": "GlueDatabaseName"})
        );
    }
}

#[tokio::test]
async fn siem_forwarder_stack_maps_an_existing_stream_with_a_short_window_and_a_dead_letter_bucket()
{
    let aws = Aws::start().await;
    let stream_arn = aws.emu.create_stream("existing-events", 1).await.unwrap();
    let secret = aws.create_secret("hec-token", "not-a-real-token").await;
    let key = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555";
    let stack = aws
        .create_stack(
            "siem",
            "siem-forwarder.yaml",
            &[
                ("StreamArn", &stream_arn),
                ("StreamKeyArn", key),
                ("ForwarderConfig", STDOUT_FORWARDER_CONFIG),
                ("AdditionalSecretArns", &secret),
                ("CodeBucket", CODE_BUCKET),
            ],
        )
        .await;
    assert_encrypted_bucket(&aws, stack.output("DeadLetterBucketName")).await;
    assert_forwarder(&aws, &stack, &stream_arn, Some(key)).await;
    let perms = aws.role_statements(stack.physical("ForwarderRole")).await;
    assert_eq!(
        perms.get("ReadReferencedSecrets"),
        Some(&(set(&["secretsmanager:GetSecretValue"]), set(&[&secret])))
    );
    assert!(!perms.contains_key("WriteFirehose"));
    assert_eq!(
        aws.mapping(stack.output("ForwarderFunctionName"))
            .await
            .starting_position()
            .map(|p| p.as_str()),
        Some("LATEST")
    );
}

#[tokio::test]
async fn mpas_producer_stack_runs_one_producer_at_a_time_with_credentials_from_secrets_manager() {
    let aws = Aws::start().await;
    let stream_arn = aws.emu.create_stream("producer-events", 1).await.unwrap();
    let secret = aws
        .create_secret("mpas-credentials", CREDENTIALS_JSON)
        .await;
    let key = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555";
    let stack = aws
        .create_stack(
            "mpas",
            "mpas-producer.yaml",
            &[
                ("MpasBaseUrl", "http://127.0.0.1:9"),
                ("MpasRealm", "demo"),
                ("ExistingCredentialsSecretArn", &secret),
                ("KinesisStreamArn", &stream_arn),
                ("StreamKeyArn", key),
                ("CodeBucket", CODE_BUCKET),
            ],
        )
        .await;
    assert_encrypted_bucket(&aws, stack.output("CheckpointBucketName")).await;
    assert_producer(&aws, &stack, &stream_arn, Some(key), &secret).await;
    assert_eq!(stack.output("CredentialsSecretArn"), secret);
}

#[tokio::test]
async fn mpas_producer_stack_with_credentials_as_parameters_creates_everything_but_the_secret() {
    // moto skips AWS::SecretsManager::Secret: the stack completes and the function exists, but
    // the secret and the variables that Ref it are missing here (they exist on AWS).
    let aws = Aws::start().await;
    let stream_arn = aws.emu.create_stream("producer-events", 1).await.unwrap();
    let stack = aws
        .create_stack(
            "mpas",
            "mpas-producer.yaml",
            &[
                ("MpasBaseUrl", "https://mpas.example.com"),
                ("MpasRealm", "demo"),
                ("MpasClientId", "authtrail"),
                ("MpasClientSecret", "not-a-real-secret"),
                ("KinesisStreamArn", &stream_arn),
                ("CodeBucket", CODE_BUCKET),
            ],
        )
        .await;
    let env = aws.function_env(stack.output("ProducerFunctionName")).await;
    assert_eq!(env["MPAS_BASE_URL"], "https://mpas.example.com");
    assert!(
        env.values().all(|v| !v.contains("not-a-real-secret")),
        "credentials never reach the function's environment"
    );
}

#[tokio::test]
async fn pipeline_stack_builds_stream_archive_forwarder_producer_and_writer_role_in_one_account() {
    let aws = Aws::start().await;
    let secret = aws
        .create_secret("mpas-credentials", CREDENTIALS_JSON)
        .await;
    let stack = aws
        .create_stack(
            "authtrail",
            "pipeline.yaml",
            &[
                ("StreamName", "pipeline-events"),
                ("ExternalId", "ext-pipeline-0123456789abcdef012345"),
                ("ForwarderConfig", STDOUT_FORWARDER_CONFIG),
                ("MpasBaseUrl", "http://127.0.0.1:9"),
                ("MpasRealm", "demo"),
                ("ExistingCredentialsSecretArn", &secret),
                ("CodeBucket", CODE_BUCKET),
            ],
        )
        .await;
    assert_writer_access(
        &aws,
        &stack,
        "pipeline-events",
        ACCOUNT_ID,
        "ext-pipeline-0123456789abcdef012345",
    )
    .await;
    let stream_arn = stack.output("StreamArn").to_string();
    let key = stack.output("StreamKeyArn").to_string();
    let bucket = stack.output("BucketName").to_string();
    assert_encrypted_bucket(&aws, &bucket).await;
    assert_archiver(&aws, &stack, &bucket).await;
    assert_forwarder(&aws, &stack, &stream_arn, Some(&key)).await;
    assert_eq!(
        aws.mapping(stack.output("ForwarderFunctionName"))
            .await
            .starting_position()
            .map(|p| p.as_str()),
        Some("TRIM_HORIZON")
    );
    assert_producer(&aws, &stack, &stream_arn, Some(&key), &secret).await;
}

#[tokio::test]
async fn pipeline_stack_without_optional_parts_builds_only_stream_and_archive() {
    let aws = Aws::start().await;
    let stack = aws
        .create_stack("authtrail", "pipeline.yaml", &[("CodeBucket", CODE_BUCKET)])
        .await;
    let mut keys: Vec<_> = stack.outputs.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            "ArchiverFunctionName",
            "AwsAccountId",
            "AwsRegion",
            "BucketName",
            "DigestKeyArn",
            "GlueDatabase",
            "KinesisStreamName",
            "StreamArn",
            "StreamKeyArn",
        ]
    );
    for absent in [
        "WriterRole",
        "ForwarderFunction",
        "ProducerFunction",
        "DeadLetterBucket",
        "CheckpointBucket",
    ] {
        assert!(!stack.resources.contains_key(absent), "{absent}");
    }
    let bucket = stack.output("BucketName").to_string();
    assert_archiver(&aws, &stack, &bucket).await;
}

// ---------------------------------------------------------------------------------------------
// Templates and code agree
// ---------------------------------------------------------------------------------------------

/// The parameters of a template, by name.
fn parameters(t: &Value) -> &serde_json::Map<String, Value> {
    t["Parameters"]
        .as_object()
        .expect("template has Parameters")
}

/// Does CloudFormation accept `value` for this parameter (AllowedPattern, MinLength, MaxLength)?
fn parameter_accepts(p: &Value, value: &str) -> bool {
    let len = value.chars().count() as u64;
    if p["MinLength"].as_u64().is_some_and(|min| len < min)
        || p["MaxLength"].as_u64().is_some_and(|max| len > max)
    {
        return false;
    }
    match p["AllowedPattern"].as_str() {
        // CloudFormation matches the whole value against the pattern.
        Some(pattern) => regex_lite::Regex::new(&format!("^(?:{pattern})$"))
            .expect("AllowedPattern compiles")
            .is_match(value),
        None => true,
    }
}

#[test]
fn credentials_written_into_a_json_secret_refuse_quotes_backslashes_and_control_characters() {
    let mut checked = 0;
    for name in TEMPLATES {
        let t = template_json(name);
        for (id, secret) in resources_of(&t, "AWS::SecretsManager::Secret") {
            let Some(sub) = secret["Properties"]["SecretString"]["Fn::Sub"].as_str() else {
                continue;
            };
            if !sub.trim_start().starts_with('{') {
                continue;
            }
            // Every ${Param} written between JSON quotes must not be able to break the JSON.
            for part in sub.split("${").skip(1) {
                let param = part.split('}').next().unwrap_or_default();
                let p = &parameters(&t)[param];
                for bad in ["pa\"ss", "pa\\ss", "pa\nss", "pa\u{1}ss"] {
                    assert!(
                        !parameter_accepts(p, bad),
                        "{name}: {id} writes {param} into JSON, and {param} accepts {bad:?}"
                    );
                }
                for good in ["", "p@ss w0rd!#$%^&*()'{}[]:;,.<>?/|~`", "pässwört-€"] {
                    assert!(
                        parameter_accepts(p, good),
                        "{name}: {param} refuses {good:?}"
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 8, "only {checked} credential parameters checked");
}

#[test]
fn every_external_id_must_be_at_least_32_characters_that_sts_accepts() {
    let mut checked = 0;
    for name in TEMPLATES {
        let t = template_json(name);
        let Some(p) = parameters(&t).get("ExternalId") else {
            continue;
        };
        let random = "3f6c1a0e9b2d47c8a5e1f0b3c7d9e2a4";
        assert!(
            parameter_accepts(p, random),
            "{name}: refuses a random 32-character id"
        );
        assert!(parameter_accepts(p, "a-Z_0+=,.@:/9876543210abcdefghij"));
        assert!(
            !parameter_accepts(p, &random[..31]),
            "{name}: accepts 31 characters"
        );
        assert!(
            !parameter_accepts(p, "ext"),
            "{name}: accepts a guessable id"
        );
        assert!(!parameter_accepts(p, &format!("{random} space")));
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} ExternalId parameters checked");
}

#[test]
fn the_forwarder_configuration_parameter_is_never_echoed() {
    let mut checked = 0;
    for name in TEMPLATES {
        let t = template_json(name);
        if let Some(p) = parameters(&t).get("ForwarderConfig") {
            assert_eq!(
                p["NoEcho"],
                json!(true),
                "{name}: ForwarderConfig is shown in the console"
            );
            checked += 1;
        }
    }
    assert_eq!(
        checked, 2,
        "ForwarderConfig in siem-forwarder.yaml and pipeline.yaml"
    );
}

#[test]
fn every_metric_that_signals_loss_has_an_alarm_on_the_alarm_topic() {
    // (template, metric, function) that must be watched.
    let wanted = [
        ("mpas-producer.yaml", "CollectionGap", "producer"),
        ("mpas-producer.yaml", "RunFailed", "producer"),
        ("siem-forwarder.yaml", "DeadLetters", "forwarder"),
        ("siem-forwarder.yaml", "SpoolExpired", "forwarder"),
        ("siem-forwarder.yaml", "SpoolWriteFailures", "forwarder"),
        ("pipeline.yaml", "CollectionGap", "producer"),
        ("pipeline.yaml", "RunFailed", "producer"),
        ("pipeline.yaml", "DeadLetters", "forwarder"),
        ("pipeline.yaml", "SpoolExpired", "forwarder"),
        ("pipeline.yaml", "SpoolWriteFailures", "forwarder"),
    ];
    for (name, metric, function) in wanted {
        let t = template_json(name);
        let alarms = resources_of(&t, "AWS::CloudWatch::Alarm");
        let found = alarms.iter().find(|(_, a)| {
            let p = &a["Properties"];
            p["Namespace"] == json!("authtrail")
                && p["MetricName"] == json!(metric)
                && p["Dimensions"] == json!([{"Name": "Function", "Value": function}])
        });
        let Some((id, a)) = found else {
            panic!("{name}: no alarm on the {metric} metric of the {function}");
        };
        let p = &a["Properties"];
        assert_eq!(
            p["Threshold"],
            json!(0),
            "{name} {id}: alarms on the first one"
        );
        assert_eq!(
            p["ComparisonOperator"],
            json!("GreaterThanThreshold"),
            "{name} {id}"
        );
        assert!(
            p["AlarmActions"].to_string().contains("AlarmTopicArn"),
            "{name} {id}: not wired to the alarm topic"
        );
    }
}

/// The alarm of `template` on the forwarder's aggregate `metric` (dimension `Function` only).
fn forwarder_alarm<'a>(t: &'a Value, template: &str, metric: &str) -> &'a Value {
    resources_of(t, "AWS::CloudWatch::Alarm")
        .into_iter()
        .map(|(_, a)| &a["Properties"])
        .find(|p| {
            p["Namespace"] == json!("authtrail")
                && p["MetricName"] == json!(metric)
                && p["Dimensions"] == json!([{"Name": "Function", "Value": "forwarder"}])
        })
        .unwrap_or_else(|| panic!("{template}: no alarm on the forwarder's {metric}"))
}

#[test]
fn every_spool_metric_of_the_forwarder_has_an_alarm_on_the_alarm_topic_before_records_expire() {
    for name in ["siem-forwarder.yaml", "pipeline.yaml"] {
        let t = template_json(name);
        for metric in [
            "Spooled",
            "SpoolExpired",
            "RedriveFailures",
            "BreakersOpen",
            "SpoolOldestAgeSeconds",
            "SpoolWriteFailures",
        ] {
            let p = forwarder_alarm(&t, name, metric);
            assert!(
                p["AlarmActions"].to_string().contains("AlarmTopicArn"),
                "{name} {metric}: not wired to the alarm topic"
            );
            assert_eq!(
                p["ComparisonOperator"],
                json!("GreaterThanThreshold"),
                "{name} {metric}"
            );
        }
        // Sustained: one spooled batch or one failed redrive while a SIEM restarts is no alarm.
        for metric in ["Spooled", "RedriveFailures", "BreakersOpen"] {
            let p = forwarder_alarm(&t, name, metric);
            assert_eq!(p["Threshold"], json!(0), "{name} {metric}");
            assert!(
                p["EvaluationPeriods"].as_u64().is_some_and(|n| n >= 2),
                "{name} {metric}: must be sustained"
            );
        }
        // The spool's age alarms before the default retention (spool.maxAgeInSec, 7 days)
        // turns the oldest records into dead letters.
        let age = forwarder_alarm(&t, name, "SpoolOldestAgeSeconds");
        assert_eq!(age["Statistic"], json!("Maximum"), "{name}");
        let param = age["Threshold"]["Ref"]
            .as_str()
            .expect("threshold parameter");
        let default = t["Parameters"][param]["Default"].as_u64().unwrap();
        assert!(default < 604_800 / 2, "{name}: {param} {default} s");
    }
}

#[test]
fn the_forwarder_is_invoked_every_minute_for_redrive_and_its_mapping_keeps_what_it_gives_up_on() {
    for name in ["siem-forwarder.yaml", "pipeline.yaml"] {
        let t = template_json(name);
        let function = json!(["ForwarderFunction", "Arn"]);
        let rules: Vec<_> = resources_of(&t, "AWS::Events::Rule")
            .into_iter()
            .filter(|(_, r)| {
                r["Properties"]["Targets"]
                    .as_array()
                    .is_some_and(|ts| ts.iter().any(|x| x["Arn"]["Fn::GetAtt"] == function))
            })
            .collect();
        let [(rule_id, rule)] = rules.as_slice() else {
            panic!(
                "{name}: one schedule must invoke the forwarder, found {}",
                rules.len()
            );
        };
        assert_eq!(
            rule["Properties"]["ScheduleExpression"], "rate(1 minute)",
            "{name}"
        );
        assert_eq!(rule["Properties"]["State"], "ENABLED", "{name}");
        let permitted = resources_of(&t, "AWS::Lambda::Permission")
            .iter()
            .any(|(_, p)| {
                let p = &p["Properties"];
                p["FunctionName"] == json!({"Ref": "ForwarderFunction"})
                    && p["Principal"] == "events.amazonaws.com"
                    && p["Action"] == "lambda:InvokeFunction"
                    && p["SourceArn"] == json!({"Fn::GetAtt": [rule_id, "Arn"]})
            });
        assert!(
            permitted,
            "{name}: the schedule may not invoke the forwarder"
        );

        // The spool prefix the code defaults to, read/write/delete on it, list on the bucket.
        let f = &t["Resources"]["ForwarderFunction"]["Properties"];
        let prefix = &f["Environment"]["Variables"]["SPOOL_PREFIX"];
        assert_eq!(prefix, &json!({"Ref": "SpoolPrefix"}), "{name}");
        assert_eq!(
            t["Parameters"]["SpoolPrefix"]["Default"], "spool/",
            "{name}"
        );
        let policy = t["Resources"]["ForwarderRole"]["Properties"]["Policies"][0]["PolicyDocument"]
            ["Statement"]
            .to_string();
        for needle in [
            r#""Sid":"Spool""#,
            "s3:GetObject",
            "s3:DeleteObject",
            "${DeadLetterBucket.Arn}/${SpoolPrefix}*",
            "s3:ListBucket",
            "${DeadLetterBucket.Arn}/aws/lambda/*",
        ] {
            assert!(policy.contains(needle), "{name}: role lacks {needle}");
        }

        // Only a failed spool write fails a batch: retry until the record would leave the
        // stream, and keep a batch given up on whole (S3 destination), not its sequence range.
        let (_, m) = resources_of(&t, "AWS::Lambda::EventSourceMapping")
            .into_iter()
            .find(|(_, m)| m["Properties"]["FunctionName"] == json!({"Ref": "ForwarderFunction"}))
            .expect("forwarder mapping");
        let p = &m["Properties"];
        assert_eq!(
            p["DestinationConfig"]["OnFailure"]["Destination"],
            json!({"Fn::GetAtt": ["DeadLetterBucket", "Arn"]}),
            "{name}"
        );
        let default = |key: &str| parameter_default(&t, p, key, name);
        assert_eq!(default("MaximumRetryAttempts"), 10_000, "{name}");
        assert!(default("MaximumRecordAgeInSeconds") >= 86_400, "{name}");
        assert!(
            resources_of(&t, "AWS::SQS::Queue")
                .iter()
                .all(|(id, _)| !id.starts_with("Forwarder")),
            "{name}: the forwarder has no SQS failure queue any more"
        );
    }
}

#[test]
fn every_environment_variable_a_template_sets_is_one_its_function_reads() {
    let mut checked = 0;
    for name in TEMPLATES {
        let t = template_json(name);
        for (id, f) in resources_of(&t, "AWS::Lambda::Function") {
            let krate = function_crate(f);
            let source = crate_source(krate);
            let vars = f["Properties"]["Environment"]["Variables"]
                .as_object()
                .unwrap_or_else(|| panic!("{name} {id}: no environment"));
            for var in vars.keys() {
                assert!(
                    source.contains(&format!("\"{var}\"")),
                    "{name}: {id} sets {var}, which functions/{krate}/src never reads"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 30, "only {checked} variables checked");
}

#[test]
fn every_functions_settings_follow_the_deployment_standard() {
    for name in TEMPLATES {
        let t = template_json(name);
        for (id, f) in resources_of(&t, "AWS::Lambda::Function") {
            let p = &f["Properties"];
            assert_eq!(p["Runtime"], "provided.al2023", "{name} {id}");
            assert_eq!(
                p["Architectures"],
                json!([{"Ref": "Architecture"}]),
                "{name} {id}"
            );
            let arch = &t["Parameters"]["Architecture"];
            assert_eq!(arch["Default"], "arm64", "{name}");
            assert_eq!(arch["AllowedValues"], json!(["arm64", "x86_64"]), "{name}");
            assert_eq!(p["Handler"], "bootstrap", "{name} {id}");
            assert_eq!(
                p["Code"]["S3Bucket"],
                json!({"Ref": "CodeBucket"}),
                "{name} {id}"
            );
            assert!(
                p["MemorySize"]["Ref"].is_string(),
                "{name} {id}: MemorySize parameter"
            );
            assert!(
                p["Timeout"]["Ref"].is_string(),
                "{name} {id}: Timeout parameter"
            );
            let group = p["LoggingConfig"]["LogGroup"]["Ref"]
                .as_str()
                .unwrap_or_else(|| panic!("{name} {id}: LoggingConfig.LogGroup"));
            assert_eq!(
                t["Resources"][group]["Properties"]["RetentionInDays"],
                json!({"Ref": "LogRetentionInDays"}),
                "{name} {id}: log retention"
            );
            let alarms: Vec<String> = resources_of(&t, "AWS::CloudWatch::Alarm")
                .into_iter()
                .filter(|(_, a)| a["Properties"]["Dimensions"][0]["Value"] == json!({"Ref": id}))
                .map(|(_, a)| a["Properties"]["MetricName"].as_str().unwrap().to_string())
                .collect();
            assert!(
                alarms.contains(&"Errors".to_string()),
                "{name} {id}: {alarms:?}"
            );
            let is_mapped = resources_of(&t, "AWS::Lambda::EventSourceMapping")
                .iter()
                .any(|(_, m)| m["Properties"]["FunctionName"] == json!({"Ref": id}));
            if is_mapped {
                assert!(
                    alarms.contains(&"IteratorAge".to_string()),
                    "{name} {id}: {alarms:?}"
                );
            }
        }
    }
}

#[test]
fn every_event_source_mapping_sets_what_its_handler_relies_on() {
    let mut mappings = 0;
    let mut reporting = 0;
    for name in TEMPLATES {
        let t = template_json(name);
        for (id, m) in resources_of(&t, "AWS::Lambda::EventSourceMapping") {
            let p = &m["Properties"];
            let target = p["FunctionName"]["Ref"].as_str().expect("FunctionName Ref");
            let krate = function_crate(&t["Resources"][target]);
            let source = crate_source(krate);
            // The handler returns a partial-batch response (aws_lambda_events'
            // `KinesisEventResponse { batch_item_failures }`, or the JSON by hand).
            let reports_failures = [
                "KinesisEventResponse",
                "batch_item_failures",
                "batchItemFailures",
            ]
            .iter()
            .any(|marker| source.contains(marker));
            if reports_failures {
                reporting += 1;
                assert_eq!(
                    p["FunctionResponseTypes"],
                    json!(["ReportBatchItemFailures"]),
                    "{name} {id}: {krate} returns batch item failures"
                );
            }
            assert_eq!(p["BisectBatchOnFunctionError"], true, "{name} {id}");
            for finite in ["MaximumRetryAttempts", "MaximumRecordAgeInSeconds"] {
                let v = &p[finite];
                assert!(
                    v.is_u64() || v["Ref"].is_string(),
                    "{name} {id}: {finite} must be set (AWS defaults to infinite)"
                );
                if let Some(param) = v["Ref"].as_str() {
                    let min = &t["Parameters"][param]["MinValue"];
                    assert!(
                        min.as_i64().is_some_and(|m| m >= 0),
                        "{name} {id}: {param} must not allow -1 (infinite)"
                    );
                }
            }
            assert!(
                p["DestinationConfig"]["OnFailure"]["Destination"].is_object(),
                "{name} {id}: on-failure destination"
            );
            match krate {
                "archiver" => {
                    assert_eq!(p["BatchSize"], 10_000, "{name} {id}");
                    assert_eq!(p["MaximumBatchingWindowInSeconds"], 60, "{name} {id}");
                }
                "forwarder" => {
                    assert_eq!(p["BatchSize"], json!({"Ref": "BatchSize"}), "{name} {id}");
                    assert_eq!(
                        t["Parameters"]["MaximumBatchingWindowInSeconds"]["Default"], 1,
                        "{name} {id}"
                    );
                }
                other => panic!("{name} {id}: unexpected mapping to {other}"),
            }
            mappings += 1;
        }
    }
    assert_eq!(
        mappings, 4,
        "archiver and forwarder in their stacks and in the pipeline"
    );
    assert_eq!(
        reporting, mappings,
        "both stream consumers report batch item failures, so every mapping needs the setting"
    );
}

/// Starts the real function binary with the environment moto resolved for it (plus the
/// emulator's AWS variables), invokes it once and returns the outcome and its logs.
async fn run_with_env(
    aws: &Aws,
    krate: &str,
    env: &BTreeMap<String, String>,
    payload: &Value,
) -> (Outcome, String) {
    let binary = bin_path(&format!("authtrail-{krate}")).expect("function binary");
    let mut cfg = FunctionConfig::new(format!("cfn-{krate}"), binary)
        .with_env(aws.emu.env())
        .with_env(env.clone())
        .with_timeout(Duration::from_secs(30));
    cfg.inherit_env = false;
    cfg.echo_logs = false;
    let f = LambdaFunction::start(cfg).await.expect("start function");
    let inv = f.invoke_json(payload).await.expect("invoke");
    let logs = f.logs();
    f.shutdown().await;
    (inv.outcome, logs)
}

fn payload_for(krate: &str) -> Value {
    match krate {
        "producer" => authtrail_runner::scheduled_event(
            REGION,
            "cfn-schedule",
            chrono::DateTime::from_timestamp(1_739_388_470, 0).unwrap(),
        ),
        _ => json!({"Records": []}),
    }
}

#[tokio::test]
async fn every_variable_a_function_requires_is_set_by_each_template() {
    let aws = Aws::start().await;
    let secret = aws
        .create_secret("mpas-credentials", CREDENTIALS_JSON)
        .await;
    let pipeline = aws
        .create_stack(
            "pipeline",
            "pipeline.yaml",
            &[
                ("StreamName", "pipeline-events"),
                ("ForwarderConfig", STDOUT_FORWARDER_CONFIG),
                ("MpasBaseUrl", "http://127.0.0.1:9"),
                ("MpasRealm", "demo"),
                ("ExistingCredentialsSecretArn", &secret),
                ("CodeBucket", CODE_BUCKET),
            ],
        )
        .await;
    let stream_arn = pipeline.output("StreamArn").to_string();
    let archive = aws
        .create_stack(
            "archive",
            "s3-archive.yaml",
            &[
                ("StreamName", "archive-events"),
                ("ExternalId", "ext-0123456789abcdef0123456789abcdef"),
                ("CodeBucket", CODE_BUCKET),
            ],
        )
        .await;
    let siem = aws
        .create_stack(
            "siem",
            "siem-forwarder.yaml",
            &[
                ("StreamArn", &stream_arn),
                ("ForwarderConfig", STDOUT_FORWARDER_CONFIG),
                ("CodeBucket", CODE_BUCKET),
            ],
        )
        .await;
    let mpas = aws
        .create_stack(
            "mpas",
            "mpas-producer.yaml",
            &[
                ("MpasBaseUrl", "http://127.0.0.1:9"),
                ("MpasRealm", "demo"),
                ("ExistingCredentialsSecretArn", &secret),
                ("KinesisStreamArn", &stream_arn),
                ("CodeBucket", CODE_BUCKET),
            ],
        )
        .await;
    let deployed = [
        (
            "pipeline.yaml",
            &pipeline,
            "archiver",
            "ArchiverFunctionName",
        ),
        (
            "pipeline.yaml",
            &pipeline,
            "forwarder",
            "ForwarderFunctionName",
        ),
        (
            "pipeline.yaml",
            &pipeline,
            "producer",
            "ProducerFunctionName",
        ),
        (
            "s3-archive.yaml",
            &archive,
            "archiver",
            "ArchiverFunctionName",
        ),
        (
            "siem-forwarder.yaml",
            &siem,
            "forwarder",
            "ForwarderFunctionName",
        ),
        (
            "mpas-producer.yaml",
            &mpas,
            "producer",
            "ProducerFunctionName",
        ),
    ];
    for (template, stack, krate, output) in deployed {
        let env = aws.function_env(stack.output(output)).await;
        let (outcome, logs) = run_with_env(&aws, krate, &env, &payload_for(krate)).await;
        assert!(
            !matches!(outcome, Outcome::InitError { .. }),
            "{template}: {krate} failed at init with the template's environment: {outcome:?}\n{logs}"
        );
    }
}

#[tokio::test]
async fn a_function_without_its_template_environment_fails_at_init_naming_a_variable() {
    // The control for the test above: without the template's variables each function refuses
    // to start, and says which variable is missing.
    let aws = Aws::start().await;
    let t = template_json("pipeline.yaml");
    for krate in ["archiver", "forwarder", "producer"] {
        let (_, f) = resources_of(&t, "AWS::Lambda::Function")
            .into_iter()
            .find(|(_, f)| function_crate(f) == krate)
            .unwrap();
        let vars: Vec<&String> = f["Properties"]["Environment"]["Variables"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        let (outcome, logs) =
            run_with_env(&aws, krate, &BTreeMap::new(), &payload_for(krate)).await;
        let text = format!("{outcome:?}\n{logs}");
        assert!(
            matches!(outcome, Outcome::InitError { .. }),
            "{krate} started without configuration: {text}"
        );
        assert!(
            vars.iter().any(|v| text.contains(v.as_str())),
            "{krate}'s init error names none of {vars:?}: {text}"
        );
    }
}

#[test]
fn the_mpas_base_url_must_be_https_unless_it_is_a_loopback_host() {
    for name in ["mpas-producer.yaml", "pipeline.yaml"] {
        let t = template_json(name);
        let p = &parameters(&t)["MpasBaseUrl"];
        for good in [
            "https://mpas.example.com",
            "https://mpas.example.com:8443/auth",
            "http://127.0.0.1:8080",
            "http://localhost:9/x",
            "http://[::1]:8080",
        ] {
            assert!(parameter_accepts(p, good), "{name}: refuses {good}");
        }
        for bad in [
            "http://mpas.example.com",
            "http://192.0.2.5:8080",
            "http://127.0.0.1.evil.example",
            "ftp://mpas.example.com",
            "https:// spaced",
        ] {
            assert!(!parameter_accepts(p, bad), "{name}: accepts {bad}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The forwarder inside a VPC and RDS IAM authentication (brokers and databases in a VPC)
// ---------------------------------------------------------------------------------------------

const FORWARDER_STACKS: &[&str] = &["siem-forwarder.yaml", "pipeline.yaml"];
const RDS_CONNECT_ARN: &str = "arn:${AWS::Partition}:rds-db:${AWS::Region}:${AWS::AccountId}:dbuser:${DatabaseResourceId}/${DatabaseIamUser}";

#[test]
fn the_forwarder_joins_a_vpc_and_may_connect_to_rds_with_iam_only_when_their_parameters_are_given()
{
    let no_value = json!({"Ref": "AWS::NoValue"});
    for name in FORWARDER_STACKS {
        let t = template_json(name);
        let p = parameters(&t);
        for list in ["ForwarderSubnetIds", "ForwarderSecurityGroupIds"] {
            assert_eq!(p[list]["Type"], "CommaDelimitedList", "{name} {list}");
            assert_eq!(
                p[list]["Default"], "",
                "{name}: {list} is empty (no VPC) by default"
            );
        }
        for (param, good, bad) in [
            (
                "DatabaseResourceId",
                [
                    "",
                    "db-ABCDEFGHIJKLMNOPQRSTUVWXY1",
                    "cluster-ABCDEFGHIJKL0123",
                ],
                "arn:aws:rds:eu-west-1:123456789012:db:audit",
            ),
            (
                "DatabaseIamUser",
                ["", "authtrail_writer", "forwarder"],
                "writer\"}",
            ),
        ] {
            assert_eq!(p[param]["Default"], "", "{name} {param}");
            for v in good {
                assert!(
                    parameter_accepts(&p[param], v),
                    "{name}: {param} refuses {v:?}"
                );
            }
            assert!(
                !parameter_accepts(&p[param], bad),
                "{name}: {param} accepts {bad:?}"
            );
        }
        assert_eq!(
            t["Conditions"]["ForwarderInVpc"],
            json!({"Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "ForwarderSubnetIds"}]}, ""]}]}),
            "{name}"
        );
        assert_eq!(
            t["Conditions"]["HasDatabaseIam"],
            json!({"Fn::Not": [{"Fn::Equals": [{"Ref": "DatabaseResourceId"}, ""]}]}),
            "{name}"
        );
        for rule in [
            "ForwarderVpcNeedsSubnetsAndSecurityGroups",
            "DatabaseIamNeedsUser",
            "DatabaseIamNeedsResourceId",
        ] {
            assert!(t["Rules"][rule].is_object(), "{name}: rule {rule}");
        }
        let (_, f) = resources_of(&t, "AWS::Lambda::Function")
            .into_iter()
            .find(|(_, f)| function_crate(f) == "forwarder")
            .unwrap();
        assert_eq!(
            f["Properties"]["VpcConfig"],
            json!({"Fn::If": ["ForwarderInVpc",
                {"SubnetIds": {"Ref": "ForwarderSubnetIds"}, "SecurityGroupIds": {"Ref": "ForwarderSecurityGroupIds"}},
                no_value]}),
            "{name}: VpcConfig only when subnets are given"
        );
        let role_id = f["Properties"]["Role"]["Fn::GetAtt"][0].as_str().unwrap();
        let role = &t["Resources"][role_id]["Properties"];
        assert_eq!(
            role["ManagedPolicyArns"],
            json!({"Fn::If": ["ForwarderInVpc",
                [{"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"}],
                no_value]}),
            "{name}: the network-interface permissions a VPC function needs, only in a VPC"
        );
        let statements = role["Policies"][0]["PolicyDocument"]["Statement"]
            .as_array()
            .unwrap();
        let connect = json!({"Fn::If": ["HasDatabaseIam",
            {"Sid": "ConnectDatabaseWithIam", "Effect": "Allow", "Action": "rds-db:connect",
             "Resource": {"Fn::Sub": RDS_CONNECT_ARN}},
            no_value]});
        assert!(
            statements.contains(&connect),
            "{name}: rds-db:connect on the one database user, only when given"
        );
    }
}

#[tokio::test]
async fn forwarder_stacks_in_a_vpc_set_vpc_config_and_grant_rds_iam_connect_to_one_database_user() {
    let aws = Aws::start().await;
    let stream_arn = aws.emu.create_stream("vpc-events", 1).await.unwrap();
    let subnets = "subnet-0a1b2c3d4e5f60718,subnet-0f1e2d3c4b5a69788";
    let groups = "sg-0123456789abcdef0";
    let vpc = [
        ("ForwarderSubnetIds", subnets),
        ("ForwarderSecurityGroupIds", groups),
        ("DatabaseResourceId", "db-ABCDEFGHIJKLMNOPQRSTUVWXY1"),
        ("DatabaseIamUser", "authtrail_writer"),
        ("ForwarderConfig", STDOUT_FORWARDER_CONFIG),
        ("CodeBucket", CODE_BUCKET),
    ];
    let siem: Vec<(&str, &str)> = vpc
        .iter()
        .copied()
        .chain([("StreamArn", stream_arn.as_str())])
        .collect();
    let pipeline: Vec<(&str, &str)> = vpc
        .iter()
        .copied()
        .chain([("StreamName", "vpc-pipeline-events")])
        .collect();
    let connect = (
        set(&["rds-db:connect"]),
        set(&[
            "arn:aws:rds-db:us-east-1:123456789012:dbuser:db-ABCDEFGHIJKLMNOPQRSTUVWXY1/authtrail_writer",
        ]),
    );
    for (stack_name, template, params) in [
        ("siem-vpc", "siem-forwarder.yaml", siem),
        ("pipeline-vpc", "pipeline.yaml", pipeline),
    ] {
        let stack = aws.create_stack(stack_name, template, &params).await;
        let f = aws.function(stack.output("ForwarderFunctionName")).await;
        let v = f.vpc_config().expect("VpcConfig");
        assert_eq!(v.subnet_ids().join(","), subnets, "{template}");
        assert_eq!(v.security_group_ids().join(","), groups, "{template}");
        let perms = aws.role_statements(stack.physical("ForwarderRole")).await;
        assert_eq!(
            perms.get("ConnectDatabaseWithIam"),
            Some(&connect),
            "{template}"
        );
    }
    // Without the parameters: no VPC, no rds-db:connect.
    let stack = aws
        .create_stack(
            "siem-plain",
            "siem-forwarder.yaml",
            &[
                ("StreamArn", &stream_arn),
                ("ForwarderConfig", STDOUT_FORWARDER_CONFIG),
                ("CodeBucket", CODE_BUCKET),
            ],
        )
        .await;
    let f = aws.function(stack.output("ForwarderFunctionName")).await;
    assert!(f.vpc_config().is_none_or(|v| v.subnet_ids().is_empty()));
    let perms = aws.role_statements(stack.physical("ForwarderRole")).await;
    assert!(!perms.contains_key("ConnectDatabaseWithIam"));
}

#[test]
fn the_archiver_mapping_retries_a_failing_batch_until_its_records_would_leave_the_stream() {
    // The archive is the evidence: with a handful of retries, an S3 outage of a few minutes
    // skipped records (the chaos run lost 4 during a 150 s outage with the old default of 10).
    for name in ["s3-archive.yaml", "pipeline.yaml"] {
        let t = template_json(name);
        let (_, m) = resources_of(&t, "AWS::Lambda::EventSourceMapping")
            .into_iter()
            .find(|(_, m)| m["Properties"]["FunctionName"] == json!({"Ref": "ArchiverFunction"}))
            .unwrap_or_else(|| panic!("{name}: archiver mapping"));
        let p = &m["Properties"];
        let default = |key: &str| parameter_default(&t, p, key, name);
        assert_eq!(default("MaximumRetryAttempts"), 10_000, "{name}");
        assert!(default("MaximumRecordAgeInSeconds") >= 86_400, "{name}");
        assert_eq!(p["BisectBatchOnFunctionError"], json!(true), "{name}");
    }
}
