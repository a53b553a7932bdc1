//! The `authtrail-preflight` command line: its arguments ([`Args`]), the preflight they
//! describe ([`preflight`]: the targets, then every check), the output (the report rendered or
//! as JSON) and the exit status ([`run`]).

use std::collections::BTreeMap;
use std::process::ExitCode;

use authtrail_core::preflight::{BucketProbe, Check, Report, probe_bucket, within};
use authtrail_core::secret::{Secret, fetch_secret_string};
use authtrail_producer::config::{Credentials, credentials_from_secret_json};
use authtrail_producer::preflight::{
    MPAS_LIMIT, MpasTarget, REQUEST_TIMEOUT, check_mpas, check_stream,
};
use clap::Parser;

use crate::PreflightError;
use crate::targets::{
    MpasSpec, StackView, Targets, WriterTarget, credential_secrets, parse_bucket,
};

/// Exit status: every check passed (or was skipped).
pub const EXIT_OK: u8 = 0;
/// Exit status: a check failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit status: the preflight could not run.
pub const EXIT_ERROR: u8 = 2;

/// Checks that an authtrail deployment can do its job, without sending an event anywhere: the
/// writer role assumable with its External ID and the stream describable with it; MPAS
/// reachable, the credentials granted a token, the token allowed to read events and admin
/// events, the server's API generation; every SIEM emitter reachable with TLS verified and its
/// credentials accepted; the buckets writable with the conditional writes the functions rely
/// on. Each check is reported as ok, failed (with what to fix) or skipped; no secret is ever
/// printed. Exit status: 0 all ok, 1 a check failed, 2 the preflight could not run.
#[derive(Parser, Debug, Default)]
#[command(name = "authtrail-preflight", version)]
pub struct Args {
    /// A deployed pipeline (or single-part) stack: its outputs and its functions' environment
    /// say what to check. The options below add to it or replace parts of it.
    #[arg(long)]
    pub stack: Option<String>,
    /// Also invoke the stack's functions with {"authtrail": "preflight"}, so that each checks
    /// from where it runs (inside its VPC, with its role); their checks are named
    /// FUNCTION:CHECK.
    #[arg(long, requires = "stack")]
    pub invoke: bool,
    /// The writer role's ARN (the stack's RoleArn output).
    #[arg(long)]
    pub role_arn: Option<String>,
    /// The External ID to assume the writer role with.
    #[arg(long, env = "AUTHTRAIL_EXTERNAL_ID", hide_env_values = true)]
    pub external_id: Option<String>,
    /// The stream (name or ARN).
    #[arg(long)]
    pub stream: Option<String>,
    /// MPAS's base URL.
    #[arg(long)]
    pub mpas_url: Option<String>,
    /// The MPAS realm.
    #[arg(long)]
    pub mpas_realm: Option<String>,
    /// The MPAS client id (client_credentials grant; with --mpas-username, the password
    /// grant's client, default admin-cli).
    #[arg(long)]
    pub mpas_client_id: Option<String>,
    /// The MPAS client secret to try (replaces the deployed one).
    #[arg(long, env = "AUTHTRAIL_MPAS_CLIENT_SECRET", hide_env_values = true)]
    pub mpas_client_secret: Option<String>,
    /// The MPAS user (password grant).
    #[arg(long)]
    pub mpas_username: Option<String>,
    /// The MPAS user's password to try.
    #[arg(long, env = "AUTHTRAIL_MPAS_PASSWORD", hide_env_values = true)]
    pub mpas_password: Option<String>,
    /// A Secrets Manager secret holding the MPAS credentials as JSON.
    #[arg(long)]
    pub mpas_credentials_secret_arn: Option<String>,
    /// A PEM file of CAs to trust for MPAS (as MPAS_CA_BUNDLE).
    #[arg(long)]
    pub mpas_ca_bundle: Option<String>,
    /// The forwarder's JSON configuration to check (a file), instead of the deployed one.
    #[arg(long)]
    pub forwarder_config: Option<String>,
    /// An S3 prefix to write with the conditions the functions rely on: NAME or NAME/PREFIX/
    /// (repeatable).
    #[arg(long = "bucket")]
    pub buckets: Vec<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs the preflight, prints the report, and returns the exit status.
pub async fn run(args: Args) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AUTHTRAIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    match preflight(&args).await {
        Ok(report) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                print!("{}", report.render());
            }
            ExitCode::from(if report.ok { EXIT_OK } else { EXIT_FAILED })
        }
        Err(e) => {
            eprintln!("authtrail-preflight: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// The targets of `args` (with the stack's), then every check, with every secret the targets
/// hold redacted from the report.
pub async fn preflight(args: &Args) -> Result<Report, PreflightError> {
    let sdk = authtrail_core::aws::load_sdk_config().await;
    let view = match &args.stack {
        Some(stack) => Some(read_stack(&sdk, stack).await?),
        None => None,
    };
    let targets = targets(args, view.as_ref())?;
    let mut secrets = targets.known_secrets();
    let mut report = Report::new("authtrail-preflight");
    if let Some(w) = &targets.writer {
        report.extend(crate::writer::check_writer(&sdk, w, targets.stream.as_deref()).await);
    } else if let Some(stream) = &targets.stream {
        let kinesis = aws_sdk_kinesis::Client::new(&sdk);
        report.push(
            within(
                "stream",
                REQUEST_TIMEOUT * 2,
                check_stream("stream", &kinesis, stream, false),
            )
            .await,
        );
    }
    if let Some(m) = &targets.mpas {
        let (checks, resolved) = mpas(&sdk, m).await;
        secrets.extend(resolved);
        report.extend(checks);
    }
    if let Some(json) = &targets.forwarder_config {
        let config = authtrail_forwarder::config::ForwarderConfig::parse(json)
            .map_err(|e| PreflightError::Config(format!("forwarder configuration: {e}")))?;
        report.extend(authtrail_forwarder::preflight::probe_config(&config, Some(&sdk)).await);
    }
    let s3 = authtrail_core::aws::s3_client(&sdk);
    for b in &targets.buckets {
        let probe = BucketProbe {
            name: &b.name,
            bucket: &b.bucket,
            key: &b.key,
            if_match: b.if_match,
            delete: b.delete,
        };
        report.push(within(&b.name, REQUEST_TIMEOUT * 3, probe_bucket(&s3, &probe)).await);
    }
    if args.invoke {
        let lambda = aws_sdk_lambda::Client::new(&sdk);
        for (label, name) in &targets.functions {
            report.extend(crate::invoke::check_function(&lambda, label, name).await);
        }
    }
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    report.redact(&secrets);
    Ok(report)
}

/// The MPAS checks, and the secret values read on the way (to redact).
async fn mpas(sdk: &aws_config::SdkConfig, m: &MpasSpec) -> (Vec<Check>, Vec<String>) {
    let credentials = match &m.credentials {
        Credentials::SecretArn(arn) => {
            let read = fetch_secret_string(sdk, arn)
                .await
                .map_err(|e| e.to_string())
                .and_then(|s| credentials_from_secret_json(arn, &s).map_err(|e| e.to_string()));
            match read {
                Ok(c) => c,
                Err(e) => {
                    return (
                        vec![Check::failed(
                            "mpas.token",
                            format!("the credentials could not be read: {e}"),
                            "grant these credentials secretsmanager:GetSecretValue on the secret, or give --mpas-client-secret",
                        )],
                        Vec::new(),
                    );
                }
            }
        }
        other => other.clone(),
    };
    let ca_bundle_pem = match &m.ca_bundle {
        Some(path) => match std::fs::read(path) {
            Ok(pem) => Some(pem),
            Err(e) => {
                return (
                    vec![Check::failed(
                        "mpas.reachable",
                        format!("{path}: {e}"),
                        "give a readable PEM file",
                    )],
                    Vec::new(),
                );
            }
        },
        None => None,
    };
    let secrets = credential_secrets(&credentials);
    let target = MpasTarget {
        base_url: m.base_url.clone(),
        realm: m.realm.clone(),
        credentials,
        ca_bundle_pem,
        ca_bundle_only: m.ca_bundle_only && m.ca_bundle.is_some(),
    };
    let checks = match tokio::time::timeout(MPAS_LIMIT, check_mpas(&target)).await {
        Ok(checks) => checks,
        Err(_) => vec![Check::failed(
            "mpas.reachable",
            format!("the MPAS checks took more than {} s", MPAS_LIMIT.as_secs()),
            "check the route to MPAS from here",
        )],
    };
    (checks, secrets)
}

/// The targets: the stack's, then the arguments over them.
pub fn targets(args: &Args, view: Option<&StackView>) -> Result<Targets, PreflightError> {
    let mut t = match view {
        Some(v) => Targets::from_stack(v)?,
        None => Targets::default(),
    };
    if let Some(role_arn) = &args.role_arn {
        t.writer = Some(WriterTarget {
            role_arn: role_arn.clone(),
            external_id: None,
        });
    }
    if let (Some(w), Some(id)) = (&mut t.writer, &args.external_id) {
        w.external_id = Some(Secret::new(id.clone()));
    }
    if args.stream.is_some() {
        t.stream = args.stream.clone();
    }
    mpas_arguments(args, &mut t)?;
    if let Some(path) = &args.forwarder_config {
        t.forwarder_config =
            Some(
                std::fs::read_to_string(path).map_err(|e| PreflightError::File {
                    path: path.clone(),
                    detail: e.to_string(),
                })?,
            );
    }
    for spec in &args.buckets {
        t.buckets.push(parse_bucket(spec)?);
    }
    if t.writer.is_none()
        && t.stream.is_none()
        && t.mpas.is_none()
        && t.forwarder_config.is_none()
        && t.buckets.is_empty()
    {
        return Err(PreflightError::Arguments(
            "nothing to check: give --stack, or --role-arn/--stream, --mpas-url, --forwarder-config or --bucket".into(),
        ));
    }
    Ok(t)
}

/// The MPAS arguments over the stack's MPAS.
fn mpas_arguments(args: &Args, t: &mut Targets) -> Result<(), PreflightError> {
    if let Some(url) = &args.mpas_url {
        let realm = args
            .mpas_realm
            .clone()
            .or_else(|| t.mpas.as_ref().map(|m| m.realm.clone()))
            .ok_or_else(|| PreflightError::Arguments("--mpas-url needs --mpas-realm".into()))?;
        t.mpas = Some(MpasSpec {
            base_url: url.trim_end_matches('/').to_string(),
            realm,
            credentials: Credentials::SecretArn(String::new()),
            ca_bundle: None,
            ca_bundle_only: false,
        });
    }
    let Some(m) = &mut t.mpas else {
        return Ok(());
    };
    if let Some(realm) = &args.mpas_realm {
        m.realm = realm.clone();
    }
    if args.mpas_ca_bundle.is_some() {
        m.ca_bundle = args.mpas_ca_bundle.clone();
    }
    if let Some(arn) = &args.mpas_credentials_secret_arn {
        m.credentials = Credentials::SecretArn(arn.clone());
    }
    if let (Some(username), Some(password)) = (&args.mpas_username, &args.mpas_password) {
        m.credentials = Credentials::Password {
            client_id: args
                .mpas_client_id
                .clone()
                .unwrap_or_else(|| "admin-cli".into()),
            client_secret: args.mpas_client_secret.clone().map(Secret::new),
            username: username.clone(),
            password: Secret::new(password.clone()),
        };
    } else if let Some(secret) = &args.mpas_client_secret {
        let client_id = args
            .mpas_client_id
            .clone()
            .or_else(|| match &m.credentials {
                Credentials::ClientCredentials { client_id, .. } => Some(client_id.clone()),
                _ => None,
            })
            .ok_or_else(|| {
                PreflightError::Arguments("--mpas-client-secret needs --mpas-client-id".into())
            })?;
        m.credentials = Credentials::ClientCredentials {
            client_id,
            client_secret: Secret::new(secret.clone()),
        };
    }
    if matches!(&m.credentials, Credentials::SecretArn(a) if a.is_empty()) {
        return Err(PreflightError::Arguments(
            "MPAS credentials: give --mpas-client-id and --mpas-client-secret, --mpas-username and --mpas-password, or --mpas-credentials-secret-arn".into(),
        ));
    }
    Ok(())
}

/// The stack's outputs and the environment of its functions.
pub async fn read_stack(
    sdk: &aws_config::SdkConfig,
    stack: &str,
) -> Result<StackView, PreflightError> {
    let err = |detail: String| PreflightError::Stack {
        stack: stack.to_string(),
        detail,
    };
    let cfn = aws_sdk_cloudformation::Client::new(sdk);
    let desc = cfn
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| err(authtrail_core::error_chain(&e)))?;
    let s = desc
        .stacks()
        .first()
        .ok_or_else(|| err("no such stack".into()))?;
    let outputs: BTreeMap<String, String> = s
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_string(), o.output_value()?.to_string())))
        .collect();
    let lambda = aws_sdk_lambda::Client::new(sdk);
    let mut functions = BTreeMap::new();
    for (label, key) in [
        ("producer", "ProducerFunctionName"),
        ("archiver", "ArchiverFunctionName"),
        ("forwarder", "ForwarderFunctionName"),
    ] {
        let Some(name) = outputs.get(key) else {
            continue;
        };
        let conf = lambda
            .get_function_configuration()
            .function_name(name)
            .send()
            .await
            .map_err(|e| PreflightError::Function {
                function: name.clone(),
                detail: authtrail_core::error_chain(&e),
            })?;
        let env: BTreeMap<String, String> = conf
            .environment()
            .and_then(|e| e.variables())
            .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        functions.insert(label.to_string(), (name.clone(), env));
    }
    if outputs.is_empty() {
        return Err(err(
            "the stack has no outputs (is it an authtrail stack?)".into()
        ));
    }
    Ok(StackView { outputs, functions })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn without_anything_to_check_the_arguments_are_refused() {
        let e = targets(&Args::default(), None).unwrap_err();
        assert!(e.to_string().contains("nothing to check"), "{e}");
    }

    #[test]
    fn mpas_arguments_make_a_target_and_new_credentials_replace_the_deployed_ones() {
        let args = Args {
            mpas_url: Some("https://mpas.example.com/".into()),
            mpas_realm: Some("demo".into()),
            mpas_client_id: Some("authtrail".into()),
            mpas_client_secret: Some("new-secret-value".into()),
            ..Args::default()
        };
        let t = targets(&args, None).unwrap();
        let m = t.mpas.as_ref().unwrap();
        assert_eq!(m.base_url, "https://mpas.example.com");
        assert!(
            matches!(&m.credentials, Credentials::ClientCredentials { client_id, client_secret } if client_id == "authtrail" && client_secret.expose() == "new-secret-value")
        );
        assert_eq!(t.known_secrets(), ["new-secret-value"]);
        let no_secret = Args {
            mpas_url: Some("https://mpas.example.com".into()),
            mpas_realm: Some("demo".into()),
            ..Args::default()
        };
        assert!(targets(&no_secret, None).is_err());
    }

    #[test]
    fn the_external_id_argument_goes_to_the_writer_role_and_is_a_known_secret() {
        let args = Args {
            role_arn: Some("arn:aws:iam::123456789012:role/w".into()),
            external_id: Some("ext-0123456789abcdef0123456789abcdef".into()),
            stream: Some("s".into()),
            ..Args::default()
        };
        let t = targets(&args, None).unwrap();
        assert_eq!(t.known_secrets(), ["ext-0123456789abcdef0123456789abcdef"]);
    }
}
