//! The prompt prefix of a chat request (OpenAI chat completions, Anthropic messages):
//! its system prompt and first conversation message, as the text a model server's
//! prefix cache would reuse. Requests that share it share a hash.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{IgnoredAny, SeqAccess, Visitor};

/// The hash of the request's prompt prefix: the system prompt (Anthropic's `system`,
/// or OpenAI's leading `system` / `developer` messages) and the first message after it,
/// by role and text. `None` for a body that is not a chat request. `hash` turns the
/// canonical bytes into the key (the balancer's stable hash, passed in so this layer
/// stays below it).
pub fn prompt_prefix_hash(body: &[u8], hash: impl Fn(&[u8]) -> u64) -> Option<u64> {
    #[derive(Deserialize)]
    struct Chat<'a> {
        #[serde(borrow, default)]
        system: Option<Content<'a>>,
        #[serde(borrow, default)]
        messages: Option<Leading<'a>>,
    }
    let chat: Chat<'_> = serde_json::from_slice(body).ok()?;
    let messages = chat.messages?.0;
    if messages.is_empty() && chat.system.is_none() {
        return None;
    }
    let mut canonical = Vec::new();
    if let Some(system) = &chat.system {
        push_part(&mut canonical, "system", system);
    }
    for message in &messages {
        push_part(&mut canonical, &message.role, &message.content);
    }
    Some(hash(&canonical))
}

/// Role, then text, each followed by a 0 byte (which JSON text cannot hold unescaped
/// and a decoded string rarely does), so ("ab", "c") and ("a", "bc") differ.
fn push_part(canonical: &mut Vec<u8>, role: &str, content: &Content<'_>) {
    canonical.extend_from_slice(role.as_bytes());
    canonical.push(0);
    match content {
        Content::Text(text) => canonical.extend_from_slice(text.as_bytes()),
        Content::Parts(parts) => {
            for part in parts {
                if let Some(text) = &part.text {
                    canonical.extend_from_slice(text.as_bytes());
                }
            }
        }
        Content::Other(_) => {}
    }
    canonical.push(0);
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    role: Cow<'a, str>,
    #[serde(borrow, default = "Content::none")]
    content: Content<'a>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Parts(#[serde(borrow)] Vec<Part<'a>>),
    Other(IgnoredAny),
}

impl Content<'_> {
    fn none() -> Self {
        Content::Other(IgnoredAny)
    }
}

#[derive(Deserialize)]
struct Part<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
}

/// The leading system messages and the first other message; the rest of the array is
/// skipped without being built.
struct Leading<'a>(Vec<Message<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for Leading<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LeadingVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for LeadingVisitor<'a> {
            type Value = Leading<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of messages")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Leading<'a>, A::Error> {
                let mut kept = Vec::new();
                while let Some(message) = seq.next_element::<Message<'a>>()? {
                    let system = matches!(&*message.role, "system" | "developer");
                    kept.push(message);
                    if !system {
                        break;
                    }
                }
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Leading(kept))
            }
        }
        deserializer.deserialize_seq(LeadingVisitor(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(bytes: &[u8]) -> u64 {
        // Any stable hash will do for the tests.
        bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
        })
    }

    fn of(body: &str) -> Option<u64> {
        prompt_prefix_hash(body.as_bytes(), hash)
    }

    #[test]
    fn same_system_and_first_message_same_hash() {
        let a = of(
            r#"{"model":"m","messages":[{"role":"system","content":"You are kind."},{"role":"user","content":"Summarise this contract."},{"role":"assistant","content":"Sure"},{"role":"user","content":"more"}]}"#,
        );
        let b = of(
            r#"{"messages":[{"role":"system","content":"You are kind."},{"role":"user","content":[{"type":"text","text":"Summarise this contract."}]},{"role":"user","content":"other"}],"model":"x","stream":true}"#,
        );
        assert!(a.is_some());
        assert_eq!(a, b);
        let other = of(
            r#"{"messages":[{"role":"system","content":"You are kind."},{"role":"user","content":"Translate this."}]}"#,
        );
        assert_ne!(a, other);
    }

    #[test]
    fn anthropic_system_field() {
        let a = of(
            r#"{"model":"claude","system":"Be brief.","messages":[{"role":"user","content":"Hi"}],"max_tokens":10}"#,
        );
        let b = of(
            r#"{"model":"claude","system":[{"type":"text","text":"Be brief."}],"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello"}]}"#,
        );
        assert!(a.is_some());
        assert_eq!(a, b);
    }

    #[test]
    fn boundaries_count() {
        let a =
            of(r#"{"messages":[{"role":"system","content":"ab"},{"role":"user","content":"c"}]}"#);
        let b =
            of(r#"{"messages":[{"role":"system","content":"a"},{"role":"user","content":"bc"}]}"#);
        assert_ne!(a, b);
    }

    #[test]
    fn not_a_chat_request() {
        for body in [
            "",
            "not json",
            "[1,2]",
            r#"{"prompt":"x"}"#,
            r#"{"messages":"x"}"#,
            r#"{"messages":[]}"#,
            r#"{"messages":[1,2]}"#,
        ] {
            assert_eq!(of(body), None, "{body}");
        }
    }

    #[test]
    fn odd_content_is_skipped_not_refused() {
        let a = of(r#"{"messages":[{"role":"user","content":{"weird":true}}]}"#);
        let b = of(r#"{"messages":[{"role":"user"}]}"#);
        assert!(a.is_some());
        assert_eq!(a, b);
    }
}
