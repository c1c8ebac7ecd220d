//! The one way Junction connects to Redis (shared rate limits, egress fleet state, the
//! canary's fleet sync): a multiplexed connection that reconnects by itself, with
//! bounded connect and answer times, so a dead Redis costs a caller at most `timeout`.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// A connection manager for `client` whose connects and answers wait at most `timeout`,
/// trying a lost connection again `retries` times, at most a second apart.
pub async fn open(
    client: &redis::Client,
    timeout: Duration,
    retries: usize,
) -> redis::RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(retries)
        .set_max_delay(Duration::from_secs(1));
    client.get_connection_manager_with_config(config).await
}
