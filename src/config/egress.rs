//! Compilation of `[[egress]]` entries into egress listeners: exits, rotation, users,
//! politeness, bans and limits, each checked with its key path.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::CompileContext;
use super::checks::{Errors, duration_or, parse_addr};
use super::plan::{GatewayListener, ListenerPlan};
use super::spec::{ConfigSpec, EgressSpec, InterceptSpec};
use crate::egress::adaptive::{AdaptiveRules, Throttle};
use crate::egress::bans::BanRules;
use crate::egress::client_auth::{Secret, User, Users};
use crate::egress::exits::{ExitSource, ExitUrl};
use crate::egress::fleet::FleetState;
use crate::egress::intercept::Intercept;
use crate::egress::politeness::{HostLimits, Politeness};
use crate::egress::robots::RobotsCache;
use crate::egress::rotation::{Rotation, Rotator};
use crate::egress::verify::VerifyRules;
use crate::egress::{
    ClientProtocol, Destinations, EgressLimits, EgressMask, EgressParts, EgressPlan, ExitsFile,
    Rule,
};
use crate::routing::{Glob, Route, RouteTable};
use crate::tls::authority::{Authority, AuthorityError};
use crate::units::{parse_byte_size, parse_rate};
use crate::upstream::Protocol;

const ROBOTS_TTL: Duration = Duration::from_secs(3600);
const ROBOTS_MAX_SITES: usize = 10_000;

/// `[[egress]]` entries, as listeners without routes.
pub(super) fn compile_egress(
    spec: &ConfigSpec,
    base: &Path,
    context: &CompileContext<'_>,
    errors: &mut Errors,
) -> Vec<(ListenerPlan, Vec<Arc<Route>>)> {
    let mut out = Vec::new();
    for (i, egress) in spec.egress.iter().enumerate() {
        let path = format!("egress[{i}]");
        if spec.listeners.iter().any(|l| l.name == egress.name)
            || spec.egress[..i].iter().any(|e| e.name == egress.name)
        {
            errors.push((
                format!("{path}.name"),
                format!("duplicate listener name {:?}", egress.name),
            ));
        }
        let bind = parse_addr(&egress.bind, &format!("{path}.bind"), errors);
        let before = errors.len();
        let audit = Some(context.audit.clone());
        let parts = compile_parts(egress, &path, base, audit, errors);
        let (Some(bind), Some(parts)) = (bind, parts) else {
            continue;
        };
        if errors.len() > before {
            continue;
        }
        let idle_timeout = parts.limits.idle_timeout;
        let plan = match EgressPlan::new(parts, context.telemetry) {
            Ok(plan) => plan,
            Err(error) => {
                let key = if egress.exits_file.is_some() && error.contains(':') {
                    format!("{path}.exits_file")
                } else {
                    format!("{path}.exits")
                };
                errors.push((key, error));
                continue;
            }
        };
        let listener = ListenerPlan {
            bind,
            tls: None,
            acme: None,
            max_connections_per_client: None,
            gateway: Arc::new(GatewayListener {
                name: egress.name.as_str().into(),
                identity_header: None,
                trusted_proxies: Vec::new(),
                model_body_limit: 0,
                header_read_timeout: idle_timeout.min(Duration::from_secs(30)),
                body_timeouts: Default::default(),
                max_request_head_bytes: None,
                fast_path: false,
                routes: RouteTable::default(),
            }),
            egress: Some(Arc::new(plan)),
        };
        out.push((listener, Vec::new()));
    }
    out
}

fn rate(text: Option<&str>, key: String, errors: &mut Errors) -> Option<(u32, Duration)> {
    text.and_then(|text| parse_rate(text).map_err(|e| errors.push((key, e))).ok())
}

fn compile_parts(
    egress: &EgressSpec,
    path: &str,
    base: &Path,
    audit: Option<Arc<crate::security::audit::AuditLog>>,
    errors: &mut Errors,
) -> Option<EgressParts> {
    let mut exits = Vec::new();
    for (j, exit) in egress.exits.iter().enumerate() {
        match ExitUrl::parse(&exit.url) {
            Ok(_) => exits.push(ExitSource {
                url: exit.url.clone(),
                region: exit.region.clone(),
                name: exit.name.clone(),
            }),
            Err(e) => errors.push((format!("{path}.exits[{j}].url"), e)),
        }
    }
    let poll = duration_or(
        &egress.exits_file_poll,
        Duration::from_secs(2),
        &format!("{path}.exits_file_poll"),
        errors,
    );
    let exits_file = egress
        .exits_file
        .as_deref()
        .map(|file| ExitsFile::new(base.join(file), poll));
    let wants_tls = egress.exits_ca_file.is_some()
        || egress.exits_file.is_some()
        || egress
            .exits
            .iter()
            .any(|e| e.url.trim_start().starts_with("https"));
    let exit_tls = match wants_tls.then(|| {
        crate::upstream::client_config(
            egress
                .exits_ca_file
                .as_deref()
                .map(|f| base.join(f))
                .as_deref()
                .and_then(|p| p.to_str()),
            Protocol::Http1,
        )
    }) {
        None => None,
        Some(Ok(config)) => Some(config),
        Some(Err(e)) => {
            errors.push((format!("{path}.exits_ca_file"), e));
            None
        }
    };
    let rotation = match egress.rotation.as_deref() {
        None => Rotation::RoundRobin,
        Some(text) => Rotation::parse(text).unwrap_or_else(|| {
            errors.push((
                format!("{path}.rotation"),
                format!("{text:?} is not one of round_robin, random, least_used, sticky_host, sticky_session"),
            ));
            Rotation::RoundRobin
        }),
    };
    let session_idle = duration_or(
        &egress.session_idle,
        Duration::from_secs(600),
        &format!("{path}.session_idle"),
        errors,
    );
    let rules = |items: &[String]| items.iter().map(|text| Rule::parse(text)).collect();
    let destinations = Destinations::new(rules(&egress.allow), rules(&egress.deny));

    let mut users = Vec::new();
    for (j, user) in egress.users.iter().enumerate() {
        let key = format!("{path}.users[{j}]");
        if user.name.is_empty() || user.name.contains(':') {
            errors.push((
                format!("{key}.name"),
                "a user name is not empty and has no ':'".into(),
            ));
        }
        let secret = match (&user.password_env, &user.password_hash) {
            (Some(variable), None) => match std::env::var(variable) {
                Ok(value) if !value.is_empty() => Some(Secret::Plain(value)),
                _ => {
                    errors.push((
                        format!("{key}.password_env"),
                        format!("the environment variable {variable} is not set"),
                    ));
                    None
                }
            },
            (None, Some(hash)) => {
                let hex = hash
                    .strip_prefix("sha256:")
                    .unwrap_or(hash)
                    .to_ascii_lowercase();
                if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    Some(Secret::Sha256(hex))
                } else {
                    errors.push((
                        format!("{key}.password_hash"),
                        "expected \"sha256:<64 hex digits>\" (junction key hash PASSWORD)".into(),
                    ));
                    None
                }
            }
            _ => {
                errors.push((
                    key.clone(),
                    "set exactly one of password_env and password_hash".into(),
                ));
                None
            }
        };
        if let Some(secret) = secret {
            users.push(User {
                name: user.name.clone(),
                secret,
            });
        }
    }

    let default_limits = HostLimits {
        rate: rate(
            egress.per_host_rate.as_deref(),
            format!("{path}.per_host_rate"),
            errors,
        ),
        concurrency: egress.per_host_concurrency,
    };
    if egress.per_host_concurrency == Some(0) {
        errors.push((
            format!("{path}.per_host_concurrency"),
            "must be at least 1".into(),
        ));
    }
    let mut overrides = Vec::new();
    for (j, host) in egress.hosts.iter().enumerate() {
        let key = format!("{path}.hosts[{j}]");
        if host.concurrency == Some(0) {
            errors.push((format!("{key}.concurrency"), "must be at least 1".into()));
        }
        overrides.push((
            Glob::new(&host.host, true),
            // A key the override leaves out keeps the listener-wide value.
            HostLimits {
                rate: rate(host.rate.as_deref(), format!("{key}.rate"), errors)
                    .or(default_limits.rate),
                concurrency: host.concurrency.or(default_limits.concurrency),
            },
        ));
    }
    let queue = egress.per_host_queue.unwrap_or(64);
    let politeness = Politeness::new(
        default_limits,
        overrides,
        queue,
        duration_or(
            &egress.per_host_wait,
            Duration::from_secs(30),
            &format!("{path}.per_host_wait"),
            errors,
        ),
    );
    let politeness = politeness.with_adaptive(adaptive_rules(egress, path, errors));
    let robots = egress.respect_robots.then(|| {
        RobotsCache::new(
            egress.robots_user_agent.as_deref().unwrap_or("junction"),
            ROBOTS_TTL,
            ROBOTS_MAX_SITES,
        )
    });

    let mut ban = BanRules::default();
    if let Some(spec) = &egress.ban {
        let key = format!("{path}.ban");
        for (j, status) in spec.status.iter().enumerate() {
            if !(100..=599).contains(status) {
                errors.push((
                    format!("{key}.status[{j}]"),
                    format!("{status} is not an HTTP status"),
                ));
            }
        }
        ban.status = spec.status.clone();
        ban.body = spec
            .body
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| p.to_ascii_lowercase().into_bytes())
            .collect();
        ban.cooldown = duration_or(
            &spec.cooldown,
            ban.cooldown,
            &format!("{key}.cooldown"),
            errors,
        );
        ban.max_cooldown = duration_or(
            &spec.max_cooldown,
            ban.max_cooldown.max(ban.cooldown),
            &format!("{key}.max_cooldown"),
            errors,
        );
        if ban.max_cooldown < ban.cooldown {
            errors.push((
                format!("{key}.max_cooldown"),
                "must be at least cooldown".into(),
            ));
        }
        if let Some(text) = &spec.scan_bytes {
            match parse_byte_size(text) {
                Ok(bytes) if bytes > 0 && bytes <= 16 << 20 => ban.scan_bytes = bytes as usize,
                Ok(_) => errors.push((
                    format!("{key}.scan_bytes"),
                    "must be between 1 byte and 16MiB".into(),
                )),
                Err(e) => errors.push((format!("{key}.scan_bytes"), e)),
            }
        }
    }
    let attempts = egress.attempts.unwrap_or(3);
    if attempts == 0 {
        errors.push((format!("{path}.attempts"), "must be at least 1".into()));
    }
    let max_tunnels_per_client = egress.max_tunnels_per_client.unwrap_or(256);
    if max_tunnels_per_client == 0 {
        errors.push((
            format!("{path}.max_tunnels_per_client"),
            "must be at least 1".into(),
        ));
    }
    let limits = EgressLimits {
        attempts,
        max_tunnels_per_client,
        idle_timeout: duration_or(
            &egress.idle_timeout,
            Duration::from_secs(300),
            &format!("{path}.idle_timeout"),
            errors,
        ),
        connect_timeout: duration_or(
            &egress.connect_timeout,
            Duration::from_secs(10),
            &format!("{path}.connect_timeout"),
            errors,
        ),
        probe_interval: duration_or(
            &egress.probe_interval,
            Duration::from_secs(5),
            &format!("{path}.probe_interval"),
            errors,
        ),
    };
    if egress.exits.is_empty() && egress.exits_file.is_none() {
        errors.push((
            format!("{path}.exits"),
            "no exits: add exits = [{ url = \"direct\" }] to send requests from this host".into(),
        ));
    }
    let capture = egress
        .capture
        .as_ref()
        .and_then(|c| super::capture::compile_capture(c, &format!("{path}.capture"), base, errors));
    let outbound = egress.outbound_volume.as_ref().and_then(|o| {
        let key = format!("{path}.outbound_volume");
        super::anomalies::compile_outbound(o, &key, &egress.name, audit.clone(), errors)
    });
    let protocol = match egress.protocol.as_deref() {
        None | Some("http") => ClientProtocol::Http,
        Some("socks5") => {
            if egress.respect_robots && egress.intercept.is_none() {
                errors.push((
                    format!("{path}.respect_robots"),
                    "a socks5 listener carries tunnels only: robots.txt paths cannot be seen (use protocol = \"http\", or intercept)".into(),
                ));
            }
            ClientProtocol::Socks5
        }
        Some(other) => {
            errors.push((
                format!("{path}.protocol"),
                format!("{other:?} is not http or socks5"),
            ));
            ClientProtocol::Http
        }
    };
    let verify = egress.verify.as_ref().and_then(|spec| {
        let key = format!("{path}.verify");
        let interval = duration_or(&spec.interval, Duration::from_secs(300), &format!("{key}.interval"), errors);
        let timeout = duration_or(&spec.timeout, Duration::from_secs(10), &format!("{key}.timeout"), errors);
        if interval.is_zero() {
            errors.push((format!("{key}.interval"), "must be above 0".into()));
        }
        let url = match spec.url.parse::<http::Uri>() {
            Ok(url) if url.scheme_str() == Some("http") && url.host().is_some_and(|h| !h.is_empty()) => url,
            _ => {
                errors.push((
                    format!("{key}.url"),
                    format!("{:?} is not an http:// URL (the probe is a plain request through each exit)", spec.url),
                ));
                return None;
            }
        };
        Some(VerifyRules { url, interval, timeout })
    });
    let fleet = egress.state.as_ref().and_then(|spec| {
        if spec.backend == "local" {
            return None;
        }
        let key = format!("{path}.state.backend");
        if !(spec.backend.starts_with("redis://") || spec.backend.starts_with("rediss://")) {
            errors.push((
                key,
                format!("{:?} is not \"local\" or a redis:// URL", spec.backend),
            ));
            return None;
        }
        match FleetState::new(&spec.backend, &egress.name) {
            Ok(fleet) => Some(Arc::new(fleet)),
            Err(error) => {
                errors.push((key, error));
                None
            }
        }
    });
    let intercept = egress
        .intercept
        .as_ref()
        .and_then(|spec| compile_intercept(spec, &format!("{path}.intercept"), base, errors));
    let mask = egress.mask.as_ref().and_then(|spec| {
        let key = format!("{path}.mask");
        if protocol == ClientProtocol::Socks5 && egress.intercept.is_none() {
            errors.push((
                key.clone(),
                "a socks5 listener carries tunnels only: their bodies cannot be seen (add intercept, or use protocol = \"http\")".into(),
            ));
        }
        let policy = super::masking::compile_mask(spec, &key, errors)?;
        Some(EgressMask {
            policy: Arc::new(policy),
            audit: audit.clone(),
        })
    });
    let politeness = match &fleet {
        Some(fleet) => politeness.with_shared_slots(fleet.clone()),
        None => politeness,
    };
    Some(EgressParts {
        intercept,
        mask,
        fleet,
        verify,
        protocol,
        capture,
        outbound,
        name: egress.name.as_str().into(),
        destinations,
        exits,
        exits_file,
        exit_tls,
        rotator: Rotator::new(rotation, session_idle),
        users: Users(users),
        politeness,
        robots,
        ban,
        limits,
    })
}

/// `intercept`: the host globs, the CA (a CA whose key is the key given), and the
/// trust in sites' certificates.
fn compile_intercept(
    spec: &InterceptSpec,
    key: &str,
    base: &Path,
    errors: &mut Errors,
) -> Option<Intercept> {
    if spec.hosts.is_empty() {
        errors.push((
            format!("{key}.hosts"),
            "lists no host: name the hosts to intercept (\"*.example.org\")".into(),
        ));
    }
    let mut hosts = Vec::with_capacity(spec.hosts.len());
    for (i, host) in spec.hosts.iter().enumerate() {
        let host = host.trim();
        if host.is_empty() || host.contains(['/', ' ']) {
            errors.push((
                format!("{key}.hosts[{i}]"),
                format!("{host:?} is not a host glob"),
            ));
            continue;
        }
        hosts.push(Glob::new(
            host.trim_start_matches('[').trim_end_matches(']'),
            true,
        ));
    }
    let path_of = |file: &str| base.join(file).to_string_lossy().into_owned();
    let authority = match Authority::load(&path_of(&spec.ca.cert), &path_of(&spec.ca.key)) {
        Ok(authority) => Some(Arc::new(authority)),
        Err(AuthorityError::Cert(error)) => {
            errors.push((format!("{key}.ca.cert"), error));
            None
        }
        Err(AuthorityError::Key(error)) => {
            errors.push((format!("{key}.ca.key"), error));
            None
        }
    };
    let upstream_ca = spec.upstream_ca.as_deref().map(&path_of);
    let upstream_tls = match crate::upstream::client_config(upstream_ca.as_deref(), Protocol::H2) {
        Ok(config) => {
            let mut config = (*config).clone();
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            Some(Arc::new(config))
        }
        Err(error) => {
            errors.push((format!("{key}.upstream_ca"), error));
            None
        }
    };
    Some(Intercept::new(hosts, authority?, upstream_tls?))
}

/// `honour_retry_after`, `max_retry_after` and `per_host` (AutoThrottle).
fn adaptive_rules(egress: &EgressSpec, path: &str, errors: &mut Errors) -> AdaptiveRules {
    let max_hold = duration_or(
        &egress.max_retry_after,
        Duration::from_secs(600),
        &format!("{path}.max_retry_after"),
        errors,
    );
    let throttle = egress.per_host.as_ref().map(|spec| {
        let key = format!("{path}.per_host");
        let target_concurrency = spec.target_concurrency.unwrap_or(2.0);
        if !(target_concurrency.is_finite() && target_concurrency > 0.0) {
            errors.push((
                format!("{key}.target_concurrency"),
                "must be a number above 0".into(),
            ));
        }
        let min_delay = duration_or(
            &spec.min_delay,
            Duration::ZERO,
            &format!("{key}.min_delay"),
            errors,
        );
        let max_delay = duration_or(
            &spec.max_delay,
            Duration::from_secs(60),
            &format!("{key}.max_delay"),
            errors,
        );
        if max_delay < min_delay {
            errors.push((
                format!("{key}.max_delay"),
                "must not be shorter than min_delay".into(),
            ));
        }
        let start_delay = duration_or(
            &spec.start_delay,
            Duration::from_secs(1),
            &format!("{key}.start_delay"),
            errors,
        );
        Throttle {
            target_concurrency,
            min_delay,
            max_delay: max_delay.max(min_delay),
            start_delay,
        }
    });
    if egress.robots_crawl_delay && !egress.respect_robots {
        errors.push((
            format!("{path}.robots_crawl_delay"),
            "needs respect_robots = true (robots.txt is fetched only then)".into(),
        ));
    }
    AdaptiveRules {
        honour_retry_after: egress.honour_retry_after.unwrap_or(true),
        max_hold,
        throttle,
        crawl_delay: egress.robots_crawl_delay,
    }
}
