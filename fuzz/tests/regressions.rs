//! Replays the seed corpora (`corpus/<target>/`) and the saved findings
//! (`regressions/<target>/`: inputs that once crashed a target, fixed since) through the same
//! entry points as the fuzz targets, in the ordinary test suite (stable toolchain):
//! `cargo test --manifest-path fuzz/Cargo.toml`. Open findings (`findings/<target>/`, not fixed
//! yet) are replayed by an ignored test, run with `-- --ignored`.

use std::path::{Path, PathBuf};

/// The files under `dir/<target>/` for every target, with their target.
fn inputs(dir: &str) -> Vec<(&'static str, PathBuf)> {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut found = Vec::new();
    for &target in authtrail_fuzz::TARGETS {
        let Ok(entries) = std::fs::read_dir(base.join(target)) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
        paths.sort();
        found.extend(
            paths
                .into_iter()
                .filter(|p| p.is_file())
                .map(|p| (target, p)),
        );
    }
    found
}

/// Runs every input through its target; the inputs that panicked.
fn replay(dir: &str) -> (usize, Vec<String>) {
    let all = inputs(dir);
    let mut failed = Vec::new();
    for (target, path) in &all {
        let Ok(data) = std::fs::read(path) else {
            failed.push(format!("{}: unreadable", path.display()));
            continue;
        };
        let outcome = std::panic::catch_unwind(|| authtrail_fuzz::run_target(target, &data));
        match outcome {
            Ok(true) => {}
            Ok(false) => failed.push(format!("{}: no target {target}", path.display())),
            Err(_) => failed.push(format!("{target}: {}", path.display())),
        }
    }
    (all.len(), failed)
}

#[test]
fn every_seed_input_passes_its_target() {
    let (n, failed) = replay("corpus");
    assert!(
        n >= authtrail_fuzz::TARGETS.len(),
        "seed corpora missing: {n} inputs"
    );
    assert!(failed.is_empty(), "seed inputs that fail: {failed:#?}");
}

#[test]
fn every_fixed_finding_stays_fixed() {
    let (_, failed) = replay("regressions");
    assert!(failed.is_empty(), "regressions: {failed:#?}");
}

#[test]
#[ignore = "open findings fail until their owners fix them; then move them to regressions/"]
fn open_findings_are_fixed() {
    let (_, failed) = replay("findings");
    assert!(failed.is_empty(), "open findings: {failed:#?}");
}

#[test]
fn the_mpas_target_reaches_the_page_reader_and_its_errors() {
    let token = br#"{"access_token":"t","expires_in":300,"token_type":"Bearer"}"#;
    let page = br#"[{"id":"e1","time":1739388470156,"type":"LOGIN"},{"id":"e2","time":1739388470157,"type":"LOGOUT"}]"#;
    let input = |status: u8, page: &[u8]| {
        let parts: [&[u8]; 5] = [&[status], token, b"\0", page, b"\0"];
        parts.concat()
    };
    assert_eq!(
        authtrail_fuzz::mpas_client::fetch(&input(0, page)),
        Some(Ok(2))
    );
    let garbage = authtrail_fuzz::mpas_client::fetch(&input(0, b"[{"));
    assert!(matches!(garbage, Some(Err(_))), "{garbage:?}");
    let refused = authtrail_fuzz::mpas_client::fetch(&input(3, br#"{"error":"bad"}"#));
    assert!(matches!(refused, Some(Err(e)) if e.contains("400")));
}
