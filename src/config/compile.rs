//! Validation and compilation of a [`ConfigSpec`] into a [`Plan`]: names resolve,
//! addresses and durations parse, regexes compile, files load. Every problem is
//! collected with its key path; nothing here panics on bad input.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::CompileContext;
use super::checks::{Errors, check_unique, duration_or, parse_addr, parse_cidrs, resolve};
use super::plan::{BodyTimeouts, GatewayListener, ListenerPlan, Plan};
use super::spec::{AccessLogSpec, ConfigSpec, MetricsSpec, SizeSpec};
use crate::routing::{Route, RouteTable};
use crate::telemetry::{
    AccessLogSettings, Buckets, DEFAULT_LATENCY_BUCKETS, DEFAULT_TOKEN_BUCKETS, Destination, Field,
    check_buckets,
};
use crate::units::{parse_byte_size, parse_duration};

const DEFAULT_MODEL_BODY_LIMIT: u64 = 1 << 20;
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
const DEFAULT_TOKEN_ENV: &str = "JUNCTION_ADMIN_TOKEN";

pub fn compile(
    spec: ConfigSpec,
    base: &Path,
    context: &CompileContext<'_>,
) -> Result<Plan, Errors> {
    let mut errors = Errors::new();

    let admin_bind = parse_addr(&spec.admin.bind, "admin.bind", &mut errors);
    let admin_hosts = compile_admin_hosts(&spec.admin.hosts, &mut errors);
    let shutdown_grace = spec
        .server
        .shutdown_grace
        .as_deref()
        .and_then(|text| {
            parse_duration(text)
                .map_err(|e| errors.push(("server.shutdown_grace".into(), e)))
                .ok()
        })
        .unwrap_or(DEFAULT_SHUTDOWN_GRACE);

    let fleet = compile_fleet(&spec.fleet, &mut errors);
    let audit = compile_audit(&spec.audit, base, &mut errors);
    let buckets = compile_buckets(&spec.metrics, &mut errors);
    let access_log = compile_access_log(spec.access_log.as_ref(), base, &mut errors);
    let pools = super::pools::compile_pools(&spec.pools, base, context, &mut errors);
    let mut listeners = compile_listeners(&spec, base, &mut errors);
    let mut rate_limits = Vec::new();
    super::routes::compile_routes(
        &spec,
        base,
        &pools,
        &mut listeners,
        context,
        &buckets,
        &mut rate_limits,
        &mut errors,
    );

    listeners.extend(super::egress::compile_egress(
        &spec,
        base,
        context,
        &mut errors,
    ));
    if spec.listeners.is_empty() && spec.egress.is_empty() {
        errors.push((
            "listeners".into(),
            "at least one [[listeners]] or [[egress]] entry is needed".into(),
        ));
    }
    let admin_token = admin_token(&spec.admin, base, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let listener_plans: Vec<&ListenerPlan> = listeners.iter().map(|(l, _)| l).collect();
    let warnings = super::tls::warnings(&spec, &listener_plans, now)
        .into_iter()
        .map(|(path, message)| super::ConfigError {
            path,
            line: None,
            message,
        })
        .collect();
    let state_file = spec
        .server
        .state_file
        .as_deref()
        .map(|file| resolve(base, file).into());
    Ok(Plan {
        metrics_enabled: spec.metrics.enabled,
        admin_token,
        admin_read_requires_token: spec.admin.read_requires_token,
        state_file,
        fleet,
        audit,
        access_log,
        admin_bind: admin_bind.expect("no errors means the admin bind parsed"),
        admin_hosts,
        shutdown_grace,
        listeners: listeners
            .into_iter()
            .map(|(mut listener, routes)| {
                // Each listener's gateway part was made above and is not shared yet.
                if let Some(gateway) = Arc::get_mut(&mut listener.gateway) {
                    gateway.routes = RouteTable::new(routes);
                }
                listener
            })
            .collect(),
        pools: pools.into_iter().map(|(_, pool)| pool).collect(),
        rate_limits,
        warnings,
        spec,
    })
}

fn compile_buckets(spec: &MetricsSpec, errors: &mut Errors) -> Buckets {
    let mut read = |bounds: &Option<Vec<f64>>, key: &str, default: &[f64]| -> Arc<[f64]> {
        match bounds {
            Some(bounds) => match check_buckets(bounds) {
                Ok(()) => Arc::from(bounds.as_slice()),
                Err(e) => {
                    errors.push((format!("metrics.{key}"), e));
                    Arc::from(default)
                }
            },
            None => Arc::from(default),
        }
    };
    Buckets {
        latency: read(
            &spec.latency_buckets,
            "latency_buckets",
            DEFAULT_LATENCY_BUCKETS,
        ),
        token: read(&spec.token_buckets, "token_buckets", DEFAULT_TOKEN_BUCKETS),
    }
}

const DEFAULT_ACCESS_LOG_QUEUE: usize = 8192;

fn compile_access_log(
    spec: Option<&AccessLogSpec>,
    base: &Path,
    errors: &mut Errors,
) -> Option<AccessLogSettings> {
    let spec = spec.filter(|s| s.enabled)?;
    let destination = match spec.path.as_deref() {
        None | Some("stdout") | Some("-") => Destination::Stdout,
        Some(path) => Destination::File(resolve(base, path).into()),
    };
    let fields = match &spec.fields {
        None => Field::ALL.to_vec(),
        Some(names) => names
            .iter()
            .enumerate()
            .filter_map(|(i, name)| {
                Field::parse(name)
                    .ok_or_else(|| {
                        let known: Vec<&str> = Field::ALL.iter().map(|f| f.name()).collect();
                        errors.push((
                            format!("access_log.fields[{i}]"),
                            format!("unknown field {name:?}; known: {}", known.join(", ")),
                        ))
                    })
                    .ok()
            })
            .collect(),
    };
    if spec.queue == Some(0) {
        errors.push(("access_log.queue".into(), "must be at least 1".into()));
    }
    Some(AccessLogSettings {
        destination,
        fields,
        queue: spec.queue.unwrap_or(DEFAULT_ACCESS_LOG_QUEUE),
    })
}

/// The admin token: from `token_file` (read now, so that a missing or empty file is a
/// config error), else from the environment variable `token_env` names.
fn admin_token(
    admin: &super::spec::AdminSpec,
    base: &Path,
    errors: &mut Vec<(String, String)>,
) -> Option<Arc<str>> {
    let Some(file) = &admin.token_file else {
        let token_env = admin.token_env.as_deref().unwrap_or(DEFAULT_TOKEN_ENV);
        return std::env::var(token_env)
            .ok()
            .filter(|t| !t.is_empty())
            .map(Arc::from);
    };
    if admin.token_env.is_some() {
        errors.push((
            "admin.token_file".into(),
            "set token_env or token_file, not both".into(),
        ));
        return None;
    }
    let path = resolve(base, file);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => Some(Arc::from(text.trim())),
        Ok(_) => {
            errors.push(("admin.token_file".into(), format!("{path} is empty")));
            None
        }
        Err(error) => {
            errors.push((
                "admin.token_file".into(),
                format!("cannot read {path}: {error}"),
            ));
            None
        }
    }
}

/// `[audit]`: the log file, its checkpoints, and the anchor key, read now.
fn compile_audit(
    spec: &super::spec::AuditSpec,
    base: &Path,
    errors: &mut Errors,
) -> Option<crate::security::audit::AuditSettings> {
    use crate::security::audit::{
        AuditSettings, DEFAULT_CHECKPOINT_INTERVAL, DEFAULT_CHECKPOINT_RECORDS, MIN_KEY_BYTES,
    };
    let Some(path) = spec.path.as_deref() else {
        let set = [
            ("checkpoint_interval", spec.checkpoint_interval.is_some()),
            ("checkpoint_records", spec.checkpoint_records.is_some()),
            ("key_env", spec.key_env.is_some()),
            ("key_file", spec.key_file.is_some()),
        ];
        for (key, _) in set.iter().filter(|(_, set)| *set) {
            errors.push((format!("audit.{key}"), "needs audit.path".into()));
        }
        return None;
    };
    let checkpoint_interval = duration_or(
        &spec.checkpoint_interval,
        DEFAULT_CHECKPOINT_INTERVAL,
        "audit.checkpoint_interval",
        errors,
    );
    let checkpoint_records = match spec.checkpoint_records {
        Some(0) => {
            errors.push((
                "audit.checkpoint_records".into(),
                "must be at least 1".into(),
            ));
            DEFAULT_CHECKPOINT_RECORDS
        }
        Some(n) => n,
        None => DEFAULT_CHECKPOINT_RECORDS,
    };
    let key = match (&spec.key_env, &spec.key_file) {
        (Some(_), Some(_)) => {
            errors.push((
                "audit.key_file".into(),
                "set audit.key_env or audit.key_file, not both".into(),
            ));
            None
        }
        (Some(name), None) => match std::env::var(name) {
            Ok(key) => Some(("audit.key_env", key.into_bytes())),
            Err(_) => {
                errors.push((
                    "audit.key_env".into(),
                    format!("the environment variable {name} is not set"),
                ));
                None
            }
        },
        (None, Some(file)) => match std::fs::read(resolve(base, file)) {
            Ok(mut key) => {
                // An editor's or `echo`'s final newline is not part of the key.
                while key.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    key.pop();
                }
                Some(("audit.key_file", key))
            }
            Err(e) => {
                errors.push(("audit.key_file".into(), format!("cannot read {file}: {e}")));
                None
            }
        },
        (None, None) => None,
    };
    let key = key.and_then(|(path, key)| {
        if key.len() < MIN_KEY_BYTES {
            errors.push((
                path.into(),
                format!(
                    "the key has {} bytes; at least {MIN_KEY_BYTES} are needed",
                    key.len()
                ),
            ));
            return None;
        }
        Some(Arc::from(key))
    });
    Some(AuditSettings {
        path: resolve(base, path).into(),
        checkpoint_interval,
        checkpoint_records,
        key,
    })
}

/// `[admin] hosts`: each a `name` or `name:port` as a `Host` header carries it.
fn compile_admin_hosts(hosts: &[String], errors: &mut Errors) -> Vec<Arc<str>> {
    let mut out = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        match crate::normalize::host::parse_host(host) {
            Some(_) => out.push(Arc::from(host.to_ascii_lowercase())),
            None => errors.push((
                format!("admin.hosts[{i}]"),
                format!(
                    "{host:?} is not a host name with an optional port, e.g. \"admin.internal\" or \"admin.internal:9901\" (no scheme, path or user)"
                ),
            )),
        }
    }
    out
}

fn compile_listeners(
    spec: &ConfigSpec,
    base: &Path,
    errors: &mut Errors,
) -> Vec<(ListenerPlan, Vec<Arc<Route>>)> {
    check_unique(
        spec.listeners.iter().map(|l| l.name.as_str()),
        "listeners",
        errors,
    );
    let mut binds = HashSet::new();
    let mut out = Vec::new();
    for (i, listener) in spec.listeners.iter().enumerate() {
        let path = format!("listeners[{i}]");
        let bind = parse_addr(&listener.bind, &format!("{path}.bind"), errors);
        // Port 0 asks the OS for a free port, so it never clashes.
        if let Some(bind) = bind.filter(|b| b.port() != 0) {
            if !binds.insert(bind) {
                errors.push((
                    format!("{path}.bind"),
                    format!("{bind} is already bound by another listener"),
                ));
            }
            if Some(bind) == spec.admin.bind.parse().ok() {
                errors.push((
                    format!("{path}.bind"),
                    format!("{bind} is the admin listener's address"),
                ));
            }
        }
        let (tls, acme) = listener
            .tls
            .as_ref()
            .and_then(|tls| {
                super::tls::compile_listener_tls(
                    &listener.name,
                    tls,
                    base,
                    &format!("{path}.tls"),
                    errors,
                )
            })
            .map_or((None, None), |(tls, acme)| (Some(Arc::new(tls)), acme));
        let trusted_proxies = parse_cidrs(
            &listener.trusted_proxies,
            &format!("{path}.trusted_proxies"),
            errors,
        );
        let model_body_limit = match &listener.model_body_limit {
            None => DEFAULT_MODEL_BODY_LIMIT,
            Some(SizeSpec::Bytes(bytes)) => *bytes,
            Some(SizeSpec::Text(text)) => parse_byte_size(text)
                .map_err(|e| errors.push((format!("{path}.model_body_limit"), e)))
                .unwrap_or(DEFAULT_MODEL_BODY_LIMIT),
        };
        if let Some(bind) = bind {
            let max_connections_per_client = match listener.max_connections_per_client {
                Some(0) => {
                    errors.push((
                        format!("{path}.max_connections_per_client"),
                        "must be at least 1".into(),
                    ));
                    None
                }
                other => other,
            };
            let identity_header = super::tls::identity_header(listener.tls.as_ref(), &path, errors);
            let gateway = GatewayListener {
                name: listener.name.as_str().into(),
                identity_header,
                trusted_proxies,
                model_body_limit,
                header_read_timeout: duration_or(
                    &listener.header_read_timeout,
                    Duration::from_secs(30),
                    &format!("{path}.header_read_timeout"),
                    errors,
                ),
                body_timeouts: BodyTimeouts {
                    idle: duration_or(
                        &listener.body_read_timeout,
                        BodyTimeouts::default().idle,
                        &format!("{path}.body_read_timeout"),
                        errors,
                    ),
                    total: duration_or(
                        &listener.body_total_timeout,
                        BodyTimeouts::default().total,
                        &format!("{path}.body_total_timeout"),
                        errors,
                    ),
                },
                max_request_head_bytes: listener.max_request_head_bytes.as_ref().and_then(|size| {
                    let bytes = match size {
                        SizeSpec::Bytes(bytes) => Ok(*bytes),
                        SizeSpec::Text(text) => parse_byte_size(text),
                    };
                    match bytes {
                        Ok(bytes) if bytes >= 8192 => Some(bytes as usize),
                        Ok(_) => {
                            errors.push((
                                format!("{path}.max_request_head_bytes"),
                                "must be at least 8KiB".into(),
                            ));
                            None
                        }
                        Err(e) => {
                            errors.push((format!("{path}.max_request_head_bytes"), e));
                            None
                        }
                    }
                }),
                fast_path: listener.fast_path.unwrap_or(true),
                routes: RouteTable::default(),
            };
            let plan = ListenerPlan {
                bind,
                tls,
                acme,
                max_connections_per_client,
                gateway: Arc::new(gateway),
                egress: None,
            };
            out.push((plan, Vec::new()));
        }
    }
    out
}

/// `[fleet]`: a Redis URL the client accepts, a lease of at least a second.
fn compile_fleet(
    spec: &super::spec::FleetSpec,
    errors: &mut Errors,
) -> Option<crate::canary::FleetSettings> {
    let backend = spec.backend.as_deref()?;
    let mut ok = true;
    if !(backend.starts_with("redis://") || backend.starts_with("rediss://")) {
        errors.push((
            "fleet.backend".into(),
            format!("{backend:?}: a redis:// or rediss:// URL is needed"),
        ));
        ok = false;
    } else if let Err(error) = redis::Client::open(backend) {
        errors.push((
            "fleet.backend".into(),
            format!("{backend:?} is not a Redis URL: {error}"),
        ));
        ok = false;
    }
    let lease = match spec.lease.as_deref().map(parse_duration) {
        None => crate::canary::DEFAULT_FLEET_LEASE,
        Some(Ok(lease)) if lease >= std::time::Duration::from_secs(1) => lease,
        Some(Ok(_)) => {
            errors.push(("fleet.lease".into(), "at least \"1s\"".into()));
            ok = false;
            crate::canary::DEFAULT_FLEET_LEASE
        }
        Some(Err(error)) => {
            errors.push(("fleet.lease".into(), error));
            ok = false;
            crate::canary::DEFAULT_FLEET_LEASE
        }
    };
    let prefix = spec.key_prefix.clone().unwrap_or_else(|| "junction".into());
    if prefix.is_empty() || prefix.contains(char::is_whitespace) {
        errors.push((
            "fleet.key_prefix".into(),
            "a non-empty name without spaces".into(),
        ));
        ok = false;
    }
    ok.then(|| crate::canary::FleetSettings {
        backend: backend.to_string(),
        lease,
        prefix,
    })
}
