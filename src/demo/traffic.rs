//! The demo's own trickle of chat completions, so its canary has requests to judge
//! without anyone typing a loop: plain HTTP/1.1 over TCP, one request per connection,
//! paced, at most a few in flight, answers read and dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Requests still running when the next one is due: more are skipped, not queued.
const IN_FLIGHT: usize = 32;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The running sender; stops when dropped.
pub struct Traffic(JoinHandle<()>);

impl Drop for Traffic {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sends `per_second` chat completions a second for model `model` to `gateway`.
pub fn start(gateway: SocketAddr, model: &str, per_second: u32) -> Traffic {
    let model = model.to_string();
    let every = Duration::from_secs(1) / per_second.max(1);
    Traffic(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        for n in 1u64.. {
            tick.tick().await;
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                continue;
            };
            let model = model.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(REQUEST_TIMEOUT, one(gateway, &model, n)).await;
                drop(slot);
            });
        }
    }))
}

async fn one(gateway: SocketAddr, model: &str, n: u64) -> std::io::Result<()> {
    let body = serde_json::json!({
        "model": model,
        "messages": [{ "role": "user", "content": format!("demo request {n}") }],
    })
    .to_string();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {gateway}\r\nUser-Agent: junction-demo-traffic\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(gateway).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    Ok(())
}
