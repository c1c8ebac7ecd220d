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

pub async fn run() -> anyhow::Result<()> {
    let gateway = Gateway::from_str(
        DEMO_CONFIG,
        Path::new("."),
        Arc::new(SplitMix::from_clock()),
    )
    .map_err(|errors| anyhow::anyhow!("the built-in demo config is invalid:\n{errors}"))?;
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
    println!("{}", instructions(&addr.to_string(), &admin.to_string()));
    crate::server::run_until_signalled(gateway).await?;
    drop(servers);
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
