//! The `request_headers` / `response_headers` filter: set or remove headers on the
//! way to the endpoint and back.

use http::{HeaderMap, HeaderName, HeaderValue, request, response};

use super::{Filter, Flow, RequestCtx};

#[derive(Default)]
pub struct HeaderRules {
    pub request_set: Vec<(HeaderName, HeaderValue)>,
    pub request_remove: Vec<HeaderName>,
    pub response_set: Vec<(HeaderName, HeaderValue)>,
    pub response_remove: Vec<HeaderName>,
}

fn apply(headers: &mut HeaderMap, set: &[(HeaderName, HeaderValue)], remove: &[HeaderName]) {
    for name in remove {
        headers.remove(name);
    }
    for (name, value) in set {
        headers.insert(name.clone(), value.clone());
    }
}

impl Filter for HeaderRules {
    fn name(&self) -> &'static str {
        "headers"
    }

    fn on_request(&self, _ctx: &mut RequestCtx, head: &mut request::Parts) -> Flow {
        apply(&mut head.headers, &self.request_set, &self.request_remove);
        Flow::Continue
    }

    fn on_response(&self, _ctx: &mut RequestCtx, head: &mut response::Parts) {
        apply(&mut head.headers, &self.response_set, &self.response_remove);
    }
}
