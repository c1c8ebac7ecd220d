//! Client address allow and deny lists (CIDRs). Deny wins over allow; an empty allow
//! list allows everyone. The client address is the socket peer, or the forwarded one
//! when the peer is a trusted proxy (see `trusted_proxies`).

use http::StatusCode;

use super::Recorder;
use crate::cidr::Cidr;
use crate::filter::{Filter, Flow, HeaderEdits, RequestCtx, RequestView};

pub struct AccessList {
    /// Where the list comes from, for logs and metrics: `listener:NAME` or `route:NAME`.
    pub scope: String,
    pub allow: Vec<Cidr>,
    pub deny: Vec<Cidr>,
    pub recorder: Recorder,
}

impl Filter for AccessList {
    fn name(&self) -> &'static str {
        "access_list"
    }

    fn on_request(
        &self,
        ctx: &mut RequestCtx,
        _head: &dyn RequestView,
        _edits: &mut HeaderEdits,
    ) -> Flow {
        let ip = ctx.client_ip;
        if let Some(net) = self.deny.iter().find(|net| net.contains(ip)) {
            let rule = format!("{} deny {net}", self.scope);
            return self.recorder.refuse(
                ctx,
                &rule,
                StatusCode::FORBIDDEN,
                "forbidden",
                &format!("client address {ip} is denied"),
            );
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|net| net.contains(ip)) {
            let rule = format!("{} allow", self.scope);
            return self.recorder.refuse(
                ctx,
                &rule,
                StatusCode::FORBIDDEN,
                "forbidden",
                &format!("client address {ip} is not allowed"),
            );
        }
        Flow::Continue
    }
}
