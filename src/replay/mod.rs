//! `junction replay`: sends captured flows again, to a URL or to the endpoints of a
//! config's pool (a candidate model before its canary, say), and compares each reply
//! with the original: status, latency, time to first token, output tokens, answer length.

mod destination;
mod report;
mod request;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use destination::Destination;
use report::{Row, Summary};
use request::{GivenHeader, rebuild};

use crate::inspect::{Filter, Flow};

/// The command line of `junction replay`.
#[derive(Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("destination").required(true).args(["to", "pool"])
))]
pub struct ReplayArgs {
    /// The capture directory (its `flows-*.jsonl` segments).
    pub dir: PathBuf,
    /// Send to this base URL: `http://host:port`, `https://...`, with a path prefix
    /// if need be.
    #[arg(long, value_name = "URL")]
    pub to: Option<String>,
    /// Send to the endpoints of this pool of --config, round robin, with the pool's
    /// credential (in place of the client's) and model_map, as the proxy sends them.
    #[arg(long, value_name = "NAME", requires = "config")]
    pub pool: Option<String>,
    /// The config file that names the pool.
    #[arg(long, short, value_name = "FILE", requires = "pool")]
    pub config: Option<PathBuf>,
    /// Replay only the flows this filter expression matches (docs/inspection.md).
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
    /// Requests in flight at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub concurrency: usize,
    /// Replay the newest N flows (that the filter matches) only, oldest first.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// A header sent with every request, replacing the stored one: the capture never
    /// keeps credentials, so give them here ('Authorization: Bearer sk-...'). Repeatable.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Write one JSON line per flow here: original and replay side by side.
    #[arg(long, value_name = "FILE.jsonl")]
    pub out: Option<PathBuf>,
    /// How long one exchange may take, to the end of its reply.
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    pub timeout: String,
}

/// A replay set up: everything read and checked, nothing sent yet.
struct Replay {
    dir: PathBuf,
    flows: Vec<Flow>,
    /// Lines of the directory that are not flows this version reads.
    unreadable: usize,
    destination: Arc<Destination>,
    headers: Arc<[GivenHeader]>,
    concurrency: usize,
    timeout: Duration,
    out: Option<(PathBuf, BufWriter<File>)>,
}

/// Runs `junction replay`. Exit 0: every flow sent was answered (whatever its status;
/// skipped flows were not sent); 1: nothing was sent, the setup failed (the message says
/// why); 3: some requests got no whole answer (2 is clap's, for a command line it
/// refuses).
pub fn command(args: ReplayArgs) -> ExitCode {
    let replay = match Replay::set_up(args) {
        Ok(replay) => replay,
        Err(message) => {
            eprintln!("junction replay: {message}");
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("junction replay: cannot start the runtime: {error}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(replay.run())
}

impl Replay {
    fn set_up(args: ReplayArgs) -> Result<Replay, String> {
        let filter = args
            .filter
            .as_deref()
            .map(Filter::parse)
            .transpose()
            .map_err(|error| error.to_string())?;
        if args.concurrency == 0 {
            return Err("--concurrency must be 1 or more".into());
        }
        let timeout = crate::units::parse_duration(&args.timeout)
            .map_err(|error| format!("--timeout: {error}"))?;
        if timeout.is_zero() {
            return Err("--timeout must be more than 0".into());
        }
        let headers = args
            .headers
            .iter()
            .map(|text| GivenHeader::parse(text))
            .collect::<Result<Vec<_>, _>>()?;
        let destination = match (&args.to, &args.pool, &args.config) {
            (Some(url), _, _) => Destination::url(url)?,
            (None, Some(pool), Some(config)) => Destination::pool(config, pool)?,
            _ => return Err("give --to URL, or --pool NAME with --config FILE".into()),
        };
        let (flows, unreadable) = flows_to_replay(&args.dir, filter.as_ref(), args.limit)?;
        let out = match args.out {
            Some(path) => {
                let file = File::create(&path)
                    .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
                Some((path, BufWriter::new(file)))
            }
            None => None,
        };
        Ok(Replay {
            dir: args.dir,
            flows,
            unreadable,
            destination: Arc::new(destination),
            headers: headers.into(),
            concurrency: args.concurrency,
            timeout,
            out,
        })
    }

    async fn run(mut self) -> ExitCode {
        let count = self.flows.len();
        let mut pending = std::mem::take(&mut self.flows).into_iter().enumerate();
        let mut running = JoinSet::new();
        // Which flow each task replays, for a task that ends without its row.
        let mut tasks = HashMap::new();
        // Rows are written in the flows' order, whichever reply ends first.
        let mut finished = BTreeMap::new();
        let mut next_row = 0;
        let mut summary = Summary::default();
        loop {
            while running.len() < self.concurrency {
                let Some((index, flow)) = pending.next() else {
                    break;
                };
                let placeholder = Row {
                    error: Some("the replay task failed".into()),
                    ..Row::new(&flow)
                };
                let task = running.spawn(replay_flow(
                    flow,
                    self.destination.clone(),
                    self.headers.clone(),
                    self.timeout,
                ));
                tasks.insert(task.id(), (index, placeholder));
            }
            let Some(joined) = running.join_next_with_id().await else {
                break;
            };
            let (task, row) = match joined {
                Ok((task, row)) => (task, Some(row)),
                Err(error) => (error.id(), None),
            };
            let Some((index, placeholder)) = tasks.remove(&task) else {
                continue;
            };
            finished.insert(index, row.unwrap_or(placeholder));
            while let Some(row) = finished.remove(&next_row) {
                next_row += 1;
                summary.add(&row);
                if let Err(message) = self.write(&row) {
                    eprintln!("junction replay: {message}");
                    return ExitCode::from(1);
                }
            }
        }
        if let Some((path, out)) = self.out.as_mut()
            && let Err(error) = out.flush()
        {
            eprintln!("junction replay: cannot write {}: {error}", path.display());
            return ExitCode::from(1);
        }
        println!(
            "junction replay: {count} flows from {} to {}",
            self.dir.display(),
            self.destination.name
        );
        if self.unreadable > 0 {
            println!(
                "{} lines of the capture are not flows this version reads; left out",
                self.unreadable
            );
        }
        print!("{}", summary.render());
        if summary.all_answered() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(3)
        }
    }

    fn write(&mut self, row: &Row) -> Result<(), String> {
        let Some((path, out)) = self.out.as_mut() else {
            return Ok(());
        };
        serde_json::to_writer(&mut *out, row)
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n"))
            .map_err(|error| format!("cannot write {}: {error}", path.display()))
    }
}

/// Sends one flow again and measures the reply beside the original.
async fn replay_flow(
    flow: Flow,
    destination: Arc<Destination>,
    headers: Arc<[GivenHeader]>,
    timeout: Duration,
) -> Row {
    let mut row = Row::new(&flow);
    let mut request = match rebuild(&flow, &headers) {
        Ok(request) => request,
        Err(reason) => {
            row.skipped = Some(reason);
            return row;
        }
    };
    drop(flow);
    destination.prepare(&mut request);
    row.credentials_left_out = request.credentials_left_out.clone();
    let exchange = destination.send(request, timeout).await;
    row.endpoint = Some(exchange.endpoint);
    row.replay = exchange.measurement;
    row.error = exchange.error;
    row
}

/// The flows of `dir` that `filter` matches, oldest first; with `limit`, the newest
/// `limit` of them. Also how many lines were not flows.
fn flows_to_replay(
    dir: &Path,
    filter: Option<&Filter>,
    limit: Option<usize>,
) -> Result<(Vec<Flow>, usize), String> {
    let cannot_read = |error: std::io::Error| format!("{}: {error}", dir.display());
    if !std::fs::metadata(dir).map_err(cannot_read)?.is_dir() {
        return Err(format!("{}: not a directory", dir.display()));
    }
    let lines = crate::inspect::ring::read_flows(dir).map_err(cannot_read)?;
    if lines.is_empty() {
        return Err(format!(
            "{}: no captured flows (no flows-*.jsonl segment holds one)",
            dir.display()
        ));
    }
    let mut unreadable = 0;
    let mut flows: Vec<Flow> = lines
        .iter()
        .filter_map(|line| {
            let flow = Flow::from_line(line).ok();
            unreadable += usize::from(flow.is_none());
            flow
        })
        .filter(|flow| filter.is_none_or(|f| f.matches(flow)))
        .collect();
    if let Some(limit) = limit {
        flows.drain(..flows.len().saturating_sub(limit));
    }
    Ok((flows, unreadable))
}
