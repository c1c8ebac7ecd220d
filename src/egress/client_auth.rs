//! Who the egress client is and what it asks for: `Proxy-Authorization: Basic`
//! checked against the configured users, and the region and session a client chooses,
//! by header or, as commercial rotating proxies do, inside its proxy user name.

use base64::Engine;
use http::{HeaderMap, HeaderName};

use crate::security::{constant_time_eq, hash_key};

pub static X_JUNCTION_REGION: HeaderName = HeaderName::from_static("x-junction-region");
pub static X_JUNCTION_SESSION: HeaderName = HeaderName::from_static("x-junction-session");

/// A configured user's secret.
pub enum Secret {
    /// Read from the environment at load time.
    Plain(String),
    /// SHA-256 of the password, lowercase hex.
    Sha256(String),
}

pub struct User {
    pub name: String,
    pub secret: Secret,
}

/// What a request's proxy credentials and headers say.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ClientChoice {
    /// The user name without its parameters.
    pub user: Option<String>,
    pub password: Option<String>,
    pub region: Option<String>,
    pub session: Option<String>,
}

/// Reads `Proxy-Authorization` and the `x-junction-*` headers (which win over the
/// user name's parameters).
pub fn client_choice(headers: &HeaderMap) -> ClientChoice {
    let mut choice = ClientChoice::default();
    if let Some((user, password)) = basic_credentials(headers) {
        let (name, region, session) = split_user_parameters(&user);
        choice = ClientChoice {
            user: Some(name),
            password: Some(password),
            region,
            session,
        };
    }
    let header = |name: &HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    if let Some(region) = header(&X_JUNCTION_REGION) {
        choice.region = Some(region);
    }
    if let Some(session) = header(&X_JUNCTION_SESSION) {
        choice.session = Some(session);
    }
    choice
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers
        .get(http::header::PROXY_AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':').unwrap_or((&decoded, ""));
    Some((user.to_string(), password.to_string()))
}

const PARAMETERS: [&str; 3] = ["region", "country", "session"];

/// `alice-region-jp-session-abc` → ("alice", Some("jp"), Some("abc")). A parameter's
/// value runs to the next parameter name, so session ids may contain `-`; `country`
/// is taken as `region`, as commercial proxies spell it.
pub fn split_user_parameters(user: &str) -> (String, Option<String>, Option<String>) {
    let words: Vec<&str> = user.split('-').collect();
    let is_key = |i: usize| PARAMETERS.contains(&words[i]) && i + 1 < words.len();
    let first_key = (0..words.len()).find(|&i| is_key(i)).unwrap_or(words.len());
    let name = words[..first_key].join("-");
    let (mut region, mut session) = (None, None);
    let mut i = first_key;
    while i < words.len() {
        let key = words[i];
        let end = (i + 2..words.len())
            .find(|&j| is_key(j))
            .unwrap_or(words.len());
        let value = words[i + 1..end].join("-");
        match key {
            "session" => session = Some(value),
            _ => region = Some(value),
        }
        i = end;
    }
    (name, region, session)
}

/// The configured users; empty means anyone may use the proxy.
#[derive(Default)]
pub struct Users(pub Vec<User>);

impl Users {
    pub fn required(&self) -> bool {
        !self.0.is_empty()
    }

    /// Whether `user` and `password` match a configured user. Every user is compared,
    /// in constant time, so timing does not tell which names exist.
    pub fn accepts(&self, user: &str, password: &str) -> bool {
        let hashed = hash_key(password);
        let mut accepted = false;
        for known in &self.0 {
            let name_matches = constant_time_eq(known.name.as_bytes(), user.as_bytes());
            let secret_matches = match &known.secret {
                Secret::Plain(secret) => constant_time_eq(secret.as_bytes(), password.as_bytes()),
                Secret::Sha256(hex) => constant_time_eq(hex.as_bytes(), hashed.as_bytes()),
            };
            accepted |= name_matches & secret_matches;
        }
        accepted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_parameters_out_of_user_names() {
        let split = |u: &str| split_user_parameters(u);
        assert_eq!(split("alice"), ("alice".into(), None, None));
        assert_eq!(
            split("alice-region-jp-session-abc"),
            ("alice".into(), Some("jp".into()), Some("abc".into()))
        );
        assert_eq!(
            split("customer-X-zone-Y-country-fr-session-a-b-c"),
            (
                "customer-X-zone-Y".into(),
                Some("fr".into()),
                Some("a-b-c".into())
            )
        );
        assert_eq!(
            split("session-s1"),
            (String::new(), None, Some("s1".into()))
        );
        // A trailing key without a value is part of the name.
        assert_eq!(split("bob-region"), ("bob-region".into(), None, None));
    }

    #[test]
    fn reads_credentials_and_headers() {
        let mut headers = HeaderMap::new();
        let token = base64::engine::general_purpose::STANDARD.encode("alice-region-jp:s3cret");
        headers.insert(
            http::header::PROXY_AUTHORIZATION,
            format!("basic {token}").parse().unwrap(),
        );
        let choice = client_choice(&headers);
        assert_eq!(choice.user.as_deref(), Some("alice"));
        assert_eq!(choice.password.as_deref(), Some("s3cret"));
        assert_eq!(choice.region.as_deref(), Some("jp"));
        headers.insert(&X_JUNCTION_REGION, "fr".parse().unwrap());
        headers.insert(&X_JUNCTION_SESSION, "s9".parse().unwrap());
        let choice = client_choice(&headers);
        assert_eq!(choice.region.as_deref(), Some("fr"), "the header wins");
        assert_eq!(choice.session.as_deref(), Some("s9"));
        headers.insert(
            http::header::PROXY_AUTHORIZATION,
            "Basic !!!".parse().unwrap(),
        );
        assert_eq!(client_choice(&headers).user, None);
    }

    #[test]
    fn users_accept_plain_and_hashed_passwords() {
        let users = Users(vec![
            User {
                name: "alice".into(),
                secret: Secret::Plain("pw1".into()),
            },
            User {
                name: "bob".into(),
                secret: Secret::Sha256(hash_key("pw2")),
            },
        ]);
        assert!(users.accepts("alice", "pw1"));
        assert!(users.accepts("bob", "pw2"));
        assert!(!users.accepts("alice", "pw2"));
        assert!(!users.accepts("carol", "pw1"));
        assert!(!users.accepts("bob", ""));
    }
}
