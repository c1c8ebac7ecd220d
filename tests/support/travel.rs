//! The three ways a request travels through Junction (the fast path, hyper, and a
//! hand-off from the one to the other), and the one-listener, one-pool, one-route config
//! the suites that run each case on every way start from.

use super::TestProxy;
use super::proxy::RunningProxy;

/// How a request travels through Junction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Travel {
    /// The hand-written HTTP/1.1 fast path (the default listener).
    Fast,
    /// hyper's server and the full pipeline (`fast_path = false`).
    Hyper,
    /// The fast path reads the head, then hands the connection to hyper: the route says
    /// `fast_path = false`.
    HandOff,
}

impl Travel {
    pub const ALL: [Travel; 3] = [Travel::Fast, Travel::Hyper, Travel::HandOff];

    /// The listener's `fast_path` value.
    pub fn fast_path(self) -> bool {
        self != Travel::Hyper
    }

    /// What a forwarding route needs so that requests travel this way (routes using it
    /// forward to the pool "p").
    pub fn route_keys(self) -> &'static str {
        match self {
            Travel::HandOff => "fast_path = false",
            Travel::Fast | Travel::Hyper => "",
        }
    }
}

/// Config snippets around the one listener "public", the pool "p" and the catch-all
/// route "all".
#[derive(Default)]
pub struct Extra<'a> {
    /// Top-level tables (`[access_log]`, `[server]`, ...), placed before `[admin]`.
    pub top: &'a str,
    pub listener: &'a str,
    pub pool: &'a str,
    /// Pools and routes placed before the catch-all route "all".
    pub before: &'a str,
    pub route: &'a str,
}

/// An admin listener and the listener "public" (served as `travel` says) with `extra`.
pub fn listeners(travel: Travel, extra: &str) -> String {
    let fast_path = travel.fast_path();
    format!(
        "{}fast_path = {fast_path}\n{extra}\n",
        super::listeners_toml()
    )
}

/// An admin listener, the listener "public" (served as `travel` says), the pool "p" of
/// `endpoints` and the route "all" for every path, with `extra` added to each.
pub fn config(travel: Travel, endpoints: &[String], extra: &Extra<'_>) -> String {
    let travel_keys = travel.route_keys();
    let endpoints: Vec<String> = endpoints
        .iter()
        .map(|url| format!("{{ url = \"{url}\" }}"))
        .collect();
    let endpoints = endpoints.join(", ");
    let Extra {
        top,
        listener,
        pool,
        before,
        route,
    } = extra;
    let listeners = listeners(travel, listener);
    format!(
        r#"
{top}
{listeners}

[[pools]]
name = "p"
endpoints = [{endpoints}]
{pool}

{before}

[[routes]]
name = "all"
match = {{ path_prefix = "/" }}
pool = "p"
{travel_keys}
{route}
"#
    )
}

/// A running proxy with [`config`].
pub async fn start(travel: Travel, endpoints: &[String], extra: &Extra<'_>) -> RunningProxy {
    TestProxy::from_toml(&config(travel, endpoints, extra))
        .start()
        .await
}

/// Each case on both engines, as the tests `CASE::hyper_path` and `CASE::fast_path`:
/// `on_both_engines!(case, ...)` for cases `async fn case(Travel)`, or
/// `on_both_engines!(name => case(arguments...); ...)` for cases with more arguments.
/// The suite imports `Travel`.
#[macro_export]
macro_rules! on_both_engines {
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                #[tokio::test]
                async fn hyper_path() {
                    super::$case(super::Travel::Hyper).await
                }

                #[tokio::test]
                async fn fast_path() {
                    super::$case(super::Travel::Fast).await
                }
            }
        )*
    };
    ($($name:ident => $case:ident($($arg:expr),*);)*) => {
        $(
            mod $name {
                #[tokio::test]
                async fn hyper_path() {
                    super::$case(super::Travel::Hyper, $($arg),*).await
                }

                #[tokio::test]
                async fn fast_path() {
                    super::$case(super::Travel::Fast, $($arg),*).await
                }
            }
        )*
    };
}
