//! STOMP 1.2 frames: encoding the client's frames (header values escaped, `CONNECT` excepted as
//! the specification says) and decoding the broker's (`CONNECTED`, `RECEIPT`, `ERROR`, ...)
//! from a byte buffer, with a size cap. The decoder never panics on any input: it answers
//! "need more bytes", a frame, or a [`FrameError`].

/// A frame read from the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The command (`CONNECTED`, `RECEIPT`, `ERROR`, `MESSAGE`).
    pub command: String,
    /// The headers in order, values unescaped (repeated names kept; the first one counts).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Frame {
    /// The value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// What an `ERROR` frame says: its `message` header, else the first line of its body.
    pub fn error_text(&self) -> String {
        match self.header("message") {
            Some(m) if !m.is_empty() => m.to_string(),
            _ => {
                let body = String::from_utf8_lossy(&self.body);
                body.lines().next().unwrap_or("").trim().to_string()
            }
        }
    }
}

/// Why the broker's bytes are not a STOMP frame (the connection is then unusable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The frame is larger than the cap.
    TooLarge,
    /// The command is empty or not upper-case ASCII letters.
    BadCommand,
    /// A header line without `:`, or not UTF-8.
    BadHeader,
    /// A backslash escape that STOMP 1.2 does not define.
    BadEscape,
    /// `content-length` is not a number, or the byte after the body is not NUL.
    BadContentLength,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FrameError::TooLarge => "frame from the broker larger than the client's cap",
            FrameError::BadCommand => "frame from the broker without a valid command",
            FrameError::BadHeader => "frame from the broker with a malformed header",
            FrameError::BadEscape => "frame from the broker with an undefined header escape",
            FrameError::BadContentLength => "frame from the broker with a bad content-length",
        })
    }
}

/// Appends `value` escaped as a STOMP 1.2 header name or value: `\` `\n` `\r` `:` as `\\`
/// `\n` `\r` `\c`.
pub fn escape_into(out: &mut Vec<u8>, value: &str) {
    for &b in value.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b':' => out.extend_from_slice(b"\\c"),
            _ => out.push(b),
        }
    }
}

/// Appends a frame: `command`, the headers (escaped unless `command` is `CONNECT`, whose
/// headers the specification leaves unescaped), a blank line, `body` and NUL. No
/// `content-length`: ActiveMQ makes a SEND without it a JMS `TextMessage` (with it, a
/// `BytesMessage`), so the body must hold no NUL byte.
pub fn encode_into(out: &mut Vec<u8>, command: &str, headers: &[(&str, &str)], body: &[u8]) {
    out.extend_from_slice(command.as_bytes());
    out.push(b'\n');
    let escape = command != "CONNECT" && command != "STOMP";
    for (name, value) in headers {
        if escape {
            escape_into(out, name);
            out.push(b':');
            escape_into(out, value);
        } else {
            out.extend_from_slice(name.as_bytes());
            out.push(b':');
            out.extend_from_slice(value.as_bytes());
        }
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(body);
    out.push(0);
}

/// Undoes [`escape_into`].
fn unescape(raw: &[u8]) -> Result<String, FrameError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    while let Some(&b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        out.push(match bytes.next() {
            Some(b'\\') => b'\\',
            Some(b'n') => b'\n',
            Some(b'r') => b'\r',
            Some(b'c') => b':',
            _ => return Err(FrameError::BadEscape),
        });
    }
    String::from_utf8(out).map_err(|_| FrameError::BadHeader)
}

/// One line of `buf` from `start`: its content (without `\n` or `\r\n`) and where the next line
/// starts; `None` when no `\n` follows yet.
fn line(buf: &[u8], start: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(start..)?;
    let nl = memchr::memchr(b'\n', rest)?;
    let content = rest.get(..nl)?;
    let content = content.strip_suffix(b"\r").unwrap_or(content);
    Some((content, start + nl + 1))
}

/// Decodes the first frame of `buf`, skipping the end-of-line bytes brokers send between
/// frames (heart-beats). `Ok(None)`: more bytes are needed. `Ok(Some((frame, used)))`: the
/// frame and the bytes it took, padding included. A frame (headers and body) over `max` bytes
/// is [`FrameError::TooLarge`], also before it is complete.
pub fn decode(buf: &[u8], max: usize) -> Result<Option<(Frame, usize)>, FrameError> {
    let mut start = 0;
    while let Some(&b) = buf.get(start) {
        match b {
            b'\n' => start += 1,
            b'\r' if buf.get(start + 1) == Some(&b'\n') => start += 2,
            b'\r' if buf.get(start + 1).is_none() => return Ok(None),
            _ => break,
        }
    }
    if start >= buf.len() {
        return Ok(None);
    }
    let too_large = |end: usize| end.saturating_sub(start) > max;
    let Some((command, mut at)) = line(buf, start) else {
        return if too_large(buf.len()) {
            Err(FrameError::TooLarge)
        } else {
            Ok(None)
        };
    };
    if command.is_empty() || !command.iter().all(u8::is_ascii_uppercase) {
        return Err(FrameError::BadCommand);
    }
    let command = String::from_utf8_lossy(command).into_owned();
    // CONNECTED headers are not escaped (STOMP 1.2).
    let escaped = command != "CONNECTED";
    let mut headers = Vec::new();
    loop {
        let Some((text, next)) = line(buf, at) else {
            return if too_large(buf.len()) {
                Err(FrameError::TooLarge)
            } else {
                Ok(None)
            };
        };
        if too_large(next) {
            return Err(FrameError::TooLarge);
        }
        at = next;
        if text.is_empty() {
            break;
        }
        let colon = memchr::memchr(b':', text).ok_or(FrameError::BadHeader)?;
        let (name, value) = (text.get(..colon), text.get(colon + 1..));
        let (Some(name), Some(value)) = (name, value) else {
            return Err(FrameError::BadHeader);
        };
        let pair = if escaped {
            (unescape(name)?, unescape(value)?)
        } else {
            (
                String::from_utf8(name.to_vec()).map_err(|_| FrameError::BadHeader)?,
                String::from_utf8(value.to_vec()).map_err(|_| FrameError::BadHeader)?,
            )
        };
        headers.push(pair);
    }
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| FrameError::BadContentLength)
        })
        .transpose()?;
    let body_end = match length {
        Some(n) => {
            let end = at.checked_add(n).ok_or(FrameError::TooLarge)?;
            if too_large(end) {
                return Err(FrameError::TooLarge);
            }
            match buf.get(end) {
                None => return Ok(None),
                Some(0) => end,
                Some(_) => return Err(FrameError::BadContentLength),
            }
        }
        None => match buf.get(at..).and_then(|rest| memchr::memchr(0, rest)) {
            Some(i) => at + i,
            None if too_large(buf.len()) => return Err(FrameError::TooLarge),
            None => return Ok(None),
        },
    };
    if too_large(body_end) {
        return Err(FrameError::TooLarge);
    }
    let body = buf.get(at..body_end).unwrap_or_default().to_vec();
    Ok(Some((
        Frame {
            command,
            headers,
            body,
        },
        body_end + 1,
    )))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn frame(command: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_into(&mut out, command, headers, body);
        out
    }

    #[test]
    fn header_values_are_escaped_and_read_back_unchanged() {
        let value = "a:b\\c\nd\re";
        let bytes = frame("SEND", &[("x:y", value), ("plain", "ok")], b"{}");
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("x\\cy:a\\cb\\\\c\\nd\\re\n"), "{text:?}");
        let (f, used) = decode(&bytes, 1024).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(f.command, "SEND");
        assert_eq!(f.header("x:y"), Some(value));
        assert_eq!(f.header("plain"), Some("ok"));
        assert_eq!(f.body, b"{}");
    }

    #[test]
    fn connect_headers_are_not_escaped_and_connected_headers_not_unescaped() {
        let bytes = frame("CONNECT", &[("passcode", "p:w\\x")], b"");
        assert!(
            String::from_utf8(bytes)
                .unwrap()
                .contains("passcode:p:w\\x\n")
        );
        let (f, _) = decode(b"CONNECTED\nserver:a\\b\nversion:1.2\n\n\0", 1024)
            .unwrap()
            .unwrap();
        assert_eq!(f.header("server"), Some("a\\b"));
    }

    #[test]
    fn heart_beat_end_of_lines_are_skipped_and_crlf_lines_read() {
        let input = b"\n\r\nRECEIPT\r\nreceipt-id:7\r\n\r\n\0\nRECEIPT\nreceipt-id:8\n\n\0";
        let (f, used) = decode(input, 1024).unwrap().unwrap();
        assert_eq!(
            (f.command.as_str(), f.header("receipt-id")),
            ("RECEIPT", Some("7"))
        );
        let (g, rest) = decode(&input[used..], 1024).unwrap().unwrap();
        assert_eq!(g.header("receipt-id"), Some("8"));
        assert_eq!(used + rest, input.len());
        assert_eq!(decode(b"\n\n", 1024).unwrap(), None);
        assert_eq!(decode(b"\r", 1024).unwrap(), None);
    }

    #[test]
    fn every_prefix_of_a_frame_asks_for_more_bytes() {
        let bytes = frame(
            "ERROR",
            &[("message", "boom"), ("receipt-id", "3")],
            b"trace\nline",
        );
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut], 1024), Ok(None), "cut at {cut}");
        }
        let (f, _) = decode(&bytes, 1024).unwrap().unwrap();
        assert_eq!(f.error_text(), "boom");
    }

    #[test]
    fn a_content_length_body_may_hold_nul_and_must_end_with_nul() {
        let input = b"MESSAGE\ncontent-length:3\n\na\0b\0";
        let (f, used) = decode(input, 1024).unwrap().unwrap();
        assert_eq!((f.body.as_slice(), used), (&b"a\0b"[..], input.len()));
        assert_eq!(
            decode(b"MESSAGE\ncontent-length:3\n\nabcd\0", 1024),
            Err(FrameError::BadContentLength)
        );
        assert_eq!(
            decode(b"MESSAGE\ncontent-length:x\n\n\0", 1024),
            Err(FrameError::BadContentLength)
        );
        assert_eq!(
            decode(
                b"MESSAGE\ncontent-length:99999999999999999999999\n\n\0",
                1024
            ),
            Err(FrameError::BadContentLength)
        );
    }

    #[test]
    fn malformed_frames_are_errors_and_oversized_ones_are_refused_before_they_end() {
        assert_eq!(decode(b"receipt\n\n\0", 64), Err(FrameError::BadCommand));
        assert_eq!(
            decode(b"RECEIPT\nnocolon\n\n\0", 64),
            Err(FrameError::BadHeader)
        );
        assert_eq!(
            decode(b"RECEIPT\na:\\t\n\n\0", 64),
            Err(FrameError::BadEscape)
        );
        assert_eq!(
            decode(b"RECEIPT\na:\xff\n\n\0", 64),
            Err(FrameError::BadHeader)
        );
        let mut big = b"ERROR\n\n".to_vec();
        big.extend(std::iter::repeat_n(b'x', 100));
        assert_eq!(decode(&big, 64), Err(FrameError::TooLarge));
        let long_header = [b"ERROR\nm:".as_slice(), &[b'y'; 100]].concat();
        assert_eq!(decode(&long_header, 64), Err(FrameError::TooLarge));
        assert_eq!(
            decode(b"MESSAGE\ncontent-length:1000\n\n", 64),
            Err(FrameError::TooLarge)
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder() {
        // A deterministic xorshift stream of inputs, biased towards STOMP's own bytes.
        let alphabet = b"\n\r\0:\\cnrABCDEFGHIJKLMNOPQRSTUVWXYZcontent-length0123456789\xff";
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = (next() % 64) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let mut at = 0;
            while let Ok(Some((_, used))) = decode(&input[at..], 48) {
                assert!(used > 0 && at + used <= input.len());
                at += used;
            }
        }
    }
}
