//! The Kafka wire protocol, as much of it as a producer needs: request framing, `ApiVersions`
//! (v0), `Metadata` (v4-v8), `Produce` (v3-v8), `SaslHandshake` (v1) and `SaslAuthenticate`
//! (v0-v1), all in their non-flexible encodings (the record batch is in [`super::batch`]).
//! Every version used is one that Apache Kafka 4.x still serves (KIP-896) and that MSK and the
//! test broker answer.
//!
//! Reading never panics on what a broker sends: a short or malformed answer is a
//! [`WireError`].

use std::collections::BTreeMap;

/// `Produce`.
pub const PRODUCE: i16 = 0;
/// `Metadata`.
pub const METADATA: i16 = 3;
/// `SaslHandshake`.
pub const SASL_HANDSHAKE: i16 = 17;
/// `ApiVersions`.
pub const API_VERSIONS: i16 = 18;
/// `SaslAuthenticate`.
pub const SASL_AUTHENTICATE: i16 = 36;

/// The versions this client speaks, per API: (key, lowest, highest).
pub const SPOKEN: &[(i16, i16, i16)] = &[
    (PRODUCE, 3, 8),
    (METADATA, 4, 8),
    (SASL_HANDSHAKE, 1, 1),
    (SASL_AUTHENTICATE, 0, 1),
];

/// Largest response frame accepted (a metadata answer of a big cluster fits many times).
pub const MAX_RESPONSE: usize = 64 * 1024 * 1024;

/// Per API key, the lowest and highest version a broker serves.
pub type ApiVersions = BTreeMap<i16, (i16, i16)>;

/// A broker answer that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub &'static str);

/// Builds one request frame: the size, the v1 request header, then the body.
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// A frame for `api_key` at `version` with `correlation_id`, from client `client_id`;
    /// `capacity` is a hint of the body's size.
    pub fn request(
        api_key: i16,
        version: i16,
        correlation_id: i32,
        client_id: &str,
        capacity: usize,
    ) -> Self {
        let mut w = Writer {
            buf: Vec::with_capacity(capacity + 32 + client_id.len()),
        };
        w.i32(0);
        w.i16(api_key);
        w.i16(version);
        w.i32(correlation_id);
        w.string(client_id);
        w
    }

    /// A plain buffer (record batches, SASL payloads).
    pub fn plain(capacity: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(capacity),
        }
    }

    /// The frame with its size filled in.
    pub fn finish_frame(mut self) -> Vec<u8> {
        let size = (self.buf.len() - 4) as i32;
        self.buf[..4].copy_from_slice(&size.to_be_bytes());
        self.buf
    }

    /// The bytes written.
    pub fn into_inner(self) -> Vec<u8> {
        self.buf
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Overwrites four bytes at `at` with `v` (a length or CRC written after its contents).
    pub fn patch_u32(&mut self, at: usize, v: u32) {
        if let Some(slot) = self.buf.get_mut(at..at + 4) {
            slot.copy_from_slice(&v.to_be_bytes());
        }
    }

    /// The bytes from `at` to the end.
    pub fn tail(&self, at: usize) -> &[u8] {
        self.buf.get(at..).unwrap_or_default()
    }

    /// Raw bytes.
    pub fn raw(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// `INT8`.
    pub fn i8(&mut self, v: i8) {
        self.buf.push(v as u8);
    }

    /// `INT16`.
    pub fn i16(&mut self, v: i16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// `INT32`.
    pub fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// `INT64`.
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// `BOOLEAN`.
    pub fn bool(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }

    /// `STRING` (INT16 length; the names written here are short).
    pub fn string(&mut self, s: &str) {
        let n = s.len().min(i16::MAX as usize);
        self.i16(n as i16);
        self.raw(s.as_bytes().get(..n).unwrap_or_default());
    }

    /// `NULLABLE_STRING`.
    pub fn nullable_string(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.string(s),
            None => self.i16(-1),
        }
    }

    /// `BYTES` (INT32 length).
    pub fn bytes(&mut self, b: &[u8]) {
        self.i32(b.len() as i32);
        self.raw(b);
    }

    /// An array's length (INT32).
    pub fn array_len(&mut self, n: usize) {
        self.i32(n as i32);
    }

    /// `VARINT` (zig-zag).
    pub fn varint(&mut self, v: i32) {
        self.varlong(i64::from(v));
    }

    /// `VARLONG` (zig-zag).
    pub fn varlong(&mut self, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            self.buf.push((z as u8) | 0x80);
            z >>= 7;
        }
        self.buf.push(z as u8);
    }
}

/// Reads one response body.
pub struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader of `b`.
    pub fn new(b: &'a [u8]) -> Self {
        Reader { b }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.b.len() < n {
            return Err(WireError("answer cut short"));
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// `INT16`.
    pub fn i16(&mut self) -> Result<i16, WireError> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    /// `INT32`.
    pub fn i32(&mut self) -> Result<i32, WireError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    /// `INT64`.
    pub fn i64(&mut self) -> Result<i64, WireError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    /// `BOOLEAN`.
    pub fn bool(&mut self) -> Result<bool, WireError> {
        Ok(self.take(1)?.first().is_some_and(|b| *b != 0))
    }

    /// `NULLABLE_STRING` (a null is `None`).
    pub fn nullable_string(&mut self) -> Result<Option<String>, WireError> {
        let n = self.i16()?;
        if n < 0 {
            return Ok(None);
        }
        let b = self.take(n as usize)?;
        Ok(Some(String::from_utf8_lossy(b).into_owned()))
    }

    /// `STRING`.
    pub fn string(&mut self) -> Result<String, WireError> {
        Ok(self.nullable_string()?.unwrap_or_default())
    }

    /// `BYTES` / `NULLABLE_BYTES` (a null is empty).
    pub fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.i32()?;
        if n < 0 {
            return Ok(&[]);
        }
        self.take(n as usize)
    }

    /// An array's length (a null array is empty); bounded by the bytes left.
    pub fn array_len(&mut self) -> Result<usize, WireError> {
        let n = self.i32()?;
        let n = usize::try_from(n).unwrap_or(0);
        if n > self.b.len() {
            return Err(WireError("array longer than the answer"));
        }
        Ok(n)
    }

    /// An array of `INT32`, skipped.
    pub fn skip_i32_array(&mut self) -> Result<(), WireError> {
        let n = self.array_len()?;
        self.take(n * 4).map(drop)
    }
}

/// The answer to `ApiVersions` v0: the supported version range per API key.
pub fn read_api_versions(body: &[u8]) -> Result<(i16, ApiVersions), WireError> {
    let mut r = Reader::new(body);
    let error = r.i16()?;
    let mut apis = BTreeMap::new();
    let n = r.array_len()?;
    for _ in 0..n {
        let key = r.i16()?;
        let min = r.i16()?;
        let max = r.i16()?;
        apis.insert(key, (min, max));
    }
    Ok((error, apis))
}

/// The highest version of `api` that both this client and a broker with `apis` speak.
pub fn pick_version(apis: &ApiVersions, api: i16) -> Option<i16> {
    let (_, lo, hi) = SPOKEN.iter().find(|(k, _, _)| *k == api)?;
    let (bmin, bmax) = apis.get(&api)?;
    let v = (*hi).min(*bmax);
    (v >= *lo && v >= *bmin).then_some(v)
}

/// A broker in a metadata answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Node id.
    pub node_id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: u16,
}

/// One topic of a metadata answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// The topic's error code (0: none).
    pub error: i16,
    /// Its name.
    pub name: String,
    /// Per partition: (index, error code, leader node id).
    pub partitions: Vec<(i32, i16, i32)>,
}

/// The body of a `Metadata` request (v4-v8) for `topic`.
pub fn write_metadata(w: &mut Writer, version: i16, topic: &str, auto_create: bool) {
    w.array_len(1);
    w.string(topic);
    w.bool(auto_create);
    if version >= 8 {
        w.bool(false);
        w.bool(false);
    }
}

/// Reads a `Metadata` answer (v4-v8): the brokers and the topics.
pub fn read_metadata(
    version: i16,
    body: &[u8],
) -> Result<(Vec<BrokerInfo>, Vec<TopicInfo>), WireError> {
    let mut r = Reader::new(body);
    r.i32()?; // throttle_time_ms
    let mut brokers = Vec::new();
    for _ in 0..r.array_len()? {
        let node_id = r.i32()?;
        let host = r.string()?;
        let port = r.i32()?;
        r.nullable_string()?; // rack
        let port = u16::try_from(port).map_err(|_| WireError("broker port out of range"))?;
        brokers.push(BrokerInfo {
            node_id,
            host,
            port,
        });
    }
    r.nullable_string()?; // cluster_id
    r.i32()?; // controller_id
    let mut topics = Vec::new();
    for _ in 0..r.array_len()? {
        let error = r.i16()?;
        let name = r.string()?;
        r.bool()?; // is_internal
        let mut partitions = Vec::new();
        for _ in 0..r.array_len()? {
            let p_error = r.i16()?;
            let index = r.i32()?;
            let leader = r.i32()?;
            if version >= 7 {
                r.i32()?; // leader_epoch
            }
            r.skip_i32_array()?; // replica_nodes
            r.skip_i32_array()?; // isr_nodes
            r.skip_i32_array()?; // offline_replicas (v5+)
            partitions.push((index, p_error, leader));
        }
        if version >= 8 {
            r.i32()?; // topic_authorized_operations
        }
        topics.push(TopicInfo {
            error,
            name,
            partitions,
        });
    }
    Ok((brokers, topics))
}

/// The start of a `Produce` request body (v3-v8) for one topic with `partitions` partition
/// entries; each entry is then `INT32` index followed by [`Writer::bytes`] of a record batch.
pub fn write_produce_head(
    w: &mut Writer,
    acks: i16,
    timeout_ms: i32,
    topic: &str,
    partitions: usize,
) {
    w.nullable_string(None); // transactional_id
    w.i16(acks);
    w.i32(timeout_ms);
    w.array_len(1);
    w.string(topic);
    w.array_len(partitions);
}

/// One partition's answer to a `Produce` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionResult {
    /// The partition.
    pub partition: i32,
    /// Its error code (0: appended).
    pub error: i16,
    /// The broker's message (v8+), if any.
    pub message: Option<String>,
}

/// Reads a `Produce` answer (v3-v8): per partition of every topic, its error code; and the
/// throttle time.
pub fn read_produce(version: i16, body: &[u8]) -> Result<(Vec<PartitionResult>, i32), WireError> {
    let mut r = Reader::new(body);
    let mut out = Vec::new();
    for _ in 0..r.array_len()? {
        r.string()?; // topic
        for _ in 0..r.array_len()? {
            let partition = r.i32()?;
            let error = r.i16()?;
            r.i64()?; // base_offset
            r.i64()?; // log_append_time_ms
            if version >= 5 {
                r.i64()?; // log_start_offset
            }
            let mut message = None;
            if version >= 8 {
                for _ in 0..r.array_len()? {
                    r.i32()?; // batch_index
                    let m = r.nullable_string()?;
                    message = message.or(m);
                }
                message = r.nullable_string()?.or(message);
            }
            out.push(PartitionResult {
                partition,
                error,
                message,
            });
        }
    }
    let throttle = r.i32()?;
    Ok((out, throttle))
}

/// The body of `SaslHandshake` v1.
pub fn write_sasl_handshake(w: &mut Writer, mechanism: &str) {
    w.string(mechanism);
}

/// Reads a `SaslHandshake` answer: the error code and the broker's enabled mechanisms.
pub fn read_sasl_handshake(body: &[u8]) -> Result<(i16, Vec<String>), WireError> {
    let mut r = Reader::new(body);
    let error = r.i16()?;
    let mut mechanisms = Vec::new();
    for _ in 0..r.array_len()? {
        mechanisms.push(r.string()?);
    }
    Ok((error, mechanisms))
}

/// A `SaslAuthenticate` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslAnswer {
    /// Error code (0: accepted so far).
    pub error: i16,
    /// The broker's message.
    pub message: Option<String>,
    /// The mechanism's bytes from the broker.
    pub auth_bytes: Vec<u8>,
    /// How long the session may live (v1+; 0: no limit).
    pub session_lifetime_ms: i64,
}

/// Reads a `SaslAuthenticate` answer (v0-v1).
pub fn read_sasl_authenticate(version: i16, body: &[u8]) -> Result<SaslAnswer, WireError> {
    let mut r = Reader::new(body);
    let error = r.i16()?;
    let message = r.nullable_string()?;
    let auth_bytes = r.bytes()?.to_vec();
    let session_lifetime_ms = if version >= 1 { r.i64()? } else { 0 };
    Ok(SaslAnswer {
        error,
        message,
        auth_bytes,
        session_lifetime_ms,
    })
}

/// The name of a Kafka error code (for statuses and logs).
pub fn error_name(code: i16) -> &'static str {
    match code {
        -1 => "UNKNOWN_SERVER_ERROR",
        0 => "NONE",
        2 => "CORRUPT_MESSAGE",
        3 => "UNKNOWN_TOPIC_OR_PARTITION",
        5 => "LEADER_NOT_AVAILABLE",
        6 => "NOT_LEADER_OR_FOLLOWER",
        7 => "REQUEST_TIMED_OUT",
        8 => "BROKER_NOT_AVAILABLE",
        9 => "REPLICA_NOT_AVAILABLE",
        10 => "MESSAGE_TOO_LARGE",
        13 => "NETWORK_EXCEPTION",
        17 => "INVALID_TOPIC_EXCEPTION",
        18 => "RECORD_LIST_TOO_LARGE",
        19 => "NOT_ENOUGH_REPLICAS",
        20 => "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
        21 => "INVALID_REQUIRED_ACKS",
        29 => "TOPIC_AUTHORIZATION_FAILED",
        31 => "CLUSTER_AUTHORIZATION_FAILED",
        32 => "INVALID_TIMESTAMP",
        33 => "UNSUPPORTED_SASL_MECHANISM",
        34 => "ILLEGAL_SASL_STATE",
        35 => "UNSUPPORTED_VERSION",
        43 => "UNSUPPORTED_FOR_MESSAGE_FORMAT",
        44 => "POLICY_VIOLATION",
        56 => "KAFKA_STORAGE_ERROR",
        58 => "SASL_AUTHENTICATION_FAILED",
        74 => "FENCED_LEADER_EPOCH",
        75 => "UNKNOWN_LEADER_EPOCH",
        76 => "UNSUPPORTED_COMPRESSION_TYPE",
        87 => "INVALID_RECORD",
        89 => "THROTTLING_QUOTA_EXCEEDED",
        _ => "KAFKA_ERROR",
    }
}
