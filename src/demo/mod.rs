//! `junction demo`: mock OpenAI-compatible model servers (stable `v1`, candidate `v2`)
//! started on the endpoints of the embedded `examples/demo.toml`, and the gateway in
//! front of them, so the whole path can be tried with curl or the `openai` SDK.

pub mod mock;

use std::path::Path;
use std::sync::Arc;

use crate::balance::SplitMix;
use crate::server::Gateway;

/// The demo's config, the same file as `examples/demo.toml`.
pub const DEMO_CONFIG: &str = include_str!("../../examples/demo.toml");

/// The mock servers and the gateway of a running demo.
pub struct Demo {
    pub gateway: Arc<Gateway>,
    pub servers: Vec<mock::MockModelServer>,
    /// What to paste: curl and Python `openai` commands for this demo's addresses.
    pub instructions: String,
}

/// Starts a mock model server on every endpoint of `config` (versions from the pools)
/// and the gateway in front of them.
pub async fn start(config: &str) -> anyhow::Result<Demo> {
    let gateway = Gateway::from_str(config, Path::new("."), Arc::new(SplitMix::from_clock()))
        .map_err(|errors| anyhow::anyhow!("the demo config is invalid:\n{errors}"))?;
    let plan = gateway.plan();
    let mut servers = Vec::new();
    for pool in &plan.pools {
        let version = pool.version.as_deref().unwrap_or("v1").to_string();
        for endpoint in &pool.endpoints {
            let addr = format!("{}:{}", endpoint.target.host, endpoint.target.port)
                .parse()
                .map_err(|_| {
                    anyhow::anyhow!("demo endpoint {} is not an IP address", endpoint.url)
                })?;
            let server = mock::MockModelServer::start(addr, mock::MockOptions::new(&version))
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
    let instructions = instructions(&addr.to_string(), &admin.to_string());
    Ok(Demo {
        gateway,
        servers,
        instructions,
    })
}

/// `junction demo`: the embedded config (or `config`), until Ctrl-C.
pub async fn run(config: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    // Caught before anything listens: a Ctrl-C right after start must drain, not kill.
    let signals = crate::server::Signals::install()?;
    let text = match &config {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?,
        None => DEMO_CONFIG.to_string(),
    };
    let demo = start(&text).await?;
    println!("{}", demo.instructions);
    signals.run(demo.gateway.clone()).await;
    drop(demo);
    Ok(())
}

fn instructions(gateway: &str, admin: &str) -> String {
    format!(
        r#"
Junction demo is running: gateway on http://{gateway}, admin on http://{admin}
Mock model servers: "demo-llama" answers from the stable pool (v1);
model "demo-llama-v2" is routed to the candidate pool (v2).

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
