//! Event streams translated event by event: Anthropic's named events as OpenAI
//! `chat.completion.chunk`s ending in `data: [DONE]`, and back. State is bounded: the
//! splitter's partial event, the open content block, and the usage counts so far.

use serde_json::{Value, json};

use super::response::{anthropic_usage, finish_reason, openai_usage, stop_reason};
use super::{Api, Translation, error_body};
use crate::llm::{SseEvent, SseSplitter};

/// Translates a provider's event stream into the client's, as its bytes come.
pub struct StreamTranslator {
    splitter: SseSplitter,
    state: State,
    /// The client's stream is over (its last event written); what follows is dropped.
    done: bool,
}

enum State {
    ToOpenAi(ToOpenAi),
    ToAnthropic(ToAnthropic),
    /// Shapes that match: nothing to do (not used by the core, kept total).
    Same,
}

impl StreamTranslator {
    /// `model`: the client's (used until the provider names one); `include_usage`: an
    /// OpenAI client asked for the usage chunk (without it, usage rides on the chunk
    /// with the `finish_reason`, where clients ignore it and metrics still read it);
    /// `created`: Unix seconds for OpenAI's `created`.
    pub fn new(
        translation: Translation,
        model: Option<String>,
        include_usage: bool,
        created: u64,
    ) -> Self {
        let state = match (translation.provider, translation.client) {
            (Api::Anthropic, Api::OpenAi) => State::ToOpenAi(ToOpenAi {
                id: String::new(),
                model: model.unwrap_or_default(),
                created,
                include_usage,
                usage: json!({}),
                tools: Vec::new(),
                finish: None,
            }),
            (Api::OpenAi, Api::Anthropic) => State::ToAnthropic(ToAnthropic {
                model: model.unwrap_or_default(),
                started: false,
                block: Block::None,
                next_index: 0,
                stop: None,
                usage: None,
            }),
            _ => State::Same,
        };
        StreamTranslator {
            splitter: SseSplitter::default(),
            state,
            done: false,
        }
    }

    /// Appends the client's events completed by `data` to `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let StreamTranslator {
            splitter,
            state,
            done,
        } = self;
        if let State::Same = state {
            out.extend_from_slice(data);
            return;
        }
        splitter.feed(data, &mut |event| {
            if !*done {
                *done = state.on_event(event, out);
            }
        });
    }

    /// The provider's stream ended: closes the client's, with an error event when the
    /// provider's stopped before its end.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        // A last event without its blank line still counts.
        self.push(b"\n\n", out);
        if self.done {
            return;
        }
        self.done = true;
        match &mut self.state {
            State::ToOpenAi(state) => {
                let message = "the provider's stream ended before message_stop";
                state.error(out, "api_error", message);
            }
            State::ToAnthropic(state) => {
                // Some servers end without `[DONE]`: the finish reason says it was whole.
                if state.stop.is_some() {
                    state.end(out);
                } else {
                    let message = "the provider's stream ended before its last chunk";
                    state.error(out, "api_error", message);
                }
            }
            State::Same => {}
        }
    }
}

impl State {
    /// Translates one event; true when the client's stream is over.
    fn on_event(&mut self, event: &SseEvent, out: &mut Vec<u8>) -> bool {
        match self {
            State::ToOpenAi(state) => state.on_event(event, out),
            State::ToAnthropic(state) => state.on_event(event, out),
            State::Same => false,
        }
    }
}

fn write_data(out: &mut Vec<u8>, value: &Value) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(value.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}

fn write_named(out: &mut Vec<u8>, name: &str, value: &Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\n");
    write_data(out, value);
}

// === Anthropic → OpenAI ===

struct ToOpenAi {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    /// Anthropic usage so far: `message_start`'s, then `message_delta`'s merged in.
    usage: Value,
    /// The content block index of each tool call, in order: a call's OpenAI index is
    /// its place here.
    tools: Vec<u64>,
    finish: Option<&'static str>,
}

impl ToOpenAi {
    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish, "logprobs": null }],
        })
    }

    fn on_event(&mut self, event: &SseEvent, out: &mut Vec<u8>) -> bool {
        if event.data.trim().is_empty() {
            return false;
        }
        let Ok(data) = serde_json::from_str::<Value>(&event.data) else {
            let message = "the provider sent an event that is not JSON";
            self.error(out, "api_error", message);
            return true;
        };
        let kind = data
            .get("type")
            .and_then(Value::as_str)
            .or(event.event.as_deref())
            .unwrap_or("");
        match kind {
            "message_start" => {
                let message = data.get("message").unwrap_or(&Value::Null);
                if let Some(id) = message.get("id").and_then(Value::as_str) {
                    self.id = id.to_string();
                }
                if let Some(model) = message.get("model").and_then(Value::as_str) {
                    self.model = model.to_string();
                }
                self.merge_usage(message.get("usage"));
                let chunk = self.chunk(json!({ "role": "assistant", "content": "" }), None);
                write_data(out, &chunk);
            }
            "content_block_start" => {
                let block = data.get("content_block").unwrap_or(&Value::Null);
                let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
                match block.get("type").and_then(Value::as_str) {
                    Some("tool_use") => {
                        self.tools.push(index);
                        let call = json!({
                            "index": self.tools.len() - 1,
                            "id": block.get("id").cloned().unwrap_or(Value::Null),
                            "type": "function",
                            "function": {
                                "name": block.get("name").cloned().unwrap_or(Value::Null),
                                "arguments": "",
                            },
                        });
                        write_data(out, &self.chunk(json!({ "tool_calls": [call] }), None));
                    }
                    Some("text") => {
                        let text = block.get("text").and_then(Value::as_str).unwrap_or("");
                        if !text.is_empty() {
                            write_data(out, &self.chunk(json!({ "content": text }), None));
                        }
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let delta = data.get("delta").unwrap_or(&Value::Null);
                let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        let text = delta.get("text").and_then(Value::as_str).unwrap_or("");
                        write_data(out, &self.chunk(json!({ "content": text }), None));
                    }
                    Some("input_json_delta") => {
                        let Some(call) = self.tools.iter().position(|&i| i == index) else {
                            return false;
                        };
                        let partial = delta
                            .get("partial_json")
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        if !partial.is_empty() {
                            let call =
                                json!({ "index": call, "function": { "arguments": partial } });
                            write_data(out, &self.chunk(json!({ "tool_calls": [call] }), None));
                        }
                    }
                    // Thinking and signature deltas have no OpenAI counterpart.
                    _ => {}
                }
            }
            "message_delta" => {
                self.merge_usage(data.get("usage"));
                let stop = data
                    .get("delta")
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str);
                if let Some(stop) = stop {
                    self.finish = Some(finish_reason(stop));
                }
            }
            "message_stop" => {
                let finish = self.finish.unwrap_or("stop");
                let mut chunk = self.chunk(json!({}), Some(finish));
                let usage = openai_usage(&self.usage);
                if self.include_usage {
                    write_data(out, &chunk);
                    let mut last = self.chunk(json!({}), None);
                    last["choices"] = json!([]);
                    last["usage"] = usage;
                    write_data(out, &last);
                } else {
                    chunk["usage"] = usage;
                    write_data(out, &chunk);
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
                return true;
            }
            "error" => {
                let error = data.get("error").unwrap_or(&Value::Null);
                let kind = error
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("api_error");
                let message = error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("the provider's stream failed");
                self.error(out, kind, message);
                return true;
            }
            // ping, content_block_stop, and events added later.
            _ => {}
        }
        false
    }

    fn merge_usage(&mut self, usage: Option<&Value>) {
        if let (Some(Value::Object(usage)), Value::Object(total)) = (usage, &mut self.usage) {
            for (key, value) in usage {
                if value.is_u64() {
                    total.insert(key.clone(), value.clone());
                }
            }
        }
    }

    /// An error event as OpenAI streams send one, then the end.
    fn error(&mut self, out: &mut Vec<u8>, kind: &str, message: &str) {
        let kind = match kind {
            "api_error" | "overloaded_error" => "server_error",
            other => other,
        };
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&error_body(Api::OpenAi, 500, kind, message));
        out.extend_from_slice(b"\n\ndata: [DONE]\n\n");
    }
}

// === OpenAI → Anthropic ===

struct ToAnthropic {
    model: String,
    started: bool,
    block: Block,
    /// The index the next content block gets.
    next_index: u64,
    stop: Option<&'static str>,
    usage: Option<Value>,
}

/// The content block open in the client's stream.
enum Block {
    None,
    Text(u64),
    /// A tool call: its OpenAI index and its content block index.
    Tool {
        call: u64,
        index: u64,
    },
}

impl ToAnthropic {
    fn start(&mut self, chunk: &Value, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        if let Some(model) = chunk.get("model").and_then(Value::as_str) {
            self.model = model.to_string();
        }
        let message = json!({
            "type": "message_start",
            "message": {
                "id": chunk.get("id").cloned().unwrap_or(Value::Null),
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": { "input_tokens": 0, "output_tokens": 0 },
            },
        });
        write_named(out, "message_start", &message);
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        let index = match self.block {
            Block::None => return,
            Block::Text(index) | Block::Tool { index, .. } => index,
        };
        let stop = json!({ "type": "content_block_stop", "index": index });
        write_named(out, "content_block_stop", &stop);
        self.block = Block::None;
    }

    fn open_block(&mut self, block: Value, out: &mut Vec<u8>) -> u64 {
        self.close_block(out);
        let index = self.next_index;
        self.next_index += 1;
        let start =
            json!({ "type": "content_block_start", "index": index, "content_block": block });
        write_named(out, "content_block_start", &start);
        index
    }

    fn on_event(&mut self, event: &SseEvent, out: &mut Vec<u8>) -> bool {
        let data = event.data.trim();
        if data.is_empty() {
            return false;
        }
        if data == "[DONE]" {
            self.start(&Value::Null, out);
            self.end(out);
            return true;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(data) else {
            let message = "the provider sent an event that is not JSON";
            self.error(out, "api_error", message);
            return true;
        };
        if let Some(error) = chunk.get("error") {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("the provider's stream failed");
            self.error(out, "api_error", message);
            return true;
        }
        self.start(&chunk, out);
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(usage.clone());
        }
        let choice = chunk
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|c| c.first());
        let Some(choice) = choice else {
            return false;
        };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        if let Some(text) = delta
            .get("content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            let index = match self.block {
                Block::Text(index) => index,
                _ => self.open_block(json!({ "type": "text", "text": "" }), out),
            };
            self.block = Block::Text(index);
            let delta = json!({
                "type": "content_block_delta",
                "index": index,
                "delta": { "type": "text_delta", "text": text },
            });
            write_named(out, "content_block_delta", &delta);
        }
        for call in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let number = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            let function = call.get("function").unwrap_or(&Value::Null);
            let index = match self.block {
                Block::Tool { call, index } if call == number => index,
                _ => {
                    let block = json!({
                        "type": "tool_use",
                        "id": call.get("id").cloned().unwrap_or(Value::Null),
                        "name": function.get("name").cloned().unwrap_or(Value::Null),
                        "input": {},
                    });
                    self.open_block(block, out)
                }
            };
            self.block = Block::Tool {
                call: number,
                index,
            };
            if let Some(partial) = function
                .get("arguments")
                .and_then(Value::as_str)
                .filter(|a| !a.is_empty())
            {
                let delta = json!({
                    "type": "content_block_delta",
                    "index": index,
                    "delta": { "type": "input_json_delta", "partial_json": partial },
                });
                write_named(out, "content_block_delta", &delta);
            }
        }
        if let Some(finish) = choice.get("finish_reason").and_then(Value::as_str) {
            self.stop = Some(stop_reason(finish));
        }
        false
    }

    /// The stream is whole: the open block closed, the stop reason and usage, the end.
    fn end(&mut self, out: &mut Vec<u8>) {
        self.close_block(out);
        let usage = self
            .usage
            .as_ref()
            .map(anthropic_usage)
            .unwrap_or_else(|| json!({ "output_tokens": 0 }));
        let delta = json!({
            "type": "message_delta",
            "delta": { "stop_reason": self.stop.unwrap_or("end_turn"), "stop_sequence": null },
            "usage": usage,
        });
        write_named(out, "message_delta", &delta);
        write_named(out, "message_stop", &json!({ "type": "message_stop" }));
    }

    fn error(&mut self, out: &mut Vec<u8>, kind: &str, message: &str) {
        out.extend_from_slice(b"event: error\ndata: ");
        out.extend_from_slice(&error_body(Api::Anthropic, 500, kind, message));
        out.extend_from_slice(b"\n\n");
    }
}
