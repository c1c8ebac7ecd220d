//! API keys: `Authorization: Bearer KEY` or `x-api-key: KEY`, checked against SHA-256
//! hashes (the keys themselves are never stored), each with a name and the routes and
//! models it may use. Logs and metrics carry the key's name, never the key.

use http::{HeaderName, StatusCode};
use sha2::{Digest, Sha256};

use super::Recorder;
use std::sync::Arc;

use super::rate_limit::RateLimit;
use crate::filter::head::header_text;
use crate::filter::{Filter, FilterFuture, Flow, HeaderEdits, RequestCtx, RequestView};
use crate::routing::Glob;

static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

pub struct ApiKey {
    pub name: std::sync::Arc<str>,
    /// SHA-256 of the key, lowercase hex.
    pub sha256: String,
    /// Routes it may use (empty: all).
    pub routes: Vec<String>,
    /// Models it may ask for (globs; empty: all).
    pub models: Vec<Glob>,
    /// The key's own budget, spent after the key is accepted (shared with the admin
    /// API's view of the limits).
    pub limit: Option<Arc<RateLimit>>,
}

pub struct ApiKeys {
    pub keys: Vec<ApiKey>,
    /// Client certificate identities (mTLS) admitted without a key.
    pub identities: Vec<Glob>,
    pub recorder: Recorder,
}

/// SHA-256 of a key as lowercase hex, the form keys are stored in.
pub fn hash_key(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn presented(head: &dyn RequestView) -> Option<String> {
    if let Some(value) = head
        .first(&http::header::AUTHORIZATION)
        .and_then(header_text)
    {
        // The scheme name is case-insensitive (RFC 9110 11.1).
        if let Some((scheme, token)) = value.split_once(' ')
            && scheme.eq_ignore_ascii_case("bearer")
        {
            return Some(token.trim().to_string());
        }
    }
    head.first(&X_API_KEY)
        .and_then(header_text)
        .map(|v| v.trim().to_string())
}

impl Filter for ApiKeys {
    fn name(&self) -> &'static str {
        "api_keys"
    }

    fn on_request(
        &self,
        ctx: &mut RequestCtx,
        head: &dyn RequestView,
        edits: &mut HeaderEdits,
    ) -> Flow {
        match self.authenticate(ctx, head) {
            Ok(Some(limit)) => limit.on_request(ctx, head, edits),
            Ok(None) => Flow::Continue,
            Err(refusal) => refusal,
        }
    }

    fn waits(&self) -> bool {
        self.keys
            .iter()
            .any(|k| k.limit.as_ref().is_some_and(|l| l.waits()))
    }

    fn on_request_waiting<'a>(
        &'a self,
        ctx: &'a mut RequestCtx,
        head: &'a (dyn RequestView + Sync),
        edits: &'a mut HeaderEdits,
    ) -> FilterFuture<'a> {
        Box::pin(async move {
            match self.authenticate(ctx, head) {
                Ok(Some(limit)) if limit.waits() => {
                    limit.on_request_waiting(ctx, head, edits).await
                }
                Ok(Some(limit)) => limit.on_request(ctx, head, edits),
                Ok(None) => Flow::Continue,
                Err(refusal) => refusal,
            }
        })
    }

    fn edits_responses(&self) -> bool {
        self.keys.iter().any(|k| k.limit.is_some())
    }

    fn on_response(&self, ctx: &mut RequestCtx, edits: &mut HeaderEdits) {
        if let Some(limit) = self.limit_of(ctx) {
            limit.on_response(ctx, edits);
        }
    }

    fn wants_done(&self) -> bool {
        self.keys
            .iter()
            .any(|k| k.limit.as_ref().is_some_and(|l| l.wants_done()))
    }

    fn on_done(&self, ctx: &RequestCtx) {
        if let Some(limit) = self.limit_of(ctx) {
            limit.on_done(ctx);
        }
    }
}

impl ApiKeys {
    /// Whether the client certificate's identity is one of `identities` (`None`: no
    /// certificate).
    fn identity_admits(&self, ctx: &RequestCtx) -> Option<bool> {
        let identity = ctx.client_identity.as_deref()?;
        Some(
            identity
                .names()
                .any(|name| self.identities.iter().any(|glob| glob.matches(&name))),
        )
    }

    fn limit_of(&self, ctx: &RequestCtx) -> Option<&RateLimit> {
        let name = ctx.key_name.as_deref()?;
        self.keys
            .iter()
            .find(|k| *k.name == *name)?
            .limit
            .as_deref()
    }

    /// Checks the key; on success names it in `ctx` and gives its own limiter, if any.
    fn authenticate(
        &self,
        ctx: &mut RequestCtx,
        head: &dyn RequestView,
    ) -> Result<Option<&RateLimit>, Flow> {
        if !self.identities.is_empty() {
            match self.identity_admits(ctx) {
                Some(true) => return Ok(None),
                // With no keys, a certificate is the only way in.
                Some(false) if self.keys.is_empty() => {
                    let identity = ctx.client_identity.as_deref().map_or("", |i| i.primary());
                    let message = format!(
                        "client identity {identity:?} may not use route {:?}",
                        ctx.route
                    );
                    return Err(self.recorder.refuse(
                        ctx,
                        "client_identity route",
                        StatusCode::FORBIDDEN,
                        "forbidden",
                        &message,
                    ));
                }
                None if self.keys.is_empty() => {
                    return Err(self.recorder.refuse(
                        ctx,
                        "client_identity missing",
                        StatusCode::UNAUTHORIZED,
                        "unauthorized",
                        "a client certificate is required",
                    ));
                }
                _ => {}
            }
        }
        let Some(key) = presented(head) else {
            return Err(self.recorder.refuse(
                ctx,
                "api_key missing",
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "an API key is required (Authorization: Bearer KEY or x-api-key)",
            ));
        };
        let digest = hash_key(&key);
        // Compare every stored hash in full: no early exit on the first differing byte.
        let found = self
            .keys
            .iter()
            .find(|k| super::constant_time_eq(k.sha256.as_bytes(), digest.as_bytes()));
        let Some(found) = found else {
            return Err(self.recorder.refuse(
                ctx,
                "api_key unknown",
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "unknown API key",
            ));
        };
        if !found.routes.is_empty() && !found.routes.iter().any(|r| *r == *ctx.route) {
            let message = format!("key {:?} may not use route {:?}", found.name, ctx.route);
            return Err(self.recorder.refuse(
                ctx,
                &format!("api_key {} route", found.name),
                StatusCode::FORBIDDEN,
                "forbidden",
                &message,
            ));
        }
        if !found.models.is_empty() {
            let allowed = ctx
                .model
                .as_deref()
                .is_some_and(|model| found.models.iter().any(|g| g.matches(model)));
            if !allowed {
                let message = format!(
                    "key {:?} may not use model {:?}",
                    found.name,
                    ctx.model.as_deref().unwrap_or("")
                );
                return Err(self.recorder.refuse(
                    ctx,
                    &format!("api_key {} model", found.name),
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    &message,
                ));
            }
        }
        ctx.key_name = Some(found.name.clone());
        Ok(found.limit.as_deref())
    }
}
