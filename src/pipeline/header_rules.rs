//! The `request_headers` / `response_headers` filter: set or remove headers on the
//! way to the endpoint and back.

use http::{HeaderName, HeaderValue};

use super::{Filter, Flow, HeaderEdits, RequestCtx, RequestView};

#[derive(Default)]
pub struct HeaderRules {
    pub request_set: Vec<(HeaderName, HeaderValue)>,
    pub request_remove: Vec<HeaderName>,
    pub response_set: Vec<(HeaderName, HeaderValue)>,
    pub response_remove: Vec<HeaderName>,
}

fn ask(edits: &mut HeaderEdits, set: &[(HeaderName, HeaderValue)], remove: &[HeaderName]) {
    for name in remove {
        edits.remove(name);
    }
    for (name, value) in set {
        edits.set(name, value.clone());
    }
}

impl Filter for HeaderRules {
    fn name(&self) -> &'static str {
        "headers"
    }

    fn on_request(
        &self,
        _ctx: &mut RequestCtx,
        _head: &dyn RequestView,
        edits: &mut HeaderEdits,
    ) -> Flow {
        ask(edits, &self.request_set, &self.request_remove);
        Flow::Continue
    }

    fn edits_responses(&self) -> bool {
        !(self.response_set.is_empty() && self.response_remove.is_empty())
    }

    fn on_response(&self, _ctx: &mut RequestCtx, edits: &mut HeaderEdits) {
        ask(edits, &self.response_set, &self.response_remove);
    }
}
