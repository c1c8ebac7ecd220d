//! OpenAI chat completions ⇄ Anthropic Messages: requests, replies, event streams and
//! errors rewritten from one shape to the other, as pure functions of bytes. The core
//! decides per attempt (the pool's `api`) whether a request and its answer go through.

#[cfg(test)]
mod conformance;
mod error;
mod request;
mod response;
mod stream;

pub use error::{error_body, translate_error};
pub use request::{
    ANTHROPIC_VERSION, DEFAULT_MAX_TOKENS, RequestError, TranslatedRequest, translate_request,
};
pub use response::translate_response;
pub use stream::StreamTranslator;

/// An API shape: what a client speaks, or what a pool's provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// OpenAI chat completions (`/v1/chat/completions`).
    OpenAi,
    /// Anthropic Messages (`/v1/messages`).
    Anthropic,
}

impl Api {
    /// The API a request speaks, read from its path: chat completions (any prefix, as
    /// Azure's `/openai/deployments/{name}/chat/completions`) or `/v1/messages` (a
    /// prefix allowed; OpenAI's own `/v1/threads/{id}/messages` is not it). Other paths
    /// (`/v1/models`, embeddings) are not translated.
    pub fn of_path(path: &str) -> Option<Api> {
        let path = path.split('?').next().unwrap_or(path).trim_end_matches('/');
        if path.ends_with("/chat/completions") {
            Some(Api::OpenAi)
        } else if path.ends_with("/v1/messages") {
            Some(Api::Anthropic)
        } else {
            None
        }
    }

    /// The path the API's requests go to, after any prefix.
    fn suffix(self) -> &'static str {
        match self {
            Api::OpenAi => "/v1/chat/completions",
            Api::Anthropic => "/v1/messages",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Api::OpenAi => "openai",
            Api::Anthropic => "anthropic",
        }
    }
}

/// One request's translation: the client speaks `client`, the pool's provider
/// `provider` (never the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    pub client: Api,
    pub provider: Api,
}

impl Translation {
    /// The translation a request on `path` needs to reach a pool speaking `provider`
    /// (`None`: the pool speaks whatever it is sent); `None` when the shapes match or
    /// the path is neither API's.
    pub fn between(path: &str, provider: Option<Api>) -> Option<Translation> {
        let provider = provider?;
        let client = Api::of_path(path)?;
        (client != provider).then_some(Translation { client, provider })
    }

    /// The request path for the provider: the client's API suffix replaced by the
    /// provider's, what came before it kept (`/v1/chat/completions` → `/v1/messages`);
    /// the query is kept too.
    pub fn provider_path(&self, path_and_query: &str) -> String {
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path_and_query, None),
        };
        let trimmed = path.trim_end_matches('/');
        // What comes before the API's own path (`/v1/...`, or a chat completions path
        // without its `/v1`, as Azure's) is kept.
        let base = trimmed
            .strip_suffix(self.client.suffix())
            .or_else(|| trimmed.strip_suffix("/chat/completions"))
            .unwrap_or(trimmed);
        let mut out = format!("{base}{}", self.provider.suffix());
        if let Some(query) = query {
            out.push('?');
            out.push_str(query);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_api_is_read_from_the_path() {
        assert_eq!(Api::of_path("/v1/chat/completions"), Some(Api::OpenAi));
        assert_eq!(
            Api::of_path("/openai/v1/chat/completions/"),
            Some(Api::OpenAi)
        );
        assert_eq!(Api::of_path("/v1/messages?beta=true"), Some(Api::Anthropic));
        assert_eq!(Api::of_path("/v1/threads/t1/messages"), None);
        assert_eq!(Api::of_path("/v1/messages/count_tokens"), None);
        assert_eq!(
            Api::of_path("/openai/deployments/gpt4o/chat/completions?api-version=1"),
            Some(Api::OpenAi)
        );
        assert_eq!(Api::of_path("/v1/models"), None);
        assert_eq!(Api::of_path("/v1/embeddings"), None);
    }

    #[test]
    fn only_differing_shapes_are_translated() {
        let path = "/v1/chat/completions";
        assert_eq!(Translation::between(path, None), None);
        assert_eq!(Translation::between(path, Some(Api::OpenAi)), None);
        assert_eq!(
            Translation::between("/v1/models", Some(Api::Anthropic)),
            None
        );
        let t = Translation::between(path, Some(Api::Anthropic)).unwrap();
        assert_eq!(t.provider_path("/v1/chat/completions"), "/v1/messages");
        assert_eq!(
            t.provider_path("/proxy/v1/chat/completions?x=1"),
            "/proxy/v1/messages?x=1"
        );
        assert_eq!(
            t.provider_path("/openai/deployments/d/chat/completions"),
            "/openai/deployments/d/v1/messages"
        );
        let back = Translation::between("/v1/messages", Some(Api::OpenAi)).unwrap();
        assert_eq!(back.provider_path("/v1/messages"), "/v1/chat/completions");
        assert_eq!(
            back.provider_path("/anthropic/v1/messages?beta=true"),
            "/anthropic/v1/chat/completions?beta=true"
        );
    }
}
