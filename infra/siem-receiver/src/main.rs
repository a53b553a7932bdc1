//! `siem-receiver`: runs the local HTTPS SIEM receiver until interrupted.

use std::path::PathBuf;

use clap::Parser;
use siem_receiver::{IngestAuth, Receiver, ReceiverOptions};

#[derive(Parser, Debug)]
#[command(
    about = "Local HTTPS SIEM receiver (Splunk HEC, Elasticsearch _bulk, generic /ingest) that checks wire formats"
)]
struct Args {
    /// Directory for the generated CA (ca.pem), server certificate and key.
    #[arg(long, default_value = "siem-receiver-certs")]
    cert_dir: PathBuf,
    /// Port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// HEC token Splunk requests must carry.
    #[arg(
        long,
        env = "SIEM_RECEIVER_SPLUNK_TOKEN",
        default_value = "test-hec-token"
    )]
    splunk_token: String,
    /// Bearer token /ingest requires (none: no auth).
    #[arg(long, env = "SIEM_RECEIVER_INGEST_TOKEN")]
    ingest_token: Option<String>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let options = ReceiverOptions {
        splunk_token: args.splunk_token,
        ingest_auth: args
            .ingest_token
            .map(IngestAuth::Bearer)
            .unwrap_or_default(),
        es_authorization: None,
        port: args.port,
    };
    let receiver = Receiver::start(&args.cert_dir, options).await?;
    println!("listening on {}", receiver.url());
    println!("ca bundle {}", receiver.ca_path().display());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
