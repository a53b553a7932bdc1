//! The `mpas-sim` binary: one listening line on stdout, a working API, clean SIGTERM shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

#[tokio::test]
async fn binary_prints_its_listening_line_answers_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mpas-sim"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--realm",
            "demo",
            "--client-id",
            "authtrail",
            "--client-secret",
            "cli-secret",
            "--seed",
            "42",
            "--rate",
            "200",
            "--history",
            "500",
            "--late-fraction",
            "0.05",
            "--tie-fraction",
            "0.05",
            "--fault-500",
            "0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(30), stdout.read_line(&mut line))
        .await
        .expect("no listening line within 30 s")
        .unwrap();
    let base = line
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    assert!(base.starts_with("http://127.0.0.1:"));

    let http = reqwest::Client::new();
    let token: serde_json::Value = http
        .post(format!("{base}/realms/demo/protocol/openid-connect/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "authtrail"),
            ("client_secret", "cli-secret"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap();
    let events: Vec<serde_json::Value> = http
        .get(format!("{base}/admin/realms/demo/events"))
        .bearer_auth(token)
        .query(&[("max", "1000")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(events.len() > 300, "history served: {}", events.len());

    let pid = child.id().unwrap();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("did not stop within 20 s of SIGTERM")
        .unwrap();
    assert!(exit.success(), "exit status {exit:?}");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).await.unwrap();
    assert_eq!(rest, "", "nothing but the listening line on stdout");
}

#[tokio::test]
async fn binary_rejects_an_invalid_configuration_with_exit_code_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_mpas-sim"))
        .args(["--fault-500", "0.8", "--fault-429", "0.8"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("faults"));
}
