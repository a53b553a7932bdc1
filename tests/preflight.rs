//! Preflight against the local stack: the pipeline stack created on moto from
//! `cloudformation/pipeline.yaml` (writer role with an External ID, stream, buckets, the three
//! functions), the MPAS simulator, the HTTPS SIEM receiver (Splunk HEC, Elasticsearch,
//! webhook) and a real rsyslog over TLS.
//!
//! - `authtrail-preflight --stack` finds everything ok; then a wrong External ID, a wrong MPAS
//!   secret, a receiver whose certificate is not trusted and a wrong HEC token are each
//!   reported by the check's name with a non-zero exit, and no secret string appears in its
//!   output.
//! - The real function binaries under the event-source runner answer the test payload
//!   `{"authtrail": "preflight"}` with their report, checked from where they run.
//!
//! moto does not check the External ID on `AssumeRole` (REFERENCE.md): the CLI's STS calls go
//! through a small stand-in in front of moto that refuses, as STS does, an `AssumeRole` whose
//! External ID differs from the role's `sts:ExternalId` trust condition (read from moto's IAM),
//! and passes every other request to moto unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use authtrail_harness::{Emulator, ScratchDir, bin_path, workspace_root};
use authtrail_runner::{FunctionConfig, LambdaFunction};
use serde_json::{Value, json};
use siem_receiver::{IngestAuth, Receiver, ReceiverOptions, Rsyslog};

const STACK: &str = "authtrail-preflight";
const EXTERNAL_ID: &str = "ext-preflight-5f0c2a9d7e3b41c8a6d2";
const WRONG_EXTERNAL_ID: &str = "ext-wrong-0000111122223333444455";
const CLIENT_ID: &str = "authtrail";
const CLIENT_SECRET: &str = "mpas-client-secret-7c1e";
const WRONG_CLIENT_SECRET: &str = "mpas-wrong-secret-9d2f";
const HEC_TOKEN: &str = "hec-token-3b8a51";
const WRONG_HEC_TOKEN: &str = "hec-wrong-token-6e0d";
const ES_KEY: &str = "es-api-key-41f7";
const HOOK_TOKEN: &str = "hook-token-92c4";
const EMPTY_ZIP: [u8; 22] = [
    0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// Every secret string of the tests: none may ever be printed.
const SECRETS: &[&str] = &[
    EXTERNAL_ID,
    WRONG_EXTERNAL_ID,
    CLIENT_SECRET,
    WRONG_CLIENT_SECRET,
    HEC_TOKEN,
    WRONG_HEC_TOKEN,
    ES_KEY,
    HOOK_TOKEN,
];

// ---------------------------------------------------------------------------------------------
// STS as AWS answers it: AssumeRole checks the trust policy's sts:ExternalId.
// ---------------------------------------------------------------------------------------------

struct Sts {
    moto: String,
    iam: aws_sdk_iam::Client,
    http: reqwest::Client,
}

/// `%XX`-decoding (and `+` as a space) of an IAM policy document as IAM returns it.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or(""), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `sts:ExternalId` values the role's trust policy requires.
async fn required_external_ids(iam: &aws_sdk_iam::Client, role_arn: &str) -> Vec<String> {
    let name = role_arn.rsplit('/').next().unwrap_or_default();
    let Ok(role) = iam.get_role().role_name(name).send().await else {
        return Vec::new();
    };
    let doc = role
        .role()
        .map(|r| r.assume_role_policy_document())
        .unwrap_or_default()
        .unwrap_or_default();
    let policy: Value = serde_json::from_str(doc)
        .or_else(|_| serde_json::from_str(&percent_decode(doc)))
        .unwrap_or_default();
    let statements = match &policy["Statement"] {
        Value::Array(a) => a.clone(),
        one => vec![one.clone()],
    };
    statements
        .iter()
        .filter_map(|s| s["Condition"]["StringEquals"]["sts:ExternalId"].as_str())
        .map(str::to_string)
        .collect()
}

async fn sts_handler(
    axum::extract::State(sts): axum::extract::State<Arc<Sts>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let form: BTreeMap<String, String> =
        reqwest::Url::parse(&format!("http://form/?{}", String::from_utf8_lossy(&body)))
            .map(|u| u.query_pairs().into_owned().collect())
            .unwrap_or_default();
    if form.get("Action").map(String::as_str) == Some("AssumeRole") {
        let role = form.get("RoleArn").cloned().unwrap_or_default();
        let want = required_external_ids(&sts.iam, &role).await;
        if !want.is_empty() && !want.iter().any(|w| Some(w) == form.get("ExternalId")) {
            let xml = format!(
                "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User: arn:aws:iam::123456789012:user/testing is not authorized to perform: sts:AssumeRole on resource: {role}</Message></Error><RequestId>preflight-test</RequestId></ErrorResponse>"
            );
            return axum::response::Response::builder()
                .status(403)
                .header("content-type", "text/xml")
                .body(axum::body::Body::from(xml))
                .unwrap();
        }
    }
    let mut req = sts
        .http
        .request(method, format!("{}{}", sts.moto, uri))
        .body(body.to_vec());
    for (k, v) in &headers {
        if k != axum::http::header::HOST && k != axum::http::header::CONTENT_LENGTH {
            req = req.header(k, v);
        }
    }
    let resp = req.send().await.unwrap();
    let mut out = axum::response::Response::builder().status(resp.status());
    if let Some(ct) = resp.headers().get("content-type") {
        out = out.header("content-type", ct);
    }
    out.body(axum::body::Body::from(resp.bytes().await.unwrap()))
        .unwrap()
}

/// Starts the STS stand-in on loopback; returns its URL.
async fn start_sts(emu: &Emulator) -> String {
    let sts = Arc::new(Sts {
        moto: emu.endpoint().to_string(),
        iam: aws_sdk_iam::Client::new(&emu.sdk_config().await),
        http: reqwest::Client::new(),
    });
    let app = axum::Router::new().fallback(sts_handler).with_state(sts);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

// ---------------------------------------------------------------------------------------------
// The local stack
// ---------------------------------------------------------------------------------------------

struct Stack {
    emu: Emulator,
    _sim: mpas_sim::SimHandle,
    receiver: Receiver,
    rsyslog: Rsyslog,
    sts_url: String,
    dir: ScratchDir,
}

/// The forwarder configuration of the stack: every receiver we run, with its credentials.
fn forwarder_config(
    receiver: &Receiver,
    rsyslog: &Rsyslog,
    hec_token: &str,
    trust_hook: bool,
) -> Value {
    let ca = receiver.ca_path().display().to_string();
    let base = receiver.url();
    let mut hook = json!({"name": "webhook", "type": "http", "url": format!("{base}/ingest"),
        "token": HOOK_TOKEN});
    if trust_hook {
        hook["caBundle"] = json!(ca);
    }
    json!({"emitters": [
        {"name": "splunk", "type": "splunk-hec", "url": format!("{base}/services/collector/event"),
         "token": hec_token, "caBundle": ca},
        {"name": "elastic", "type": "elasticsearch", "url": base, "index": "authtrail",
         "token": ES_KEY, "caBundle": ca},
        hook,
        {"name": "syslog", "type": "syslog", "protocol": "TLS", "host": "127.0.0.1",
         "port": rsyslog.tls_port, "caBundle": ca, "connectTimeout": 5000}
    ]})
}

async fn start_stack() -> Stack {
    let dir = ScratchDir::new("preflight").unwrap();
    let emu = Emulator::start().await.expect("start moto");
    let sdk = emu.sdk_config().await;
    let sim = mpas_sim::start(mpas_sim::SimConfig {
        realm: "demo".into(),
        client_id: CLIENT_ID.into(),
        client_secret: mpas_sim::Secret::new(CLIENT_SECRET),
        history: 50,
        ..mpas_sim::SimConfig::default()
    })
    .await
    .unwrap();
    let receiver = Receiver::start(
        dir.path(),
        ReceiverOptions {
            splunk_token: HEC_TOKEN.into(),
            es_authorization: Some(format!("ApiKey {ES_KEY}")),
            ingest_auth: IngestAuth::Bearer(HOOK_TOKEN.into()),
            ..ReceiverOptions::default()
        },
    )
    .await
    .unwrap();
    let rsyslog = Rsyslog::start(&dir.path().join("rsyslog"), receiver.certs())
        .await
        .expect("rsyslogd with rsyslog-gnutls is needed (make apt-deps)");
    let s3 = emu.s3().await;
    emu.create_bucket("authtrail-code").await.unwrap();
    for f in ["archiver", "forwarder", "producer"] {
        s3.put_object()
            .bucket("authtrail-code")
            .key(format!("authtrail/0.1.0/authtrail-{f}.zip"))
            .body(EMPTY_ZIP.to_vec().into())
            .send()
            .await
            .unwrap();
    }
    let secret = aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name("preflight/mpas-credentials")
        .secret_string(json!({"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}).to_string())
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    let config = forwarder_config(&receiver, &rsyslog, HEC_TOKEN, true).to_string();
    let cfn = aws_sdk_cloudformation::Client::new(&sdk);
    let template =
        std::fs::read_to_string(workspace_root().join("cloudformation/pipeline.yaml")).unwrap();
    let mut req = cfn
        .create_stack()
        .stack_name(STACK)
        .template_body(template)
        .capabilities(aws_sdk_cloudformation::types::Capability::CapabilityIam);
    for (k, v) in [
        ("CodeBucket", "authtrail-code"),
        ("StreamName", "preflight-events"),
        ("ExternalId", EXTERNAL_ID),
        ("MpasBaseUrl", sim.base_url().as_str()),
        ("MpasRealm", "demo"),
        ("ExistingCredentialsSecretArn", secret.as_str()),
        ("ForwarderConfig", config.as_str()),
    ] {
        req = req.parameters(
            aws_sdk_cloudformation::types::Parameter::builder()
                .parameter_key(k)
                .parameter_value(v)
                .build(),
        );
    }
    req.send().await.unwrap();
    let desc = cfn
        .describe_stacks()
        .stack_name(STACK)
        .send()
        .await
        .unwrap();
    assert_eq!(
        desc.stacks()[0].stack_status().map(|s| s.as_str()),
        Some("CREATE_COMPLETE")
    );
    let sts_url = start_sts(&emu).await;
    Stack {
        emu,
        _sim: sim,
        receiver,
        rsyslog,
        sts_url,
        dir,
    }
}

/// Runs `authtrail-preflight` with `args` (and `env`) against the stack: exit code and
/// stdout + stderr.
fn preflight(stack: &Stack, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(bin_path("authtrail-preflight").unwrap())
        .args(args)
        .envs(stack.emu.env())
        .env("AWS_ENDPOINT_URL_STS", &stack.sts_url)
        .env("AUTHTRAIL_ALLOW_PLAINTEXT_SECRETS", "true")
        .env_remove("AUTHTRAIL_EXTERNAL_ID")
        .env_remove("AUTHTRAIL_MPAS_CLIENT_SECRET")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for secret in SECRETS {
        assert!(!text.contains(secret), "a secret was printed:\n{text}");
    }
    println!("$ authtrail-preflight {}\n{text}", args.join(" "));
    (out.status.code().unwrap_or(-1), text)
}

/// The check lines of a rendered report: name -> status word.
fn statuses(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let status = words.next()?;
            let name = words.next()?;
            ["ok", "FAILED", "skipped"]
                .contains(&status)
                .then(|| (name.to_string(), status.to_string()))
        })
        .collect()
}

/// Every check of the deployed stack, as the CLI names them.
const ALL_CHECKS: &[&str] = &[
    "writer.assume-role",
    "writer.stream",
    "mpas.reachable",
    "mpas.token",
    "mpas.events",
    "mpas.admin-events",
    "mpas.api-generation",
    "emitter.splunk",
    "emitter.elastic",
    "emitter.webhook",
    "emitter.syslog",
    "bucket.archive",
    "bucket.dead-letters",
    "bucket.spool",
    "bucket.checkpoint",
];

/// `text` reports exactly `failed` as failed and every other check of the stack as ok.
fn assert_only_failed(text: &str, failed: &[&str]) {
    let got = statuses(text);
    for name in ALL_CHECKS {
        let want = if failed.contains(name) {
            "FAILED"
        } else {
            "ok"
        };
        assert_eq!(
            got.get(*name).map(String::as_str),
            Some(want),
            "{name}:\n{text}"
        );
    }
}

fn write_config(dir: &Path, name: &str, config: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, config.to_string()).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_of_the_local_stack_is_ok_and_names_each_fault_without_printing_a_secret() {
    let stack = start_stack().await;
    let base = ["--stack", STACK];

    // All ok: the report, then the same as JSON.
    let (code, text) = preflight(&stack, &base, &[("AUTHTRAIL_EXTERNAL_ID", EXTERNAL_ID)]);
    assert_eq!(code, 0, "{text}");
    assert_only_failed(&text, &[]);
    assert!(
        text.starts_with("authtrail preflight from authtrail-preflight: 15 ok, 0 failed"),
        "{text}"
    );
    let (code, json_text) = preflight(
        &stack,
        &["--stack", STACK, "--json"],
        &[("AUTHTRAIL_EXTERNAL_ID", EXTERNAL_ID)],
    );
    assert_eq!(code, 0, "{json_text}");
    let report: Value = serde_json::from_str(&json_text).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["checks"].as_array().unwrap().len(), ALL_CHECKS.len());

    // A wrong External ID: the writer role cannot be assumed.
    let (code, text) = preflight(
        &stack,
        &base,
        &[("AUTHTRAIL_EXTERNAL_ID", WRONG_EXTERNAL_ID)],
    );
    assert_eq!(code, 1, "{text}");
    let got = statuses(&text);
    assert_eq!(got["writer.assume-role"], "FAILED", "{text}");
    assert_eq!(got["writer.stream"], "skipped", "{text}");
    assert!(
        text.contains("AccessDenied") && text.contains("fix: use the External ID"),
        "{text}"
    );

    // A wrong MPAS secret: no token.
    let (code, text) = preflight(
        &stack,
        &["--stack", STACK, "--mpas-client-id", CLIENT_ID],
        &[
            ("AUTHTRAIL_EXTERNAL_ID", EXTERNAL_ID),
            ("AUTHTRAIL_MPAS_CLIENT_SECRET", WRONG_CLIENT_SECRET),
        ],
    );
    assert_eq!(code, 1, "{text}");
    let got = statuses(&text);
    assert_eq!(got["mpas.reachable"], "ok", "{text}");
    assert_eq!(got["mpas.token"], "FAILED", "{text}");
    assert_eq!(got["mpas.events"], "skipped", "{text}");

    // A receiver whose certificate this emitter does not trust.
    let untrusted = write_config(
        stack.dir.path(),
        "untrusted.json",
        &forwarder_config(&stack.receiver, &stack.rsyslog, HEC_TOKEN, false),
    );
    let (code, text) = preflight(
        &stack,
        &["--stack", STACK, "--forwarder-config", &untrusted],
        &[("AUTHTRAIL_EXTERNAL_ID", EXTERNAL_ID)],
    );
    assert_eq!(code, 1, "{text}");
    assert_only_failed(&text, &["emitter.webhook"]);
    assert!(text.contains("TLS not verified"), "{text}");

    // A wrong HEC token.
    let wrong_token = write_config(
        stack.dir.path(),
        "wrong-token.json",
        &forwarder_config(&stack.receiver, &stack.rsyslog, WRONG_HEC_TOKEN, true),
    );
    let (code, text) = preflight(
        &stack,
        &["--stack", STACK, "--forwarder-config", &wrong_token],
        &[("AUTHTRAIL_EXTERNAL_ID", EXTERNAL_ID)],
    );
    assert_eq!(code, 1, "{text}");
    assert_only_failed(&text, &["emitter.splunk"]);
    assert!(text.contains("HEC refused the token"), "{text}");

    // No preflight delivered an event anywhere.
    assert!(
        stack
            .receiver
            .received()
            .iter()
            .all(|r| r.events.is_empty()),
        "{:?}",
        stack.receiver.received()
    );
    assert!(stack.rsyslog.messages().is_empty());
}

/// Starts a function binary with the environment the stack gave it, plus the emulator's.
async fn start_function(stack: &Stack, output: &str, binary: &str) -> LambdaFunction {
    let sdk = stack.emu.sdk_config().await;
    let cfn = aws_sdk_cloudformation::Client::new(&sdk);
    let desc = cfn
        .describe_stacks()
        .stack_name(STACK)
        .send()
        .await
        .unwrap();
    let name = desc.stacks()[0]
        .outputs()
        .iter()
        .find(|o| o.output_key() == Some(output))
        .and_then(|o| o.output_value())
        .unwrap()
        .to_string();
    let conf = aws_sdk_lambda::Client::new(&sdk)
        .get_function_configuration()
        .function_name(&name)
        .send()
        .await
        .unwrap();
    let mut env: Vec<(String, String)> = conf
        .environment()
        .and_then(|e| e.variables())
        .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    // moto's CloudFormation makes every KMS key a symmetric ENCRYPT_DECRYPT key, whatever
    // KeyUsage says: the archiver gets the asymmetric signing key AWS would build instead.
    if let Some(key) = env.iter_mut().find(|(k, _)| k == "ARCHIVE_DIGEST_KEY_ID") {
        let created = aws_sdk_kms::Client::new(&sdk)
            .create_key()
            .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
            .key_spec(aws_sdk_kms::types::KeySpec::EccNistP256)
            .send()
            .await
            .unwrap();
        key.1 = created.key_metadata().unwrap().arn().unwrap().to_string();
    }
    env.extend(stack.emu.env());
    env.push(("AUTHTRAIL_ALLOW_PLAINTEXT_SECRETS".into(), "true".into()));
    let mut cfg = FunctionConfig::new(binary, bin_path(binary).unwrap())
        .with_timeout(Duration::from_secs(60))
        .with_env(env);
    cfg.echo_logs = false;
    cfg.log_file = Some(stack.dir.path().join(format!("{binary}.log")));
    LambdaFunction::start(cfg).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_function_binary_answers_the_test_payload_with_its_report_from_where_it_runs() {
    let stack = start_stack().await;
    for (output, binary, names) in [
        (
            "ProducerFunctionName",
            "authtrail-producer",
            &[
                "config",
                "mpas.reachable",
                "mpas.token",
                "mpas.events",
                "mpas.admin-events",
                "mpas.api-generation",
                "stream",
                "bucket.checkpoint",
            ][..],
        ),
        (
            "ArchiverFunctionName",
            "authtrail-archiver",
            &[
                "config",
                "bucket.archive",
                "bucket.missing-is-404",
                "digests.sign",
            ][..],
        ),
        (
            "ForwarderFunctionName",
            "authtrail-forwarder",
            &[
                "config",
                "emitter.splunk",
                "emitter.elastic",
                "emitter.webhook",
                "emitter.syslog",
                "bucket.dead-letters",
                "bucket.spool",
            ][..],
        ),
    ] {
        let f = start_function(&stack, output, binary).await;
        let inv = f
            .invoke_json(&json!({"authtrail": "preflight"}))
            .await
            .unwrap();
        let body = inv
            .response()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_else(|| panic!("{binary}: {:?}\n{}", inv.outcome, f.logs()));
        for secret in SECRETS {
            assert!(!body.contains(secret), "{binary} printed a secret: {body}");
        }
        let report: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(report["preflight"], "authtrail", "{body}");
        let got: Vec<(&str, &str)> = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["name"].as_str().unwrap(), c["status"].as_str().unwrap()))
            .collect();
        assert_eq!(
            got,
            names.iter().map(|n| (*n, "ok")).collect::<Vec<_>>(),
            "{binary}: {body}"
        );
        assert_eq!(report["ok"], true, "{body}");
        f.shutdown().await;
    }
    // The forwarder's probes delivered nothing.
    assert!(
        stack
            .receiver
            .received()
            .iter()
            .all(|r| r.events.is_empty())
    );
    assert!(stack.rsyslog.messages().is_empty());
}
