//! Canary state shared by a fleet through Redis (`[fleet] backend`): every instance
//! pushes its routes' weights and phases when they change here and takes the others'
//! changes (polled every 200 ms); one instance at a time, holding a lease, runs the
//! analyses. When Redis fails, each instance keeps its last known state, with one
//! warning per outage and `junction_fleet_backend_errors_total`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::time::Instant;

use super::{Controls, RouteControl, SavedRoute};
use crate::telemetry::Telemetry;

/// `[fleet]` as the plan holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetSettings {
    pub backend: String,
    pub lease: Duration,
    pub prefix: String,
}

pub const DEFAULT_FLEET_LEASE: Duration = Duration::from_secs(10);
/// How often an instance pushes its changes, takes the others' and renews its lease.
const TICK: Duration = Duration::from_millis(200);
/// Longest wait for Redis in one tick.
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

/// KEYS[1] route hash; ARGV[1] state JSON. Bumps the version; returns it.
static PUSH: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'state', ARGV[1])
return version
",
    )
});

/// KEYS[1] lease; ARGV: instance, lease (ms). 1 when this instance holds it (taken or
/// renewed), 0 when another one does.
static LEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
elseif not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
",
    )
});

/// One instance's view of the fleet state, run by [`run_fleet`].
struct Sync {
    settings: FleetSettings,
    instance: String,
    client: redis::Client,
    connection: Option<ConnectionManager>,
    /// Per route: the state last pushed or taken, and its version in Redis.
    synced: HashMap<String, (SavedRoute, i64)>,
    /// Until when the lease this instance renewed last is surely its own.
    leader_until: Option<Instant>,
    in_outage: bool,
}

/// Keeps `controls` in step with the fleet's state in Redis until the task is aborted
/// (a reload that changes `[fleet]`, or shutdown).
pub async fn run_fleet(
    settings: FleetSettings,
    controls: Arc<Controls>,
    telemetry: Arc<Telemetry>,
    instance: String,
) {
    let client = match redis::Client::open(settings.backend.as_str()) {
        Ok(client) => client,
        // Validated at load; kept as a clear log line rather than a panic.
        Err(error) => {
            tracing::error!(%error, "fleet: not a Redis URL; the canary state stays local");
            return;
        }
    };
    tracing::info!(backend = %settings.backend, %instance, "fleet: sharing canary state");
    let mut sync = Sync {
        settings,
        instance,
        client,
        connection: None,
        synced: HashMap::new(),
        leader_until: None,
        in_outage: false,
    };
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let outcome = tokio::time::timeout(REDIS_TIMEOUT, sync.tick(&controls)).await;
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error.to_string()),
            Err(_) => Some(format!("no answer within {REDIS_TIMEOUT:?}")),
        };
        match failure {
            None if sync.in_outage => {
                sync.in_outage = false;
                tracing::warn!(backend = %sync.settings.backend, "fleet: Redis is back; canary state shared again");
            }
            None => {}
            Some(error) => {
                telemetry.metrics.count_fleet_error();
                if !sync.in_outage {
                    sync.in_outage = true;
                    tracing::warn!(backend = %sync.settings.backend, %error, "fleet: Redis failed; keeping the last known canary state until it is back");
                }
                // The connection may be broken mid-command: a new one next time.
                sync.connection = None;
            }
        }
        // A lease that could not be renewed ends by itself: stop analysing before
        // another instance may take it.
        let leader = sync
            .leader_until
            .is_some_and(|until| Instant::now() < until);
        if !leader && sync.leader_until.take().is_some() {
            tracing::warn!("fleet: canary analysis lease lost; another instance analyses");
        }
        telemetry.metrics.set_fleet_leader(leader);
        controls.set_analysing(leader);
    }
}

impl Sync {
    async fn connection(&mut self) -> redis::RedisResult<ConnectionManager> {
        if let Some(connection) = &self.connection {
            return Ok(connection.clone());
        }
        let connection = crate::redis_connection::open(&self.client, REDIS_TIMEOUT, 0).await?;
        self.connection = Some(connection.clone());
        Ok(connection)
    }

    fn route_key(&self, route: &str) -> String {
        format!("{}:route:{route}", self.settings.prefix)
    }

    /// Pushes what changed here, takes what changed elsewhere, renews or takes the lease.
    async fn tick(&mut self, controls: &Controls) -> redis::RedisResult<()> {
        let mut connection = self.connection().await?;
        let routes = controls.all();
        // Changed here since the last sync: the newest word on the route, pushed.
        let mut unchanged = Vec::new();
        for control in &routes {
            let local = saved(control);
            match self.synced.get(&*control.route) {
                Some((synced, _)) if *synced == local => unchanged.push(control.clone()),
                // A route not synced yet takes the fleet's state if there is one.
                None => unchanged.push(control.clone()),
                Some(_) => {
                    let state = serde_json::to_string(&local).map_err(std::io::Error::other)?;
                    let version: i64 = PUSH
                        .key(self.route_key(&control.route))
                        .arg(state)
                        .invoke_async(&mut connection)
                        .await?;
                    self.synced
                        .insert(control.route.to_string(), (local, version));
                }
            }
        }
        if !unchanged.is_empty() {
            let mut pipe = redis::pipe();
            for control in &unchanged {
                pipe.cmd("HMGET")
                    .arg(self.route_key(&control.route))
                    .arg("version")
                    .arg("state");
            }
            let stored: Vec<(Option<i64>, Option<String>)> =
                pipe.query_async(&mut connection).await?;
            for (control, (version, state)) in unchanged.iter().zip(stored) {
                self.take(controls, control, version, state, &mut connection)
                    .await?;
            }
        }
        // The key lives a tick less than the lease: the holder renews it every tick, and
        // when it dies the others, asking every tick, take it within the lease.
        let held_for = self.settings.lease.saturating_sub(TICK);
        let lease_ms = held_for.as_millis() as u64;
        let asked = Instant::now();
        let held: i64 = LEASE
            .key(format!("{}:canary:lease", self.settings.prefix))
            .arg(&self.instance)
            .arg(lease_ms)
            .invoke_async(&mut connection)
            .await?;
        if held == 1 {
            if self.leader_until.is_none() {
                tracing::info!(instance = %self.instance, "fleet: holding the canary analysis lease; this instance analyses");
            }
            self.leader_until = Some(asked + held_for);
        } else {
            self.leader_until = None;
        }
        Ok(())
    }

    /// Applies the fleet's state of a route unchanged here, if it is newer; a route Redis
    /// knows nothing of yet is pushed as it is here.
    async fn take(
        &mut self,
        controls: &Controls,
        control: &RouteControl,
        version: Option<i64>,
        state: Option<String>,
        connection: &mut ConnectionManager,
    ) -> redis::RedisResult<()> {
        let local = saved(control);
        let (Some(version), Some(state)) = (version, state) else {
            let state = serde_json::to_string(&local).map_err(std::io::Error::other)?;
            let version: i64 = PUSH
                .key(self.route_key(&control.route))
                .arg(state)
                .invoke_async(connection)
                .await?;
            self.synced
                .insert(control.route.to_string(), (local, version));
            return Ok(());
        };
        // Compared by content, not by version: a Redis that restarted empty counts its
        // versions from 1 again.
        let remote: SavedRoute = match serde_json::from_str(&state) {
            Ok(remote) => remote,
            Err(error) => {
                tracing::warn!(route = %control.route, %error, "fleet: unreadable route state in Redis; ignored");
                self.synced
                    .insert(control.route.to_string(), (local, version));
                return Ok(());
            }
        };
        let same_route = remote.pools == local.pools
            && remote.configured == local.configured
            && remote.weights.len() == local.weights.len()
            && remote.canary.is_some() == control.canary.is_some();
        if !same_route {
            // Instances on another config (a rollout under way): theirs is not ours.
            self.synced
                .insert(control.route.to_string(), (local, version));
            return Ok(());
        }
        if remote != local {
            control.split.set_weights(remote.weights.clone());
            if let (Some(canary), Some(phase)) = (&control.canary, &remote.canary) {
                canary.set_phase(phase.clone());
            }
            tracing::info!(route = %control.route, weights = ?remote.weights, phase = ?remote.canary, "fleet: route state taken from the fleet");
            controls.save();
        }
        self.synced
            .insert(control.route.to_string(), (remote, version));
        Ok(())
    }
}

fn saved(control: &RouteControl) -> SavedRoute {
    SavedRoute {
        pools: control.pools.iter().map(|p| p.to_string()).collect(),
        configured: control.configured.clone(),
        weights: control.split.weights(),
        canary: control.canary.as_ref().map(|c| c.phase()),
    }
}
