//! Junction: one proxy for the whole AI stack — a streaming gateway in front of model
//! servers, with routing, load balancing, TLS and hot reload.
//!
//! # Glossary
//! - *Downstream*: the client side of a proxied exchange. *Upstream*: the backend side.
//! - *Listener*: a named socket that accepts downstream connections.
//! - *Route*: a matcher (path, host, headers, `model`, ...) that sends a request to a pool.
//! - *Pool*: a named set of *endpoints* (model server URLs) with a balancing policy and an
//!   optional model *version*.
//! - *Plan*: the validated, compiled form of the config file; immutable, swapped on reload.
//! - *Filter*: one policy a request walks through (see [`pipeline`]).
//! - *Egress*: the forward proxy's outbound side; an *exit* is one egress proxy.

#![forbid(unsafe_code)]

pub mod acme;
pub mod admin;
pub mod balance;
pub mod canary;
pub mod cidr;
pub mod config;
pub mod decimal;
pub mod demo;
pub mod egress;
pub mod fastpath;
pub mod filter;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod inspect;
pub mod json_text;
pub mod llm;
pub mod masking;
pub mod normalize;
pub mod pipeline;
pub mod redis_connection;
pub mod replay;
pub mod routing;
pub mod security;
pub mod server;
pub mod telemetry;
pub mod tls;
pub mod units;
pub mod upstream;
