//! WebSocket messages (RFC 6455) as the masker reads them: frames parsed as they arrive
//! from either side, a message's fragments joined, a text message masked (or its
//! pseudonyms restored) whole and written again as one frame. Pure: the proxy's relay
//! does the I/O and decides what a refusal closes.

use std::sync::Arc;

use super::edit::TextEditor;
use super::error::BodyError;
use super::json::{self, Selection};
use super::shape::BodyShape;
use super::sse::SseMasker;
use super::{Findings, Partition, TextMasker, Vault};

/// Which end sends the frames read: a client's frames are masked with a key, an
/// endpoint's are not (RFC 6455 5.1), and a frame of the wrong kind is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    Client,
    Endpoint,
}

/// Whether an `Upgrade` header asks for a WebSocket (the one upgrade whose messages
/// masking reads).
pub fn is_websocket(upgrade: Option<&[u8]>) -> bool {
    upgrade.is_some_and(|value| value.trim_ascii().eq_ignore_ascii_case(b"websocket"))
}

/// The most pseudonyms one connection's vault keeps (about 10 MiB): a client that sends
/// more distinct values over one WebSocket is closed, not let grow the vault forever.
pub const MAX_PSEUDONYMS: usize = 1 << 16;

pub const CONTINUATION: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;

/// Why the connection is closed, with the status code of the Close frame (RFC 6455
/// 7.4.1) and a reason that names a cause or a type, never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    pub reason: String,
}

impl Refusal {
    fn protocol(reason: &str) -> Refusal {
        Refusal {
            code: 1002,
            reason: format!("websocket_protocol_error: {reason}"),
        }
    }

    /// A binary message: masking cannot read it.
    pub fn unreadable() -> Refusal {
        Refusal {
            code: 1003,
            reason: "masking_unreadable_body".into(),
        }
    }

    /// A connection that gave more pseudonyms than a vault keeps.
    pub fn too_many_pseudonyms() -> Refusal {
        Refusal {
            code: 1008,
            reason: "masking_too_many_pseudonyms".into(),
        }
    }

    /// A message longer than masking reads.
    pub fn too_large() -> Refusal {
        Refusal {
            code: 1009,
            reason: "masking_body_too_large".into(),
        }
    }

    /// Masking's answer to a message: a `block` closes with the type named, a text
    /// that is not UTF-8 with 1007, anything else as unreadable.
    pub fn of_body_error(error: &BodyError) -> Refusal {
        match error {
            BodyError::Blocked(blocked) => Refusal {
                code: 1008,
                // Close reasons are at most 123 bytes; a type's name is short.
                reason: format!("sensitive_data_blocked: {}", blocked.kind.name())
                    .chars()
                    .take(120)
                    .collect(),
            },
            BodyError::NotText { .. } => Refusal {
                code: 1007,
                reason: "masking_unreadable_body: not UTF-8".into(),
            },
            BodyError::TooLarge { .. } => Refusal::too_large(),
            _ => Refusal::unreadable(),
        }
    }
}

/// One frame, its payload unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    /// The key a client masked it with (`None` for an endpoint's frame).
    pub key: Option<[u8; 4]>,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
}

/// Reads frames from the bytes one side sends, in whatever pieces they come.
#[derive(Debug)]
pub struct FrameReader {
    sender: Sender,
    buffer: Vec<u8>,
    /// The longest payload accepted: no frame is longer than the message it is part of.
    max_payload: usize,
}

impl FrameReader {
    pub fn new(sender: Sender, max_payload: usize) -> Self {
        FrameReader {
            sender,
            buffer: Vec::new(),
            max_payload,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
    }

    /// The next whole frame, if one is in; a frame no peer may send is refused.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, Refusal> {
        let buffer = &self.buffer;
        let [first, second, ..] = buffer[..] else {
            return Ok(None);
        };
        if first & 0x70 != 0 {
            // No extension was let through the handshake, so no reserved bit may be set.
            return Err(Refusal::protocol("a reserved bit set"));
        }
        let (fin, opcode, masked) = (first & 0x80 != 0, first & 0x0f, second & 0x80 != 0);
        if !matches!(opcode, 0x0..=0x2 | 0x8..=0xa) {
            return Err(Refusal::protocol("an unknown opcode"));
        }
        if masked != (self.sender == Sender::Client) {
            return Err(Refusal::protocol("a frame masked by the wrong side"));
        }
        let (length, mut at) = match second & 0x7f {
            126 => match buffer.get(2..4) {
                Some(bytes) => (u64::from(u16::from_be_bytes([bytes[0], bytes[1]])), 4),
                None => return Ok(None),
            },
            127 => match buffer.get(2..10) {
                Some(bytes) => (u64::from_be_bytes(bytes.try_into().unwrap_or_default()), 10),
                None => return Ok(None),
            },
            short => (u64::from(short), 2),
        };
        let control = opcode & 0x8 != 0;
        if control && (!fin || length > 125) {
            return Err(Refusal::protocol("a fragmented or long control frame"));
        }
        if length > self.max_payload as u64 {
            return Err(Refusal::too_large());
        }
        let key = if masked {
            let Some(key) = buffer.get(at..at + 4) else {
                return Ok(None);
            };
            at += 4;
            Some([key[0], key[1], key[2], key[3]])
        } else {
            None
        };
        let end = at + length as usize;
        if buffer.len() < end {
            return Ok(None);
        }
        let mut payload = buffer[at..end].to_vec();
        if let Some(key) = key {
            apply_key(&mut payload, key);
        }
        self.buffer.drain(..end);
        Ok(Some(Frame {
            fin,
            opcode,
            key,
            payload,
        }))
    }
}

fn apply_key(payload: &mut [u8], key: [u8; 4]) {
    for (at, byte) in payload.iter_mut().enumerate() {
        *byte ^= key[at % 4];
    }
}

/// Writes one frame; masked with `key` when a client's frame is written.
pub fn write_frame(out: &mut Vec<u8>, fin: bool, opcode: u8, payload: &[u8], key: Option<[u8; 4]>) {
    out.push(if fin { 0x80 } else { 0 } | opcode);
    let mask_bit = if key.is_some() { 0x80 } else { 0 };
    match payload.len() {
        short @ 0..=125 => out.push(mask_bit | short as u8),
        medium @ 126..=0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(medium as u16).to_be_bytes());
        }
        long => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(long as u64).to_be_bytes());
        }
    }
    match key {
        Some(key) => {
            out.extend_from_slice(&key);
            let start = out.len();
            out.extend_from_slice(payload);
            apply_key(&mut out[start..], key);
        }
        None => out.extend_from_slice(payload),
    }
}

/// A Close frame's payload: the status code and the reason.
pub fn close_payload(refusal: &Refusal) -> Vec<u8> {
    let mut payload = refusal.code.to_be_bytes().to_vec();
    payload.extend_from_slice(refusal.reason.as_bytes());
    payload
}

/// Joins a message's fragments; control frames go around it.
#[derive(Debug, Default)]
pub struct MessageJoiner {
    opcode: Option<u8>,
    key: Option<[u8; 4]>,
    data: Vec<u8>,
}

/// A whole data message.
#[derive(Debug, PartialEq, Eq)]
pub struct Message {
    pub opcode: u8,
    /// The key of its first frame, to mask it again with.
    pub key: Option<[u8; 4]>,
    pub data: Vec<u8>,
}

impl MessageJoiner {
    /// Takes a data frame: the whole message once its last fragment is in. `limit`:
    /// the longest message read.
    pub fn push(&mut self, frame: Frame, limit: usize) -> Result<Option<Message>, Refusal> {
        match (self.opcode, frame.opcode) {
            (None, TEXT | BINARY) => {
                self.opcode = Some(frame.opcode);
                self.key = frame.key;
            }
            (Some(_), CONTINUATION) => {}
            _ => return Err(Refusal::protocol("a fragment out of order")),
        }
        if self.data.len() + frame.payload.len() > limit {
            return Err(Refusal::too_large());
        }
        self.data.extend_from_slice(&frame.payload);
        if !frame.fin {
            return Ok(None);
        }
        Ok(self.opcode.take().map(|opcode| Message {
            opcode,
            key: self.key.take(),
            data: std::mem::take(&mut self.data),
        }))
    }
}

/// Masks a client's text message with the connection's `vault` (pseudonyms stay
/// numbered across the messages): a JSON message has every string masked, other text
/// all of it. `None`: unchanged.
pub fn mask_client_message(
    masker: &dyn TextMasker,
    data: &[u8],
    vault: &mut Vault,
    findings: &mut Findings,
    partition: Partition,
) -> Result<Option<Vec<u8>>, BodyError> {
    let shape = if json::is_valid(data) {
        BodyShape::OtherJson
    } else {
        BodyShape::Text
    };
    super::body::mask_client_request_body(masker, shape, data, vault, findings, partition).map(
        |masked| match masked {
            std::borrow::Cow::Owned(masked) => Some(masked),
            std::borrow::Cow::Borrowed(_) => None,
        },
    )
}

/// An endpoint's text messages, read as one stream: each single-line message is a
/// JSON line of [`SseMasker`]'s, so the deltas of one text (the Realtime API's
/// `response.output_text.delta`, `response.output_audio_transcript.delta`...) are
/// masked and restored as one text with the look-behind, a pseudonym split between two
/// deltas included. A delta whose text is all held goes on with the next event; any
/// other message first sends the held text. A message of several lines (pretty JSON,
/// prose) is edited alone, after the held text.
pub struct EndpointMessages {
    masker: Option<Arc<dyn TextMasker>>,
    restore: bool,
    max_message: usize,
    stream: SseMasker,
}

impl EndpointMessages {
    /// `masker`: `None` when the route does not mask answers; `restore`: pseudonyms may
    /// come back (the route masks requests).
    pub fn new(masker: Option<Arc<dyn TextMasker>>, restore: bool, max_message: usize) -> Self {
        let stream = SseMasker::json_lines(masker.clone(), restore, max_message);
        EndpointMessages {
            masker,
            restore,
            max_message,
            stream,
        }
    }

    /// Takes one text message; appends the messages to send now (none, when its text
    /// is held; more than one, when held text goes first).
    pub fn push(
        &mut self,
        data: &[u8],
        vault: &mut Vault,
        findings: &mut Findings,
        messages: &mut Vec<Vec<u8>>,
    ) -> Result<(), BodyError> {
        // An empty message would read as a blank line, which a JSON-lines stream skips.
        if data.is_empty() || data.contains(&b'\n') || data.contains(&b'\r') {
            self.finish(vault, findings, messages)?;
            let masker = self.masker.as_deref();
            let edited = edit_endpoint_message(masker, self.restore, data, vault, findings)?;
            messages.push(edited.unwrap_or_else(|| data.to_vec()));
            return Ok(());
        }
        let mut out = Vec::with_capacity(data.len() + 1);
        let mut line = Vec::with_capacity(data.len() + 1);
        line.extend_from_slice(data);
        line.push(b'\n');
        self.stream.push(&line, vault, &mut out, findings)?;
        split_lines(&out, messages);
        Ok(())
    }

    /// Sends every held text (the endpoint's side ended, or a message that is not one
    /// line comes).
    pub fn finish(
        &mut self,
        vault: &mut Vault,
        findings: &mut Findings,
        messages: &mut Vec<Vec<u8>>,
    ) -> Result<(), BodyError> {
        let mut out = Vec::new();
        self.stream.finish(vault, &mut out, findings)?;
        split_lines(&out, messages);
        self.stream = SseMasker::json_lines(self.masker.clone(), self.restore, self.max_message);
        Ok(())
    }
}

/// The JSON-lines stream's output, one message per line.
fn split_lines(out: &[u8], messages: &mut Vec<Vec<u8>>) {
    let out = out.strip_suffix(b"\n").unwrap_or(out);
    if out.is_empty() {
        return;
    }
    messages.extend(out.split(|b| *b == b'\n').map(<[u8]>::to_vec));
}

/// An endpoint's text message edited alone: the connection's pseudonyms restored
/// (`restore`), and masked with `masker` when the route masks answers. `None`:
/// unchanged.
pub fn edit_endpoint_message(
    masker: Option<&dyn TextMasker>,
    restore: bool,
    data: &[u8],
    vault: &mut Vault,
    findings: &mut Findings,
) -> Result<Option<Vec<u8>>, BodyError> {
    let restore = restore && !vault.is_empty();
    if masker.is_none() && !restore {
        return Ok(None);
    }
    let mut editor = TextEditor::new(masker, restore, vault, findings, None);
    if json::is_valid(data) {
        let mut out = Vec::new();
        return Ok(
            json::rewrite(data, Selection::AllStrings, &mut editor, &mut out)?.then_some(out),
        );
    }
    let text = std::str::from_utf8(data).map_err(|error| BodyError::NotText {
        offset: error.valid_up_to(),
    })?;
    let mut out = String::new();
    Ok(editor
        .edit_text(text, None, &mut out)?
        .then(|| out.into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(sender: Sender, bytes: &[u8], piece: usize) -> Result<Vec<Frame>, Refusal> {
        let mut reader = FrameReader::new(sender, 1 << 20);
        let mut frames = Vec::new();
        for chunk in bytes.chunks(piece.max(1)) {
            reader.push(chunk);
            while let Some(frame) = reader.next_frame()? {
                frames.push(frame);
            }
        }
        Ok(frames)
    }

    #[test]
    fn frames_written_are_read_back_in_any_pieces() {
        let key = Some([1, 2, 3, 250]);
        let long = vec![b'x'; 70_000];
        let mut bytes = Vec::new();
        write_frame(&mut bytes, false, TEXT, b"hel", key);
        write_frame(&mut bytes, true, 0x9, b"ping", key);
        write_frame(&mut bytes, true, CONTINUATION, b"lo", key);
        write_frame(&mut bytes, true, BINARY, &long, key);
        write_frame(&mut bytes, true, TEXT, &[b'y'; 126], key);
        for piece in [1, 3, 7, 1000, bytes.len()] {
            let read = frames(Sender::Client, &bytes, piece).unwrap();
            let summary: Vec<_> = read
                .iter()
                .map(|f| (f.fin, f.opcode, f.payload.len()))
                .collect();
            assert_eq!(
                summary,
                [
                    (false, TEXT, 3),
                    (true, 0x9, 4),
                    (true, CONTINUATION, 2),
                    (true, BINARY, 70_000),
                    (true, TEXT, 126)
                ]
            );
            assert_eq!(read[0].payload, b"hel");
            assert_eq!(read[3].payload, long);
        }
        let mut joiner = MessageJoiner::default();
        let read = frames(Sender::Client, &bytes, 5).unwrap();
        let mut messages = Vec::new();
        for frame in read.into_iter().filter(|f| !f.is_control()) {
            if let Some(message) = joiner.push(frame, 1 << 20).unwrap() {
                messages.push(message);
            }
        }
        assert_eq!(messages[0].data, b"hello");
        assert_eq!(messages[0].key, key);
        assert_eq!(messages.len(), 3);
    }

    #[test]
    fn frames_no_peer_may_send_are_refused() {
        let mut unmasked = Vec::new();
        write_frame(&mut unmasked, true, TEXT, b"hi", None);
        let mut masked = Vec::new();
        write_frame(&mut masked, true, TEXT, b"hi", Some([9; 4]));
        let mut long_ping = Vec::new();
        write_frame(&mut long_ping, true, 0x9, &[0; 126], None);
        let mut fragmented_close = Vec::new();
        write_frame(&mut fragmented_close, false, CLOSE, b"", None);
        let mut compressed = unmasked.clone();
        compressed[0] |= 0x40;
        let mut unknown = unmasked.clone();
        unknown[0] = 0x83;
        for (sender, bytes) in [
            (Sender::Client, &unmasked),
            (Sender::Endpoint, &masked),
            (Sender::Endpoint, &long_ping),
            (Sender::Endpoint, &fragmented_close),
            (Sender::Endpoint, &compressed),
            (Sender::Endpoint, &unknown),
        ] {
            assert_eq!(
                frames(sender, bytes, 100).unwrap_err().code,
                1002,
                "{bytes:?}"
            );
        }
        let mut huge = Vec::new();
        write_frame(&mut huge, true, TEXT, &[0; 200], None);
        let mut reader = FrameReader::new(Sender::Endpoint, 100);
        reader.push(&huge[..4]);
        assert_eq!(reader.next_frame().unwrap_err(), Refusal::too_large());

        let mut joiner = MessageJoiner::default();
        let frame = |fin, opcode, payload: &[u8]| Frame {
            fin,
            opcode,
            key: None,
            payload: payload.to_vec(),
        };
        assert_eq!(
            joiner
                .push(frame(true, CONTINUATION, b"x"), 10)
                .unwrap_err()
                .code,
            1002
        );
        assert_eq!(joiner.push(frame(false, TEXT, b"x"), 10).unwrap(), None);
        assert_eq!(
            joiner.push(frame(true, TEXT, b"x"), 10).unwrap_err().code,
            1002
        );
        let mut joiner = MessageJoiner::default();
        assert_eq!(
            joiner.push(frame(false, TEXT, b"123456"), 10).unwrap(),
            None
        );
        assert_eq!(
            joiner
                .push(frame(true, CONTINUATION, b"12345"), 10)
                .unwrap_err(),
            Refusal::too_large()
        );
    }

    #[test]
    fn messages_are_masked_and_restored_across_a_connection() {
        let masker = crate::masking::Masker::builder()
            .action(
                crate::masking::Builtin::EmailAddress,
                crate::masking::Action::Pseudonymize,
            )
            .build()
            .unwrap();
        let mut vault = Vault::default();
        let mut findings = Findings::default();
        let event = br#"{"type":"conversation.item.create","item":{"content":[{"type":"input_text","text":"mail ann.lee@example.org"}]}}"#;
        let masked =
            mask_client_message(&masker, event, &mut vault, &mut findings, Partition::SHARED)
                .unwrap()
                .unwrap();
        let expected =
            String::from_utf8_lossy(event).replace("ann.lee@example.org", "<EMAIL_ADDRESS_1>");
        assert_eq!(String::from_utf8(masked).unwrap(), expected);
        // The same value in the next message keeps its pseudonym.
        let again = mask_client_message(
            &masker,
            b"again ann.lee@example.org",
            &mut vault,
            &mut findings,
            Partition::SHARED,
        )
        .unwrap()
        .unwrap();
        assert_eq!(again, b"again <EMAIL_ADDRESS_1>");
        assert_eq!(findings.total(), 2);
        let answer = br#"{"type":"response.text.delta","delta":"to <EMAIL_ADDRESS_1>"}"#;
        let restored =
            edit_endpoint_message(None, true, answer, &mut vault, &mut Findings::default())
                .unwrap()
                .unwrap();
        assert_eq!(
            String::from_utf8(restored).unwrap(),
            r#"{"type":"response.text.delta","delta":"to ann.lee@example.org"}"#
        );
        assert_eq!(
            edit_endpoint_message(
                None,
                true,
                b"plain",
                &mut Vault::default(),
                &mut Findings::default()
            ),
            Ok(None)
        );

        // The Realtime API streams its answer in deltas: a pseudonym split between two
        // is restored, the held text riding on the next delta; audio deltas pass at
        // once; a message of several lines goes after the held text.
        let mut answers = EndpointMessages::new(None, true, 1 << 20);
        let delta = |kind: &str, text: &str| {
            format!(r#"{{"type":"{kind}","output_index":0,"content_index":0,"delta":"{text}"}}"#)
        };
        let mut sent = Vec::new();
        for message in [
            delta("response.output_text.delta", "mail <EMAIL_"),
            delta("response.output_audio.delta", "UklGRg=="),
            delta("response.output_text.delta", "ADDRESS_1> now"),
            "{\n\"type\": \"note\"\n}".to_string(),
            String::new(),
        ] {
            answers
                .push(
                    message.as_bytes(),
                    &mut vault,
                    &mut Findings::default(),
                    &mut sent,
                )
                .unwrap();
        }
        let sent: Vec<String> = sent
            .into_iter()
            .map(|m| String::from_utf8(m).unwrap())
            .collect();
        let text: String = sent
            .iter()
            .filter_map(|m| serde_json::from_str::<serde_json::Value>(m).ok())
            .filter(|m| m["type"] == "response.output_text.delta")
            .map(|m| m["delta"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(text, "mail ann.lee@example.org now", "{sent:?}");
        // "mail " at once, the audio before the held "<EMAIL_".
        assert_eq!(sent[1], delta("response.output_audio.delta", "UklGRg=="));
        assert_eq!(sent[sent.len() - 2], "{\n\"type\": \"note\"\n}");
        assert_eq!(sent.last().unwrap(), "", "an empty message goes on");
    }
}
