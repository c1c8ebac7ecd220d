//! What a route's policies are written against, whichever engine runs them: the
//! [`Filter`] trait and its [`FilterChain`], the request's context, an engine-neutral view
//! of the head and the header changes a filter asks for, and the reply a filter may give.
//! It sits below routing (a route holds its chain) and security (the filters themselves).

pub mod budget;
pub mod head;
mod local_reply;

use std::net::IpAddr;
use std::sync::Arc;

pub use budget::{BudgetHold, BudgetKey, Standing};
pub use head::{HeaderEdits, RequestView, RouteInput, ShortValue, StaticName};
pub use local_reply::LocalReply;

/// The status a request is recorded with when its client left before the answer's head
/// (nginx's 499): what `RequestCtx::status` holds in `on_done` then.
pub const CLIENT_CLOSED: u16 = 499;

/// What a filter decides about a request.
pub enum Flow {
    /// Go on to the next filter, then the endpoint.
    Continue,
    /// Answer the client now (deny, 401, 429...); later filters and the endpoint are skipped.
    Respond(Box<LocalReply>),
}

/// One policy on the request path. Every phase has a default that does nothing, so a
/// filter implements only what it needs. Filters never see an engine's types: they read
/// the request through a [`RequestView`] and ask for header changes through
/// [`HeaderEdits`], which each engine renders, so every policy runs on both engines.
pub trait Filter: Send + Sync {
    /// Name for logs and metrics.
    fn name(&self) -> &'static str;

    /// Before an endpoint is picked. May ask for header changes or answer the request.
    /// By default: continue unchanged.
    fn on_request(
        &self,
        _ctx: &mut RequestCtx,
        _head: &dyn RequestView,
        _edits: &mut HeaderEdits,
    ) -> Flow {
        Flow::Continue
    }

    /// Whether this filter must wait for something (I/O) in `on_request`; then the
    /// engine calls [`Filter::on_request_waiting`] instead. By default: false, so
    /// filters that decide on the spot cost no boxed future.
    fn waits(&self) -> bool {
        false
    }

    /// The waiting form of `on_request`. By default: `on_request`.
    fn on_request_waiting<'a>(
        &'a self,
        ctx: &'a mut RequestCtx,
        head: &'a (dyn RequestView + Sync),
        edits: &'a mut HeaderEdits,
    ) -> FilterFuture<'a> {
        Box::pin(std::future::ready(self.on_request(ctx, head, edits)))
    }

    /// When the endpoint's response head arrives (`ctx.status` is set), before it goes
    /// to the client: changes to the response's headers. Not called for responses the
    /// proxy made itself. By default: nothing.
    fn on_response(&self, _ctx: &mut RequestCtx, _edits: &mut HeaderEdits) {}

    /// Whether this filter changes response heads; lets an engine skip the response
    /// phase for chains that do not. By default: false.
    fn edits_responses(&self) -> bool {
        false
    }

    /// Whether this filter wants [`Filter::on_done`]; lets the handler skip the
    /// bookkeeping for chains that do not. By default: false.
    fn wants_done(&self) -> bool {
        false
    }

    /// After the response body has ended (or the client went away). By default: nothing.
    fn on_done(&self, _ctx: &RequestCtx) {}
}

/// What a waiting filter returns.
pub type FilterFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Flow> + Send + 'a>>;

/// A filter shared between chains (a listener's policies, held once for all of its
/// routes so that they share one budget; a rate limit also listed for the admin API):
/// every phase forwards, so sharing changes nothing on the request path.
impl<F: Filter + ?Sized> Filter for Arc<F> {
    fn name(&self) -> &'static str {
        (**self).name()
    }

    fn on_request(
        &self,
        ctx: &mut RequestCtx,
        head: &dyn RequestView,
        edits: &mut HeaderEdits,
    ) -> Flow {
        (**self).on_request(ctx, head, edits)
    }

    fn waits(&self) -> bool {
        (**self).waits()
    }

    fn on_request_waiting<'a>(
        &'a self,
        ctx: &'a mut RequestCtx,
        head: &'a (dyn RequestView + Sync),
        edits: &'a mut HeaderEdits,
    ) -> FilterFuture<'a> {
        (**self).on_request_waiting(ctx, head, edits)
    }

    fn on_response(&self, ctx: &mut RequestCtx, edits: &mut HeaderEdits) {
        (**self).on_response(ctx, edits)
    }

    fn edits_responses(&self) -> bool {
        (**self).edits_responses()
    }

    fn wants_done(&self) -> bool {
        (**self).wants_done()
    }

    fn on_done(&self, ctx: &RequestCtx) {
        (**self).on_done(ctx)
    }
}

/// A route's filters, in config order.
#[derive(Default)]
pub struct FilterChain {
    filters: Vec<Box<dyn Filter>>,
    pub(crate) wants_done: bool,
    /// Some filter waits in `on_request`.
    pub(crate) waits: bool,
    /// Some filter changes response heads.
    pub(crate) edits_responses: bool,
}

impl FilterChain {
    pub fn new(filters: Vec<Box<dyn Filter>>) -> Self {
        let wants_done = filters.iter().any(|f| f.wants_done());
        let waits = filters.iter().any(|f| f.waits());
        let edits_responses = filters.iter().any(|f| f.edits_responses());
        FilterChain {
            filters,
            wants_done,
            waits,
            edits_responses,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.filters.iter().map(|f| f.name()).collect()
    }

    /// `on_request` of every filter, in order, until one answers.
    pub(crate) fn on_request(
        &self,
        ctx: &mut RequestCtx,
        head: &dyn RequestView,
        edits: &mut HeaderEdits,
    ) -> Flow {
        for filter in &self.filters {
            if let Flow::Respond(response) = filter.on_request(ctx, head, edits) {
                return Flow::Respond(response);
            }
        }
        Flow::Continue
    }

    /// `on_request` of every filter, waiting where a filter must.
    pub(crate) async fn on_request_waiting(
        &self,
        ctx: &mut RequestCtx,
        head: &(dyn RequestView + Sync),
        edits: &mut HeaderEdits,
    ) -> Flow {
        for filter in &self.filters {
            let flow = if filter.waits() {
                filter.on_request_waiting(ctx, head, edits).await
            } else {
                filter.on_request(ctx, head, edits)
            };
            if let Flow::Respond(response) = flow {
                return Flow::Respond(response);
            }
        }
        Flow::Continue
    }

    /// The request phase of the whole chain, waiting only when some filter must.
    pub(crate) async fn run_request(
        &self,
        ctx: &mut RequestCtx,
        head: &(dyn RequestView + Sync),
        edits: &mut HeaderEdits,
    ) -> Flow {
        if self.waits {
            self.on_request_waiting(ctx, head, edits).await
        } else {
            self.on_request(ctx, head, edits)
        }
    }

    /// The response phase: the header changes every filter asks for.
    pub(crate) fn on_response(&self, ctx: &mut RequestCtx, edits: &mut HeaderEdits) {
        for filter in &self.filters {
            filter.on_response(ctx, edits);
        }
    }

    pub(crate) fn on_done(&self, ctx: &RequestCtx) {
        for filter in &self.filters {
            filter.on_done(ctx);
        }
    }
}

/// What the filters know about the request in progress.
pub struct RequestCtx {
    pub route: Arc<str>,
    pub client_ip: IpAddr,
    pub started: tokio::time::Instant,
    pub endpoint: Option<Arc<str>>,
    pub status: Option<http::StatusCode>,
    /// Set when the response body failed mid-way.
    pub failed: bool,
    /// The request body's `model`, when routing read it.
    pub model: Option<String>,
    /// Name of the API key that authenticated the request.
    pub key_name: Option<Arc<str>>,
    /// The client certificate's identity (mTLS), which `auth.identities` matches.
    pub client_identity: Option<Arc<crate::tls::ClientIdentity>>,
    /// Prompt tokens guessed from the body's size, when routing read the body.
    pub prompt_estimate: Option<u64>,
    /// The body's `max_tokens` (or `max_completion_tokens`).
    pub max_tokens: Option<u64>,
    /// Token usage the model server reported (set before `on_done`).
    pub usage: Option<crate::llm::Usage>,
    /// What the rate limits reserved, settled when the request ends.
    pub holds: smallvec::SmallVec<[BudgetHold; 1]>,
}

impl RequestCtx {
    pub fn new(route: Arc<str>, client_ip: IpAddr, started: tokio::time::Instant) -> Self {
        RequestCtx {
            route,
            client_ip,
            started,
            endpoint: None,
            status: None,
            failed: false,
            model: None,
            key_name: None,
            client_identity: None,
            prompt_estimate: None,
            max_tokens: None,
            usage: None,
            holds: smallvec::SmallVec::new(),
        }
    }

    /// What routing read of the body: its `model`, a prompt size guess and `max_tokens`.
    pub fn set_facts(&mut self, facts: Option<&crate::llm::RequestFacts>) {
        if let Some(facts) = facts {
            self.model = facts.model.clone();
            self.prompt_estimate = Some(facts.prompt_estimate);
            self.max_tokens = facts.max_tokens;
        }
    }
}
