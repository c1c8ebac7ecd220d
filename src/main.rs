//! The `junction` command: run a config, check one, or start the built-in demo.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use junction::balance::SplitMix;
use junction::inspect::Filter;
use junction::inspect::export::{ExportFormat, ExportOptions};
use junction::server::Gateway;

#[derive(Parser)]
#[command(
    name = "junction",
    version,
    about = "One fast, memory-safe proxy for the whole AI stack"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `junction mock` as a simulated inference server (all but `--slots` need it).
#[derive(clap::Args)]
struct InferenceArgs {
    /// Simulate an inference server with this many slots (requests generated at once;
    /// more wait in a queue), publishing vLLM's gauges on /metrics.
    #[arg(long)]
    slots: Option<usize>,
    /// Relative speed: 0.5 takes twice as long for prefill and every token.
    #[arg(long, default_value_t = 1.0, requires = "slots")]
    speed: f64,
    /// Prefill time per 1000 prompt tokens (words) at speed 1, in milliseconds.
    #[arg(long, default_value_t = 100, requires = "slots")]
    prefill_ms_per_1k: u64,
    /// KV-cache size in tokens (default 4096 a slot).
    #[arg(long, requires = "slots")]
    kv_tokens: Option<u64>,
    /// Requests also wait until their prompt and max_tokens fit in the KV cache.
    #[arg(long, requires = "slots")]
    kv_pressure: bool,
    /// Prompt prefixes (system prompt and first message) the prefix cache remembers; a
    /// hit skips the prefix's prefill. 0: no prefix cache.
    #[arg(long, default_value_t = 0, requires = "slots")]
    prefix_cache: usize,
    /// Output tokens of a request without max_tokens.
    #[arg(long, default_value_t = 32, requires = "slots")]
    output_tokens: u64,
    /// Send the ORCA `endpoint-load-metrics` header (TEXT) with every answer.
    #[arg(long, requires = "slots")]
    orca: bool,
}

impl InferenceArgs {
    fn options(&self) -> Option<junction::demo::mock::InferenceOptions> {
        let mut options = junction::demo::mock::InferenceOptions::new(self.slots?);
        options.speed = self.speed;
        options.prefill_per_1k_tokens = std::time::Duration::from_millis(self.prefill_ms_per_1k);
        if let Some(kv_tokens) = self.kv_tokens {
            options.kv_tokens = kv_tokens.max(1);
        }
        options.kv_pressure = self.kv_pressure;
        options.prefix_cache = self.prefix_cache;
        options.output_tokens = self.output_tokens;
        options.orca = self.orca;
        Some(options)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway from a config file.
    Run {
        #[arg(long, short, default_value = "junction.toml")]
        config: PathBuf,
        /// Worker threads (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
        /// Listen on this Unix socket for a new process (a binary upgrade) to take the
        /// listening sockets over; SIGUSR2 starts one.
        #[arg(long, value_name = "PATH")]
        upgrade_socket: Option<PathBuf>,
        /// Take the listening sockets, weights and canary phases over from the process
        /// listening on this upgrade socket; it drains and exits once this one serves.
        #[arg(long, value_name = "PATH")]
        upgrade_from: Option<PathBuf>,
    },
    /// Validate a config file: exit 0, or print every error with its key path and line and exit 1.
    Check {
        #[arg(long, short, default_value = "junction.toml")]
        config: PathBuf,
    },
    /// Start two mock OpenAI-compatible model servers and the gateway in front of them,
    /// the second as a canary that promotes itself (or rolls back with --fail-canary).
    Demo {
        /// Another config to run the demo with (mock servers start on its endpoints).
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long)]
        threads: Option<usize>,
        /// Make the canary candidate's mock servers fail 20% of completions, so the
        /// canary analysis rolls it back instead of promoting it.
        #[arg(long, alias = "inject-errors")]
        fail_canary: bool,
        /// Chat completions per second the demo sends itself to feed the canary; 0: none.
        #[arg(long, default_value_t = 20)]
        traffic: u32,
    },
    /// Run one mock OpenAI-compatible model server (for trials and fault-injection tests).
    Mock {
        #[arg(long, default_value = "127.0.0.1:9101")]
        bind: std::net::SocketAddr,
        /// Model version it reports (`x-mock-version`, reply text).
        #[arg(long, default_value = "v1")]
        version: String,
        /// Pause between streamed tokens, in milliseconds.
        #[arg(long, default_value_t = 40)]
        token_interval_ms: u64,
        /// Share (percent) of chat completions answered with a 500.
        #[arg(long, default_value_t = 0)]
        failure_percent: u64,
        #[command(flatten)]
        inference: InferenceArgs,
    },
    /// Audit log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The CA of egress TLS interception.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// API key tools.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Mask request bodies offline with the proxy's own masking: JSON bodies (or text
    /// with --text) from stdin, one per line; the masked form to stdout, one line for
    /// each line (an empty line where a body was refused). Exit 1 if any was refused.
    Mask {
        /// Take the masking of a route of this config (default: every built-in type
        /// redacted).
        #[arg(long, short, requires = "route")]
        config: Option<PathBuf>,
        /// The route whose `mask` table applies.
        #[arg(long, requires = "config")]
        route: Option<String>,
        /// Each line is text, not a JSON body.
        #[arg(long)]
        text: bool,
        /// The API the bodies were sent to, which says which fields are contents.
        #[arg(long, default_value = "/v1/chat/completions")]
        path: String,
        /// Write each line's findings here as JSON lines: type, JSON pointer and byte
        /// offsets in the decoded string; never a value.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Export the flows of a capture directory (its `flows-NNNNNNNN.jsonl` files), oldest
    /// first: as HAR 1.2, or as the stored JSON lines.
    Flows {
        /// The capture directory.
        dir: PathBuf,
        /// Only the flows this expression matches (docs/inspection.md has the grammar).
        #[arg(long, value_name = "EXPR")]
        filter: Option<Filter>,
        /// `har` or `jsonl`.
        #[arg(long, value_name = "FORMAT", default_value = "jsonl")]
        export: ExportFormat,
        /// Only the newest N of the flows that match (default: all).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Write to this file instead of stdout.
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Send captured flows again, to a URL or to a pool's endpoints, and compare each
    /// reply with the original: status, latency, TTFT, output tokens, answer length.
    Replay(junction::replay::ReplayArgs),
    /// Ask a running Junction's admin API whether it is ready (or alive): exit 0 on a
    /// 200, else 1. The container health check (images without curl).
    Probe {
        /// The admin API's address.
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: std::net::SocketAddr,
        /// `/readyz` (ready for traffic, 503 while draining) or `/healthz` (alive).
        #[arg(long, default_value = "/readyz")]
        path: String,
    },
    /// Print the version.
    Version,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain of an audit log and its end against `<FILE>.anchor`: exit 0,
    /// or say what is wrong (the first broken line, a cut-off tail, a bad anchor) and exit 1.
    Verify {
        /// The audit log (or give it with --file).
        #[arg(
            required_unless_present = "file_option",
            conflicts_with = "file_option"
        )]
        file: Option<PathBuf>,
        #[arg(long = "file", value_name = "PATH")]
        file_option: Option<PathBuf>,
        /// Environment variable holding the anchor's HMAC key ([audit] key_env).
        #[arg(long, value_name = "NAME", conflicts_with = "key_file")]
        key_env: Option<String>,
        /// File holding the anchor's HMAC key ([audit] key_file).
        #[arg(long, value_name = "PATH")]
        key_file: Option<PathBuf>,
        /// Check the chain alone: for logs written before anchors existed.
        #[arg(long)]
        no_anchor: bool,
    },
}

#[derive(Subcommand)]
enum CaCommand {
    /// Write a new CA (ECDSA P-256, CA:true, keyCertSign) for `intercept.ca`: the
    /// certificate for clients to trust, and its key (mode 0600).
    Init {
        #[arg(long, value_name = "FILE")]
        cert: PathBuf,
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The CA's common name, as clients' trust stores show it.
        #[arg(long, default_value = "Junction interception CA")]
        name: String,
        /// Replace files that exist.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Print the SHA-256 of an API key, the form the config stores it in.
    Hash { key: String },
}

/// mimalloc rather than glibc's malloc: per-thread free lists without glibc's bin
/// sorting and consolidation, which cost hundreds of instructions per request on the
/// hyper paths (docs/benchmarks.md, "mimalloc, and the forward path back under its
/// count before #12").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("junction {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Check { config } => check(&config),
        Command::Probe { admin, path } => probe(admin, &path),
        Command::Flows {
            dir,
            filter,
            export,
            limit,
            out,
        } => {
            let options = ExportOptions {
                format: export,
                filter,
                limit,
            };
            match junction::inspect::export::export_dir(&dir, &options, out.as_deref()) {
                Ok(count) => {
                    if let Some(out) = out {
                        eprintln!("junction flows: {count} flows written to {}", out.display());
                    }
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("junction flows: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Replay(args) => junction::replay::command(args),
        Command::Mask {
            config,
            route,
            text,
            path,
            report,
        } => mask(config.zip(route), text, &path, report.as_deref()),
        Command::Audit {
            command:
                AuditCommand::Verify {
                    file,
                    file_option,
                    key_env,
                    key_file,
                    no_anchor,
                },
        } => {
            let file = file.or(file_option).unwrap_or_default();
            verify_audit(&file, key_env, key_file, no_anchor)
        }
        Command::Ca {
            command:
                CaCommand::Init {
                    cert,
                    key,
                    name,
                    force,
                },
        } => match ca_init(&cert, &key, &name, force) {
            Ok(()) => {
                println!(
                    "wrote the CA certificate to {} and its key to {}; clients trust the certificate",
                    cert.display(),
                    key.display()
                );
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("junction ca init: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Key {
            command: KeyCommand::Hash { key },
        } => {
            println!("{}", junction::security::hash_key(&key));
            ExitCode::SUCCESS
        }
        Command::Run {
            config,
            threads,
            upgrade_socket,
            upgrade_from,
        } => {
            init_logging();
            with_runtime(threads, run(config, upgrade_socket, upgrade_from))
        }
        Command::Mock {
            bind,
            version,
            token_interval_ms,
            failure_percent,
            inference,
        } => {
            init_logging();
            if inference.speed.is_nan() || inference.speed <= 0.0 {
                eprintln!("junction mock: --speed must be greater than 0");
                return ExitCode::FAILURE;
            }
            let simulated = inference.options();
            with_runtime(Some(1), async move {
                let mut options = junction::demo::mock::MockOptions::new(&version);
                if let Some(simulated) = simulated {
                    options = options.simulate(simulated);
                }
                options.token_interval = std::time::Duration::from_millis(token_interval_ms);
                options.failure_percent.store(
                    failure_percent.min(100),
                    std::sync::atomic::Ordering::Relaxed,
                );
                let server = junction::demo::mock::MockModelServer::start(bind, options).await?;
                tracing::info!(addr = %server.addr, %version, "mock model server listening");
                tokio::signal::ctrl_c().await?;
                Ok(())
            })
        }
        Command::Demo {
            threads,
            config,
            fail_canary,
            traffic,
        } => {
            init_logging();
            let options = junction::demo::DemoOptions {
                traffic_per_second: traffic,
                candidate_failure_percent: if fail_canary {
                    junction::demo::FAIL_CANARY_PERCENT
                } else {
                    0
                },
            };
            with_runtime(threads, junction::demo::run(config, options))
        }
    }
}

/// `junction run`: serve the config, from sockets of its own or handed over by the
/// process it replaces.
async fn run(
    config: PathBuf,
    upgrade_socket: Option<PathBuf>,
    upgrade_from: Option<PathBuf>,
) -> anyhow::Result<()> {
    use junction::server::{Signals, notify, upgrade};
    let received = match &upgrade_from {
        Some(path) => Some(upgrade::receive(path).await?),
        None => None,
    };
    let (sockets, state) = match received.as_ref() {
        Some(r) => (Some(r.sockets.len()), Some(r.state.clone())),
        None => (None, None),
    };
    let gateway =
        Gateway::from_file_handed(config.clone(), Arc::new(SplitMix::from_clock()), state)
            .map_err(|errors| anyhow::anyhow!("{}: invalid config:\n{errors}", config.display()))?;
    let received = received.map(|mut r| {
        gateway.inherit(std::mem::take(&mut r.sockets));
        gateway.restore_verdicts(&r.endpoints);
        r
    });
    let signals = Signals::install()?;
    gateway.start().await?;
    // Listening before `ready`: the next upgrade can find this process as soon as the
    // previous one lets go.
    let upgrades = upgrade_socket
        .map(|path| upgrade::UpgradeSocket::listen(&path))
        .transpose()
        .map_err(|e| anyhow::anyhow!("upgrade socket: {e}"))?;
    if let Some(received) = received {
        received.ready().await;
        tracing::info!(
            sockets = sockets.unwrap_or(0),
            "upgrade: took over from the previous process"
        );
    }
    notify::ready();
    signals.run(gateway, upgrades).await;
    Ok(())
}

fn verify_audit(
    file: &std::path::Path,
    key_env: Option<String>,
    key_file: Option<PathBuf>,
    no_anchor: bool,
) -> ExitCode {
    use junction::security::audit::{Verdict, VerifyOptions, verify};
    let key = match (key_env, key_file) {
        (Some(name), _) => match std::env::var(&name) {
            Ok(key) => Some(key.into_bytes()),
            Err(_) => {
                eprintln!("junction: the environment variable {name} is not set");
                return ExitCode::FAILURE;
            }
        },
        (None, Some(path)) => match std::fs::read(&path) {
            Ok(mut key) => {
                while key.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    key.pop();
                }
                Some(key)
            }
            Err(error) => {
                eprintln!("junction: cannot read {}: {error}", path.display());
                return ExitCode::FAILURE;
            }
        },
        (None, None) => None,
    };
    match verify(file, &VerifyOptions { key, no_anchor }) {
        Ok(Verdict::Intact {
            lines,
            anchor,
            signature_checked,
        }) => {
            let end = match anchor {
                None => "end not checked (--no-anchor)".to_string(),
                Some(anchor) => {
                    let signature = match (&anchor.mac, signature_checked) {
                        (_, true) => "signature checked",
                        (Some(_), false) => "signed, signature not checked (no key given)",
                        (None, false) => "unsigned",
                    };
                    let tail = lines - anchor.lines;
                    format!(
                        "end anchored at line {} on {}, {signature}; {tail} lines written after the last checkpoint",
                        anchor.lines, anchor.time
                    )
                }
            };
            println!("{}: intact ({lines} lines); {end}", file.display());
            // An intact chain can still carry Junction's own word that the log it found
            // at a start did not verify (cut, edited, or without an anchor).
            let noted = noted_problems(file);
            for (line, problem) in &noted {
                eprintln!(
                    "{}: line {line}: at open, Junction found: {problem}",
                    file.display()
                );
            }
            if noted.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Ok(Verdict::Broken { line, reason }) => {
            eprintln!("{}: broken at line {line}: {reason}", file.display());
            ExitCode::FAILURE
        }
        Ok(Verdict::BadAnchor { reason }) => {
            eprintln!("{}: bad anchor: {reason}", file.display());
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("{}: {error}", file.display());
            ExitCode::FAILURE
        }
    }
}

/// The `audit_check` lines of an audit log: (line number, problem).
fn noted_problems(file: &std::path::Path) -> Vec<(usize, String)> {
    let text = std::fs::read(file).unwrap_or_default();
    String::from_utf8_lossy(&text)
        .lines()
        .enumerate()
        .filter_map(|(index, line)| {
            let event: serde_json::Value = serde_json::from_str(line).ok()?;
            (event["kind"] == "audit_check").then(|| {
                let problem = event["problem"].as_str().unwrap_or("a problem").to_string();
                (index + 1, problem)
            })
        })
        .collect()
}

/// `junction probe`: one GET to the admin API, 2 s at most.
fn probe(admin: std::net::SocketAddr, path: &str) -> ExitCode {
    use std::io::{Read, Write};
    if !path.starts_with('/') || path.contains(|c: char| c.is_whitespace() || c.is_control()) {
        eprintln!("junction probe: --path must be a path such as /readyz, not {path:?}");
        return ExitCode::FAILURE;
    }
    let timeout = std::time::Duration::from_secs(2);
    let asked = std::net::TcpStream::connect_timeout(&admin, timeout).and_then(|mut stream| {
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n"
        )?;
        let mut head = [0u8; 32];
        let mut read = 0;
        while read < 12 {
            match stream.read(&mut head[read..])? {
                0 => break,
                n => read += n,
            }
        }
        Ok(String::from_utf8_lossy(&head[..read]).into_owned())
    });
    match asked {
        Ok(head) if head.starts_with("HTTP/1.1 200") => ExitCode::SUCCESS,
        Ok(head) => {
            eprintln!(
                "junction probe: {admin}{path}: {}",
                head.lines().next().unwrap_or("no answer")
            );
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("junction probe: {admin}{path}: {error}");
            ExitCode::FAILURE
        }
    }
}

fn check(config: &std::path::Path) -> ExitCode {
    let checked =
        junction::config::checking(|context| junction::config::load_file(config, context));
    match checked {
        Ok(plan) => {
            if plan.admin_exposed_without_token() {
                eprintln!(
                    "{}: warning: admin.bind {}: {}",
                    config.display(),
                    plan.admin_bind,
                    junction::config::ADMIN_EXPOSED
                );
            }
            for warning in &plan.warnings {
                eprintln!("{}: warning: {warning}", config.display());
            }
            let routes: usize = plan.listeners.iter().map(|l| l.routes.routes.len()).sum();
            println!(
                "{}: ok ({} listeners, {} pools, {routes} routes)",
                config.display(),
                plan.listeners.len(),
                plan.pools.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for error in &errors.0 {
                eprintln!("{}: {error}", config.display());
            }
            ExitCode::FAILURE
        }
    }
}

/// `junction mask`: the proxy's masking over stdin, line by line.
fn mask(
    route: Option<(PathBuf, String)>,
    text: bool,
    path: &str,
    report: Option<&std::path::Path>,
) -> ExitCode {
    use junction::masking::{self, Findings, Vault};
    use std::io::{BufRead, Write};
    let policy = match route {
        None => Arc::new(masking::Policy::default()),
        Some((config, name)) => match route_masking(&config, &name) {
            Ok(policy) => policy,
            Err(message) => {
                eprintln!("junction mask: {message}");
                return ExitCode::FAILURE;
            }
        },
    };
    let shape = if text {
        masking::BodyShape::Text
    } else {
        masking::request_shape(path.as_bytes(), Some(b"application/json"))
    };
    let mut report = match report.map(std::fs::File::create).transpose() {
        Ok(file) => file.map(std::io::BufWriter::new),
        Err(error) => {
            eprintln!("junction mask: cannot write the report: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdin = std::io::stdin().lock();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let (mut lines, mut refused) = (0usize, 0usize);
    let mut located = Vec::new();
    // One line buffer for the whole input: a dataset is millions of lines.
    let mut line = Vec::new();
    for number in 0usize.. {
        line.clear();
        match stdin.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) => {
                eprintln!("junction mask: reading stdin: {error}");
                return ExitCode::FAILURE;
            }
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        lines += 1;
        located.clear();
        let (mut vault, mut findings) = (Vault::default(), Findings::default());
        // Where each value was found costs a JSON pointer per string: only for a report.
        let masked = if report.is_some() {
            masking::mask_request_body_located(
                &*policy.masker,
                shape,
                &line,
                &mut vault,
                &mut findings,
                &mut located,
            )
        } else {
            masking::mask_request_body(&*policy.masker, shape, &line, &mut vault, &mut findings)
        };
        let written = match &masked {
            Ok(body) => out.write_all(body),
            Err(_) => Ok(()),
        };
        if let Err(error) = written.and_then(|()| out.write_all(b"\n")) {
            eprintln!("junction mask: writing stdout: {error}");
            return ExitCode::FAILURE;
        }
        if masked.is_err() {
            refused += 1;
        }
        if let Some(report) = report.as_mut() {
            let entry = match &masked {
                Ok(_) => serde_json::json!({
                    "line": number + 1,
                    // A member name may itself be a value (`/metadata/ann@example.org`):
                    // the report holds none.
                    "findings": located.iter().map(|l| serde_json::json!({
                        "type": l.kind.name(),
                        "pointer": masking::redacted_for_log(&*policy.masker, &l.pointer),
                        "start": l.start, "end": l.end,
                    })).collect::<Vec<_>>(),
                }),
                Err(error) => serde_json::json!({ "line": number + 1, "error": error.to_string() }),
            };
            if let Err(error) = writeln!(report, "{entry}") {
                eprintln!("junction mask: writing the report: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    let flushed = out
        .flush()
        .and_then(|()| report.map_or(Ok(()), |mut r| r.flush()));
    if let Err(error) = flushed {
        eprintln!("junction mask: {error}");
        return ExitCode::FAILURE;
    }
    if refused > 0 {
        eprintln!("junction mask: {refused} of {lines} lines refused (empty lines in the output)");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// The masking of route `name` in the config at `config`, validated as `junction check`
/// validates it.
fn route_masking(
    config: &std::path::Path,
    name: &str,
) -> Result<Arc<junction::masking::Policy>, String> {
    let plan = junction::config::checking(|context| junction::config::load_file(config, context))
        .map_err(|errors| format!("{}: invalid config:\n{errors}", config.display()))?;
    let route = plan
        .listeners
        .iter()
        .flat_map(|listener| listener.routes.routes.iter())
        .find(|route| &*route.name == name)
        .ok_or_else(|| format!("{}: no route is named {name:?}", config.display()))?;
    route
        .mask
        .clone()
        .ok_or_else(|| format!("{}: route {name:?} has no mask table", config.display()))
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

fn with_runtime(
    threads: Option<usize>,
    main: impl std::future::Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    let runtime = match threads {
        // One thread: a current-thread runtime skips the work-stealing machinery.
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n.max(1))
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("junction: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("junction: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `junction ca init`: both files, or neither (an existing file is kept unless `force`).
fn ca_init(cert: &Path, key: &Path, name: &str, force: bool) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    if !force {
        for path in [cert, key] {
            if path.exists() {
                return Err(format!(
                    "{} exists; pass --force to replace it",
                    path.display()
                ));
            }
        }
    }
    let ca = junction::tls::authority::generate_authority(name)?;
    let write = |path: &Path, text: &str, mode: u32| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).mode(mode);
        if force {
            options.create(true).truncate(true);
        } else {
            options.create_new(true);
        }
        let mut file = options
            .open(path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        if force {
            // An existing file keeps its mode on open; the key must not stay readable.
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(mode))
                .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
        }
        file.write_all(text.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    write(key, &ca.key_pem, 0o600)?;
    write(cert, &ca.cert_pem, 0o644)
}
