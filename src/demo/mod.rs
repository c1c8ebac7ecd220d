//! `junction demo`: mock OpenAI-compatible model servers (stable `v1`, candidate `v2`)
//! started on the endpoints of the embedded `examples/demo.toml`, and the gateway in
//! front of them running v2 as a canary, fed by the demo's own traffic, so the whole path
//! can be tried and watched with curl or the `openai` SDK.

mod inference;
pub mod mock;
pub mod traffic;

use std::path::Path;
use std::sync::Arc;

use crate::balance::SplitMix;
use crate::server::Gateway;

/// The demo's config, the same file as `examples/demo.toml`.
pub const DEMO_CONFIG: &str = include_str!("../../examples/demo.toml");

/// What the demo does besides serving: its own traffic and the candidate's errors.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Chat completions per second the demo sends itself (model `demo-llama`) when the
    /// config has a canary, so it has requests to judge; 0 sends none.
    pub traffic_per_second: u32,
    /// Share (percent) of completions the canary candidates' mock servers answer with a
    /// 500, so the analysis rolls them back (`--fail-canary`).
    pub candidate_failure_percent: u64,
}

/// `--fail-canary`: well above the demo's `max_error_rate` of 5%.
pub const FAIL_CANARY_PERCENT: u64 = 20;

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            traffic_per_second: 20,
            candidate_failure_percent: 0,
        }
    }
}

/// The mock servers and the gateway of a running demo.
pub struct Demo {
    pub gateway: Arc<Gateway>,
    pub servers: Vec<mock::MockModelServer>,
    /// What to paste: curl and Python `openai` commands for this demo's addresses.
    pub instructions: String,
    /// The demo's own requests, while it runs.
    pub traffic: Option<traffic::Traffic>,
}

/// Starts a mock model server on every endpoint of `config` (versions from the pools),
/// the gateway in front of them, and the demo's traffic.
pub async fn start(config: &str, options: &DemoOptions) -> anyhow::Result<Demo> {
    let gateway = Gateway::from_str(config, Path::new("."), Arc::new(SplitMix::from_clock()))
        .map_err(|errors| anyhow::anyhow!("the demo config is invalid:\n{errors}"))?;
    let plan = gateway.plan();
    let candidates: Vec<&str> = plan
        .spec
        .routes
        .iter()
        .filter_map(|route| route.canary.as_ref().map(|c| c.candidate.as_str()))
        .collect();
    let mut servers = Vec::new();
    for pool in &plan.pools {
        let version = pool.version.as_deref().unwrap_or("v1").to_string();
        let mock_options = mock::MockOptions::new(&version);
        if candidates.contains(&&*pool.name) {
            mock_options.failure_percent.store(
                options.candidate_failure_percent.min(100),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        for endpoint in &pool.endpoints {
            let addr = format!("{}:{}", endpoint.target.host, endpoint.target.port)
                .parse()
                .map_err(|_| {
                    anyhow::anyhow!("demo endpoint {} is not an IP address", endpoint.url)
                })?;
            let server = mock::MockModelServer::start(addr, mock_options.clone())
                .await
                .map_err(|e| {
                    anyhow::anyhow!("cannot start the mock model server {version} on {addr}: {e}")
                })?;
            tracing::info!(%addr, %version, "mock model server listening");
            servers.push(server);
        }
    }
    gateway.start().await?;
    let listener = plan
        .listeners
        .first()
        .map(|l| l.name.clone())
        .unwrap_or_else(|| "public".into());
    let addr = gateway
        .listener_addr(&listener)
        .ok_or_else(|| anyhow::anyhow!("the demo listener did not start"))?;
    let admin = gateway
        .admin_addr()
        .ok_or_else(|| anyhow::anyhow!("the admin listener did not start"))?;
    let canary = plan
        .spec
        .routes
        .iter()
        .find_map(|route| Some((route.name.as_str(), route.canary.as_ref()?)));
    let mut instructions = instructions(&addr.to_string(), &admin.to_string());
    let masking: Vec<String> = plan
        .spec
        .routes
        .iter()
        .filter(|route| {
            route.mask.as_ref().is_some_and(|mask| {
                mask.directions.unwrap_or_default() != crate::config::spec::DirectionsSpec::Response
            })
        })
        .map(|route| format!("{:?}", route.name))
        .collect();
    if !masking.is_empty() {
        instructions.push_str(&masking_instructions(
            &addr.to_string(),
            &admin.to_string(),
            &masking,
        ));
    }
    if let Some((route, canary)) = canary {
        instructions.push_str(&canary_instructions(
            &addr.to_string(),
            &admin.to_string(),
            route,
            canary,
            options,
        ));
    }
    // Only a canary needs the traffic; without one it would only fill the logs.
    let traffic = (options.traffic_per_second > 0 && canary.is_some())
        .then(|| traffic::start(addr, "demo-llama", options.traffic_per_second));
    Ok(Demo {
        gateway,
        servers,
        instructions,
        traffic,
    })
}

/// `junction demo`: the embedded config (or `config`), until Ctrl-C.
pub async fn run(config: Option<std::path::PathBuf>, options: DemoOptions) -> anyhow::Result<()> {
    // Caught before anything listens: a Ctrl-C right after start must drain, not kill.
    let signals = crate::server::Signals::install()?;
    let text = match &config {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?,
        None => DEMO_CONFIG.to_string(),
    };
    let demo = start(&text, &options).await?;
    println!("{}", demo.instructions);
    signals.run(demo.gateway.clone(), None).await;
    drop(demo);
    Ok(())
}

fn instructions(gateway: &str, admin: &str) -> String {
    format!(
        r#"
Junction demo is running: gateway on http://{gateway}, admin on http://{admin}
Mock model servers: "demo-llama" answers from the stable pool (v1), with the candidate
(v2) as a canary; model "demo-llama-v2" is routed to the candidate pool alone.

Chat completion (watch the x-junction-version header):
  curl -si http://{gateway}/v1/chat/completions -H 'content-type: application/json' \
    -d '{{"model": "demo-llama", "messages": [{{"role": "user", "content": "Hello!"}}]}}'

Streaming (SSE), from the candidate:
  curl -sN http://{gateway}/v1/chat/completions -H 'content-type: application/json' \
    -d '{{"model": "demo-llama-v2", "stream": true, "messages": [{{"role": "user", "content": "Stream please"}}]}}'

Python, with the openai SDK (pip install openai):
  python3 -c 'from openai import OpenAI; c = OpenAI(base_url="http://{gateway}/v1", api_key="demo"); print(c.chat.completions.create(model="demo-llama", messages=[{{"role": "user", "content": "Hi"}}]).choices[0].message.content)'

Admin: curl -s http://{admin}/api/pools    Stop: Ctrl-C
"#
    )
}

/// Shown when routes mask prompts (`routes`: their names, quoted): the mocks echo the
/// prompt they received, so the answer shows what left the gateway.
fn masking_instructions(gateway: &str, admin: &str, routes: &[String]) -> String {
    let routes = match routes {
        [one] => format!("route {one} masks"),
        many => format!("routes {} mask", many.join(", ")),
    };
    format!(
        r#"
Masking: {routes} personal data and credentials
in prompts before they leave (docs/masking.md). The mock model echoes the prompt it got:
  curl -s http://{gateway}/v1/chat/completions -H 'content-type: application/json' \
    -d '{{"model": "demo-llama", "messages": [{{"role": "user", "content": "I am jane.doe@example.com, card 4111 1111 1111 1111"}}]}}'
What was found, by type and action (never the values):
  curl -s http://{admin}/metrics | grep junction_masking_findings_total
"#
    )
}

fn canary_instructions(
    gateway: &str,
    admin: &str,
    route: &str,
    canary: &crate::config::spec::CanarySpec,
    options: &DemoOptions,
) -> String {
    let steps: Vec<String> = canary.steps.iter().map(|s| format!("{s}%")).collect();
    let interval = canary.interval.as_deref().unwrap_or("60s");
    let traffic = match options.traffic_per_second {
        0 => "The demo sends no traffic of its own (--traffic 0): run the loop below.".to_string(),
        n => format!(
            "The demo sends {n} requests a second itself (--traffic N to change, 0 for none)."
        ),
    };
    let fate = match options.candidate_failure_percent {
        0 => format!(
            "While it is as good as the stable pool, the canary analysis moves it through {} every {interval}, then marks it promoted.\nRun `junction demo --fail-canary` to see a rollback instead.",
            steps.join(", ")
        ),
        p => format!(
            "--fail-canary: the candidate answers {p}% of completions with a 500, so the canary analysis rolls it back to 0% after its first interval ({interval})."
        ),
    };
    format!(
        r#"
Canary: route "{route}" sends {first} of "demo-llama" to the candidate pool "{candidate}".
{fate}
{traffic}

Watch it (phase, weights, the last interval's figures, the transitions):
  curl -s http://{admin}/api/routes/{route}/canary
  curl -s http://{admin}/metrics | grep junction_canary
The version that answers each request:
  while sleep 0.2; do curl -si http://{gateway}/v1/chat/completions -H 'content-type: application/json' -d '{{"model": "demo-llama", "messages": [{{"role": "user", "content": "Hi"}}]}}' | grep -i '^x-junction-version'; done
"#,
        first = steps.first().map(String::as_str).unwrap_or("some"),
        candidate = canary.candidate,
    )
}
