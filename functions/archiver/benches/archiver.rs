//! Benchmark of the archiver's CPU path: a full `KinesisEvent` payload in, finished compressed
//! archive body out (parse, base64, validation, gzip or zstd), on one thread, with peak heap;
//! then the same job done by a plain Python archiver (`benches/peer_archiver.py`: `json.loads`
//! per record, gzip, one boto3 `put_object` to an in-memory stand-in) on the same payload in the
//! same run, with the ratio of the two times at the same gzip level.
//!
//! Run with `cargo bench -p authtrail-archiver --bench archiver` (or `make bench`).
//! Set `ARCHIVER_BENCH_RUNS` to change the number of timed runs (default 30) and
//! `ARCHIVER_BENCH_PYTHON` to choose the peer's interpreter (default: the project's `.venv`,
//! else `python3`; the peer is skipped, saying so, when none runs).

// The counting allocator below needs `unsafe impl GlobalAlloc`; the workspace denies unsafe
// code, so it is allowed here only, for this measurement-only allocator that forwards to the
// system allocator.
#![allow(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use authtrail_archiver::config::{Compression, DEFAULT_GZIP_LEVEL, ZSTD_LEVEL};
use authtrail_archiver::{batch, digest, jsonscan};
use authtrail_core::s3key::{hourly_key, utc_from_epoch_seconds};
use base64::Engine;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to `System` unchanged and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let now = CURRENT.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size
                    - layout.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Lambda's invoke payload limit.
const PAYLOAD_LIMIT: usize = 6_291_456;

/// A deterministic pseudo-random generator (no dependency needed).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 11
    }
    fn hex(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b"0123456789abcdef"[(self.next() % 16) as usize]))
            .collect()
    }
    fn uuid(&mut self) -> String {
        format!(
            "{}-{}-{}-{}-{}",
            self.hex(8),
            self.hex(4),
            self.hex(4),
            self.hex(4),
            self.hex(12)
        )
    }
}

/// One envelope line (Contract 1) of about `target` bytes.
fn envelope(rng: &mut Lcg, i: u64, target: usize) -> Vec<u8> {
    let types = [
        "LOGIN",
        "LOGIN_ERROR",
        "CODE_TO_TOKEN",
        "REFRESH_TOKEN",
        "LOGOUT",
    ];
    let time = 1_739_388_470_156u64 + i * 37;
    let mut line = format!(
        "{{\"timestamp\":\"2025-02-12T19:27:{:02}.{:03}Z\",\"eventType\":\"user-event\",\"event\":{{\"id\":\"{}\",\"time\":{time},\"type\":\"{}\",\"realmId\":\"{}\",\"clientId\":\"account-console\",\"userId\":\"{}\",\"sessionId\":\"{}\",\"ipAddress\":\"<redacted>\",\"details\":{{\"auth_method\":\"openid-connect\",\"username\":\"<redacted>\",\"redirect_uri\":\"https://app.example.com/cb\",\"code_id\":\"{}\"",
        (i / 1000) % 60,
        i % 1000,
        rng.uuid(),
        types[(rng.next() % 5) as usize],
        rng.uuid(),
        rng.uuid(),
        rng.uuid(),
        rng.uuid(),
    );
    let pad = target.saturating_sub(line.len() + 16);
    line.push_str(&format!(",\"x\":\"{}\"", rng.hex(pad)));
    line.push_str("}}}\n");
    line.into_bytes()
}

/// A `KinesisEvent` payload as Lambda sends it (field order as AWS's) with `n` records of
/// about `size` bytes; `n = None` fills the payload up to Lambda's 6 MB limit.
fn payload(n: Option<usize>, size: usize) -> (Vec<u8>, usize, usize) {
    let mut rng = Lcg(42);
    let mut out = String::from("{\"Records\":[");
    let mut count = 0usize;
    let mut data_bytes = 0usize;
    loop {
        if n.is_some_and(|n| count >= n) {
            break;
        }
        let data = envelope(&mut rng, count as u64, size);
        let seq = format!(
            "49590338271490256608559692538361571095921575989136{:06}",
            count
        );
        let rec = format!(
            "{}{{\"kinesis\":{{\"kinesisSchemaVersion\":\"1.0\",\"partitionKey\":\"{}\",\"sequenceNumber\":\"{seq}\",\"data\":\"{}\",\"approximateArrivalTimestamp\":{}.{:03}}},\"eventSource\":\"aws:kinesis\",\"eventVersion\":\"1.0\",\"eventID\":\"shardId-000000000000:{seq}\",\"eventName\":\"aws:kinesis:record\",\"invokeIdentityArn\":\"arn:aws:iam::123456789012:role/authtrail-archiver-role\",\"awsRegion\":\"us-east-1\",\"eventSourceARN\":\"arn:aws:kinesis:us-east-1:123456789012:stream/authtrail-events\"}}",
            if count == 0 { "" } else { "," },
            rng.uuid(),
            base64::engine::general_purpose::STANDARD.encode(&data),
            1_739_388_470 + count / 100,
            count % 1000,
        );
        if n.is_none() && out.len() + rec.len() + 2 > PAYLOAD_LIMIT {
            break;
        }
        out.push_str(&rec);
        count += 1;
        data_bytes += data.len();
    }
    out.push_str("]}");
    (out.into_bytes(), count, data_bytes)
}

/// The handler's CPU path: payload bytes to finished archive body, with what each PUT of it
/// carries that costs CPU: its key, its metadata and the SHA-256 of the stored bytes (hex for
/// the digest ledger, base64 for `x-amz-checksum-sha256`). Returns the stored bytes' size.
fn archive_once(payload: &[u8], compression: Compression) -> usize {
    let ev = authtrail_core::kinesis::parse(payload).unwrap();
    let mut out = 0;
    for group in batch::group_by_shard(&ev.records) {
        let b = batch::build(group).unwrap();
        let body = batch::archive_body(&b, 0..b.goods.len(), compression).unwrap();
        let (first, last) = (&b.goods[0], &b.goods[b.goods.len() - 1]);
        let key = hourly_key(
            "raw/",
            utc_from_epoch_seconds(first.arrival),
            &[&b.stream, &b.shard, &first.seq],
            &format!(".{}", compression.extension()),
        );
        let metadata: BTreeMap<&str, String> = [
            ("first-sequence-number", first.seq.to_string()),
            ("last-sequence-number", last.seq.to_string()),
            ("record-count", b.goods.len().to_string()),
        ]
        .into();
        let (hex, base64) = digest::sha256_hex_and_base64(&body);
        black_box((key, metadata, hex, base64));
        out += body.len();
    }
    out
}

/// The same with `aws_lambda_events`' owned types (parse and base64 only), for comparison.
fn parse_with_aws_lambda_events(payload: &[u8]) -> usize {
    let ev: aws_lambda_events::event::kinesis::KinesisEvent =
        serde_json::from_slice(payload).unwrap();
    ev.records.iter().map(|r| r.kinesis.data.len()).sum()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Times `f` warm and prints the figures; returns the median in milliseconds.
fn measure(label: &str, runs: usize, f: impl Fn() -> usize) -> f64 {
    black_box(f()); // warm-up
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let mut times = Vec::with_capacity(runs);
    let mut out = 0;
    for _ in 0..runs {
        let t = Instant::now();
        out = black_box(f());
        times.push(t.elapsed());
    }
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    let min = times.iter().min().copied().unwrap_or_default();
    let median_ms = median(times).as_secs_f64() * 1e3;
    println!(
        "  {label:<52} median {median_ms:>7.2} ms  min {:>7.2} ms  peak heap above input {:>6.1} MB  output {:>9} B",
        min.as_secs_f64() * 1e3,
        peak as f64 / 1_048_576.0,
        out
    );
    median_ms
}

/// zstd's compression context lives on the C heap, which the counting allocator does not see:
/// its size after compressing the payload's records once, in bytes.
fn zstd_context_bytes(payload: &[u8]) -> usize {
    let ev = authtrail_core::kinesis::parse(payload).unwrap();
    let mut size = 0;
    for group in batch::group_by_shard(&ev.records) {
        let b = batch::build(group).unwrap();
        let mut cctx = zstd::zstd_safe::CCtx::create();
        cctx.set_parameter(zstd::zstd_safe::CParameter::CompressionLevel(ZSTD_LEVEL))
            .unwrap();
        let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(b.body.len()));
        cctx.compress2(&mut out, &b.body).unwrap();
        size = size.max(cctx.sizeof());
    }
    size
}

/// The Python interpreter for the peer.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("ARCHIVER_BENCH_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// One line of the peer's output: median and output size.
#[derive(Debug, Clone, Copy)]
struct PeerFigure {
    median_ms: f64,
    output: usize,
}

/// Runs the Python peer on `data` (the event payload; with `--compress-only`, an archive
/// body) at the given levels (`none` or 0-9): its figures per level, printed as they come.
fn run_peer(
    mode: Option<&str>,
    data: &[u8],
    runs: usize,
    levels: &[&str],
) -> Result<BTreeMap<String, PeerFigure>, String> {
    let file = std::env::temp_dir().join(format!("archiver-bench-{}.bin", std::process::id()));
    std::fs::write(&file, data).map_err(|e| e.to_string())?;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/peer_archiver.py");
    let out = Command::new(python())
        .arg(&script)
        .args(mode)
        .arg(&file)
        .arg(runs.to_string())
        .args(levels)
        .output();
    let _ = std::fs::remove_file(&file);
    let out = out.map_err(|e| format!("cannot start {}: {e}", python().display()))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let mut figures = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let fields: BTreeMap<&str, &str> = line
            .split_whitespace()
            .filter_map(|f| f.split_once('='))
            .collect();
        let (Some(level), Some(ms)) = (fields.get("level"), fields.get("median_ms")) else {
            continue;
        };
        let what = match (mode, *level) {
            (Some(_), l) => format!("Python zlib alone, gzip.compress level {l}"),
            (None, "none") => "Python peer, no compression".to_string(),
            (None, l) => format!("Python peer, gzip level {l}"),
        };
        let detail = match fields.get("zlib") {
            Some(z) => format!("zlib {z}"),
            None => format!("boto3 {}", fields.get("boto3").unwrap_or(&"?")),
        };
        println!(
            "  {what:<52} median {ms:>7} ms  min {:>7} ms  ({detail}){:>17}output {:>9} B",
            fields.get("min_ms").unwrap_or(&"?"),
            "",
            fields.get("output").unwrap_or(&"?"),
        );
        if let (Ok(median_ms), Some(Ok(output))) =
            (ms.parse(), fields.get("output").map(|o| o.parse()))
        {
            figures.insert(level.to_string(), PeerFigure { median_ms, output });
        }
    }
    Ok(figures)
}

/// The CPU stages of the job one by one on `payload` (medians), to read the whole against its
/// parts. Returns the archive body (the records' lines, uncompressed).
fn stages(payload: &[u8], runs: usize) -> bytes::Bytes {
    let ev = authtrail_core::kinesis::parse(payload).unwrap();
    measure("stage: event parse (core's borrowed reader)", runs, || {
        authtrail_core::kinesis::parse(payload)
            .unwrap()
            .records
            .len()
    });
    let capacity: usize = ev.records.iter().map(|r| r.data_base64().len()).sum();
    let mut body = Vec::with_capacity(capacity);
    let mut ranges = Vec::new();
    for r in &ev.records {
        let start = body.len();
        r.decode_data_into(&mut body).unwrap();
        ranges.push(start..body.len());
    }
    measure("stage: base64 of every record into one body", runs, || {
        let mut out = Vec::with_capacity(capacity);
        for r in &ev.records {
            r.decode_data_into(&mut out).unwrap();
        }
        out.len()
    });
    measure("stage: UTF-8 check of every record", runs, || {
        let ok = |r: &std::ops::Range<usize>| std::str::from_utf8(&body[r.clone()]).is_ok();
        ranges.iter().filter(|r| ok(r)).count()
    });
    measure(
        "stage: JSON check, serde_json IgnoredAny (before)",
        runs,
        || {
            let ok = |r: &std::ops::Range<usize>| {
                let text = std::str::from_utf8(&body[r.clone()]).unwrap();
                serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
            };
            ranges.iter().filter(|r| ok(r)).count()
        },
    );
    measure("stage: JSON check, validating scanner (now)", runs, || {
        let ok = |r: &std::ops::Range<usize>| jsonscan::is_json(&body[r.clone()]);
        ranges.iter().filter(|r| ok(r)).count()
    });
    measure("stage: batch::build (base64 + all checks)", runs, || {
        let groups = batch::group_by_shard(&ev.records);
        groups
            .into_iter()
            .map(|g| batch::build(g).unwrap().goods.len())
            .sum()
    });
    let body = bytes::Bytes::from(body);
    let gz6 = batch::compress(body.clone(), Compression::Gzip { level: 6 }).unwrap();
    measure(
        "stage: SHA-256 (hex + base64) of the gzip 6 bytes",
        runs,
        || digest::sha256_hex_and_base64(&gz6).0.len(),
    );
    body
}

/// The stored size of `body` at each libdeflate level 1-9.
fn gzip_sizes(body: &bytes::Bytes) -> Vec<(u32, usize)> {
    (1..=9)
        .map(|level| {
            let out = batch::compress(body.clone(), Compression::Gzip { level }).unwrap();
            (level, out.len())
        })
        .collect()
}

/// The comparisons with the Python peer on the full event (README, "Performance").
fn compare_with_peer(p: &[u8], runs: usize, ours: &BTreeMap<&str, f64>, body: &bytes::Bytes) {
    let peer = match run_peer(None, p, runs, &["6", "1", "none"]) {
        Ok(peer) => peer,
        Err(e) => return println!("  Python peer skipped: {}", e.trim()),
    };
    println!("  HEADLINE, same nominal gzip level (whole job, warm):");
    for (level, label) in [("6", "gzip 6"), ("1", "gzip 1")] {
        if let (Some(theirs), Some(us)) = (peer.get(level), ours.get(label)) {
            let theirs = theirs.median_ms;
            println!(
                "    ratio at gzip level {level}: Python peer {theirs:.2} ms / authtrail {us:.2} ms = {:.2}x",
                theirs / us
            );
        }
    }
    let Some(peer6) = peer.get("6").copied() else {
        return;
    };
    if let Some(z) = ours.get("zstd") {
        println!(
            "    (other format) Python peer gzip 6 / authtrail zstd {ZSTD_LEVEL}: {:.2} ms / {z:.2} ms = {:.2}x",
            peer6.median_ms,
            peer6.median_ms / z
        );
    }
    println!(
        "  (a) the compressor alone, on the same {} B body:",
        body.len()
    );
    let ours6 = measure("libdeflate gzip level 6 alone", runs, || {
        batch::compress(body.clone(), Compression::Gzip { level: 6 })
            .unwrap()
            .len()
    });
    if let Ok(z) = run_peer(Some("--compress-only"), body, runs, &["6"])
        && let Some(z6) = z.get("6")
    {
        println!(
            "    compressor alone at level 6: zlib {:.2} ms / libdeflate {ours6:.2} ms = {:.2}x",
            z6.median_ms,
            z6.median_ms / ours6
        );
        let peer_rest = peer6.median_ms - z6.median_ms;
        println!(
            "    the peer's job at level 6 without its compressor: {:.2} ms; 5x of the peer is {:.2} ms, libdeflate level 6 alone takes {ours6:.2} ms of it",
            peer_rest,
            peer6.median_ms / 5.0
        );
    }
    println!(
        "  (b) everything but compression (ARCHIVE_COMPRESSION=none vs the peer without gzip):"
    );
    if let (Some(theirs), Some(us)) = (peer.get("none"), ours.get("none")) {
        println!(
            "    ratio without compression: Python peer {:.2} ms / authtrail {us:.2} ms = {:.2}x",
            theirs.median_ms,
            theirs.median_ms / us
        );
    }
    println!(
        "  (c) at equal or smaller output than the peer's gzip 6 ({} B):",
        peer6.output
    );
    let sizes = gzip_sizes(body);
    let sizes_text: Vec<String> = sizes.iter().map(|(l, n)| format!("{l}: {n}")).collect();
    println!("    libdeflate output by level: {}", sizes_text.join(", "));
    let Some(&(level, size)) = sizes.iter().find(|(_, n)| *n <= peer6.output) else {
        return println!("    no libdeflate level writes an object that small");
    };
    let whole = measure(
        &format!("whole job, libdeflate gzip level {level}"),
        runs,
        || archive_once(p, Compression::Gzip { level }),
    );
    println!(
        "    ratio at equal or smaller output: Python peer gzip 6 {:.2} ms ({} B) / authtrail gzip level {level} {whole:.2} ms ({size} B) = {:.2}x",
        peer6.median_ms,
        peer6.output,
        peer6.median_ms / whole
    );
}

fn main() {
    let runs: usize = std::env::var("ARCHIVER_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    println!(
        "archiver bench: payload -> finished archive body + its key, metadata and SHA-256, one thread, {runs} runs"
    );
    let scenarios: [(&str, Option<usize>, usize); 2] = [
        ("full 6 MB event, ~520 B records", None, 520),
        ("issue's 9,000 x 500 B records", Some(9_000), 500),
    ];
    for (name, n, size) in scenarios {
        let (p, count, data) = payload(n, size);
        let fits = if p.len() <= PAYLOAD_LIMIT {
            "fits the 6 MB limit"
        } else {
            "EXCEEDS Lambda's 6 MB limit: Lambda would never send it"
        };
        println!(
            "{name}: {count} records, {:.2} MB payload ({fits}), {:.2} MB record data",
            p.len() as f64 / 1_048_576.0,
            data as f64 / 1_048_576.0
        );
        let mut ours = BTreeMap::new();
        let level1 = Compression::Gzip {
            level: DEFAULT_GZIP_LEVEL,
        };
        let jobs = [
            ("gzip 1", "gzip level 1 (default)", level1),
            ("gzip 6", "gzip level 6", Compression::Gzip { level: 6 }),
            (
                "zstd",
                "zstd level 3",
                Compression::Zstd { level: ZSTD_LEVEL },
            ),
            ("none", "no compression", Compression::None),
        ];
        for (id, label, compression) in jobs {
            let median = measure(&format!("whole job, {label}"), runs, || {
                archive_once(&p, compression)
            });
            ours.insert(id, median);
            if id == "zstd" {
                println!(
                    "  {:<52} {:.1} MB (C heap, add to the zstd line's peak)",
                    "zstd context",
                    zstd_context_bytes(&p) as f64 / 1_048_576.0
                );
            }
        }
        measure("(reference) aws_lambda_events parse only", runs, || {
            parse_with_aws_lambda_events(&p)
        });
        if p.len() > PAYLOAD_LIMIT {
            continue;
        }
        let body = stages(&p, runs);
        compare_with_peer(&p, runs, &ours, &body);
    }
}
