//! The Elasticsearch `_bulk` answer reader (`emit::elasticsearch::bulk::items`).
//!
//! Input: one byte, the number of documents sent (0-255), then the answer's body. The reader
//! must give exactly one outcome per document, whatever the body says.

use authtrail_forwarder::emit::elasticsearch::bulk;

/// One input: `[n, body...]`.
pub fn run(data: &[u8]) {
    let Some((&n, body)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(body) else {
        return;
    };
    let n = usize::from(n);
    let outcomes = bulk::items(text, n);
    assert_eq!(outcomes.len(), n, "one outcome per document sent");
}
