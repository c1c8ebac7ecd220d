//! Exits: where egress requests leave from (this host, an HTTP(S) proxy, a SOCKS5
//! proxy), parsed from the config or an exits file, each with its health (unreachable
//! exits are probed until they answer) and its per-host cooldowns after bans.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use base64::Engine;
use http::HeaderValue;
use tokio::time::Instant;

use super::dial::{ExitKind, ProxyAddress, SocksDialer};
use crate::balance::{SplitMix, stable_hash};
use crate::decimal::{self, Digits};
use crate::telemetry::EgressExitCounters;
use crate::upstream::{Endpoint, Protocol, UpstreamClient, UpstreamUrl};

/// Sites whose idle connections an exit keeps, at most; beyond, the table starts afresh.
const MAX_SITES: usize = 4096;
/// Hosts an exit remembers bans for; beyond, entries long expired are forgotten.
const MAX_COOLDOWNS: usize = 10_000;

/// An exit as written in the config or an exits file, before it is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitSource {
    pub url: String,
    pub region: Option<String>,
    pub name: Option<String>,
}

/// A parsed exit URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitUrl {
    Direct,
    Http {
        address: ProxyAddress,
        tls: bool,
        credentials: Option<(String, String)>,
    },
    Socks5 {
        address: ProxyAddress,
        credentials: Option<(String, String)>,
    },
}

impl ExitUrl {
    /// `direct`, `http://[user:pass@]host:port`, `https://...`, `socks5://...` (also
    /// `socks5h://`: names are always resolved by the exit).
    pub fn parse(text: &str) -> Result<ExitUrl, String> {
        let text = text.trim();
        if text == "direct" {
            return Ok(ExitUrl::Direct);
        }
        let example = "e.g. \"http://user:pass@proxy.example.com:8000\", \"socks5://proxy.example.com:1080\" or \"direct\"";
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| format!("{text:?} is not an exit URL ({example})"))?;
        let (default_port, kind) = match scheme.to_ascii_lowercase().as_str() {
            "http" => (80, 0),
            "https" => (443, 1),
            "socks5" | "socks5h" => (1080, 2),
            other => {
                return Err(format!(
                    "{text:?}: unknown exit scheme {other:?} (http, https, socks5 or direct)"
                ));
            }
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') {
            return Err(format!("{text:?}: an exit URL has no path ({example})"));
        }
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, rest),
        };
        let credentials = match userinfo {
            None => None,
            Some(userinfo) => {
                let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                Some((percent_decode(user)?, percent_decode(pass)?))
            }
        };
        let address = parse_host_port(hostport, default_port)
            .map_err(|why| format!("{text:?}: {why} ({example})"))?;
        Ok(match kind {
            0 | 1 => ExitUrl::Http {
                address,
                tls: kind == 1,
                credentials,
            },
            _ => ExitUrl::Socks5 {
                address,
                credentials,
            },
        })
    }

    /// The URL without its password, for logs, `/api/config` and default names.
    pub fn redacted(&self) -> String {
        let user = |credentials: &Option<(String, String)>| match credentials {
            Some((user, _)) => format!("{user}:***@"),
            None => String::new(),
        };
        match self {
            ExitUrl::Direct => "direct".into(),
            ExitUrl::Http {
                address,
                tls,
                credentials,
            } => format!(
                "{}://{}{address}",
                if *tls { "https" } else { "http" },
                user(credentials)
            ),
            ExitUrl::Socks5 {
                address,
                credentials,
            } => format!("socks5://{}{address}", user(credentials)),
        }
    }

    fn default_name(&self) -> String {
        match self {
            ExitUrl::Direct => "direct".into(),
            ExitUrl::Http { address, .. } | ExitUrl::Socks5 { address, .. } => address.to_string(),
        }
    }
}

fn parse_host_port(text: &str, default_port: u16) -> Result<ProxyAddress, String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| "unclosed [ in the address".to_string())?;
        (host, after.strip_prefix(':'))
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    let port = match port {
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("bad port {port:?}"))?,
        None => default_port,
    };
    Ok(ProxyAddress {
        host: host.to_string(),
        port,
    })
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-encoding in {text:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("credentials in {text:?} are not UTF-8"))
}

/// Parses an exits file: one exit URL per line, then optional `region=xx` and
/// `name=yy`; `#` starts a comment. Errors name the line.
pub fn parse_exits_file(text: &str) -> Result<Vec<ExitSource>, String> {
    let mut exits = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        let url = words.next().unwrap_or_default().to_string();
        ExitUrl::parse(&url).map_err(|e| format!("line {}: {e}", number + 1))?;
        let mut source = ExitSource {
            url,
            region: None,
            name: None,
        };
        for word in words {
            match word.split_once('=') {
                Some(("region", value)) if !value.is_empty() => {
                    source.region = Some(value.to_string())
                }
                Some(("name", value)) if !value.is_empty() => source.name = Some(value.to_string()),
                _ => {
                    return Err(format!(
                        "line {}: {word:?} is not region=... or name=...",
                        number + 1
                    ));
                }
            }
        }
        exits.push(source);
    }
    Ok(exits)
}

impl ExitSource {
    /// The exit's name in metrics, logs and `x-junction-exit`: `name`, or one made
    /// from the URL.
    pub fn label(&self, url: &ExitUrl) -> Arc<str> {
        self.name
            .clone()
            .unwrap_or_else(|| url.default_name())
            .into()
    }
}

struct Cooldown {
    until: Instant,
    strikes: u32,
}

/// `host`'s cooldown entry (a fresh one with no strikes when there is none). A full
/// table first drops the entries whose rest ended more than `keep_after` ago.
fn cooldown_of<'a>(
    cooldowns: &'a mut HashMap<String, Cooldown>,
    host: &str,
    now: Instant,
    keep_after: Duration,
) -> &'a mut Cooldown {
    if cooldowns.len() >= MAX_COOLDOWNS {
        cooldowns.retain(|_, c| c.until + keep_after > now);
    }
    cooldowns.entry(host.to_string()).or_insert(Cooldown {
        until: now,
        strikes: 0,
    })
}

/// One exit with its state.
pub struct Exit {
    pub source: ExitSource,
    pub name: Arc<str>,
    pub region: Option<Arc<str>>,
    pub kind: ExitKind,
    /// Stable per name: sticky_host hashing.
    pub identity_hash: u64,
    /// Plain-HTTP requests through this exit (connections to the proxy, or to sites).
    pub client: UpstreamClient,
    /// HTTP proxy exits: the proxy as an endpoint, with its idle connections.
    proxy_endpoint: Option<Arc<Endpoint>>,
    /// Direct and SOCKS5 exits: one endpoint per site, with its idle connections.
    sites: Mutex<HashMap<String, Arc<Endpoint>>>,
    pub tls: Option<tokio_rustls::TlsConnector>,
    /// Requests and tunnels going through this exit now (least_used).
    in_use: AtomicU32,
    down: AtomicBool,
    probing: AtomicBool,
    cooldowns: Mutex<HashMap<String, Cooldown>>,
    pub counters: Arc<EgressExitCounters>,
    /// What probes through the echo URL found (`verify`).
    pub verification: Mutex<super::verify::Verification>,
}

impl Exit {
    pub fn new(
        source: ExitSource,
        tls: Option<Arc<rustls::ClientConfig>>,
        counters: Arc<EgressExitCounters>,
    ) -> Result<Arc<Exit>, String> {
        let url = ExitUrl::parse(&source.url)?;
        let name = source.label(&url);
        let mut client =
            UpstreamClient::new(Protocol::Http1, tls.clone(), None, &Default::default());
        let mut proxy_endpoint = None;
        let kind = match url {
            ExitUrl::Direct => ExitKind::Direct,
            ExitUrl::Http {
                address,
                tls,
                credentials,
            } => {
                let scheme = if tls { "https" } else { "http" };
                let text = format!("{scheme}://{address}");
                let target = UpstreamUrl::parse(&text)?;
                proxy_endpoint = Some(Arc::new(Endpoint::new(&text, target, 1, Arc::default())));
                ExitKind::Http {
                    address,
                    tls,
                    authorization: credentials
                        .map(|(user, pass)| basic_authorization(&user, &pass)),
                }
            }
            ExitUrl::Socks5 {
                address,
                credentials,
            } => {
                client = client.with_dialer(Arc::new(SocksDialer {
                    proxy: address.clone(),
                    credentials: credentials.clone(),
                }));
                ExitKind::Socks5 {
                    address,
                    credentials,
                }
            }
        };
        Ok(Arc::new(Exit {
            identity_hash: stable_hash(name.as_bytes()),
            region: source.region.as_deref().map(Arc::from),
            name,
            source,
            kind,
            client,
            proxy_endpoint,
            sites: Mutex::new(HashMap::new()),
            tls: tls.map(tokio_rustls::TlsConnector::from),
            in_use: AtomicU32::new(0),
            down: AtomicBool::new(false),
            probing: AtomicBool::new(false),
            cooldowns: Mutex::new(HashMap::new()),
            counters,
            verification: Mutex::default(),
        }))
    }

    /// The region label: the exit's region or "".
    pub fn region_label(&self) -> &str {
        self.region.as_deref().unwrap_or("")
    }

    /// Where a plain-HTTP request through this exit is sent: the proxy itself, or the
    /// site (`site` is the resolved address for direct exits, host:port for SOCKS5).
    pub fn endpoint_for(&self, site: &str) -> Result<Arc<Endpoint>, String> {
        if let Some(proxy) = &self.proxy_endpoint {
            return Ok(proxy.clone());
        }
        let mut sites = self.sites.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(endpoint) = sites.get(site) {
            return Ok(endpoint.clone());
        }
        if sites.len() >= MAX_SITES {
            sites.clear();
        }
        let url = format!("http://{site}");
        let target = UpstreamUrl::parse(&url)?;
        let endpoint = Arc::new(Endpoint::new(&url, target, 1, Arc::default()));
        sites.insert(site.to_string(), endpoint.clone());
        Ok(endpoint)
    }

    pub fn in_use(&self) -> u32 {
        self.in_use.load(Ordering::Relaxed)
    }

    /// Counts this exit as used until the guard drops.
    pub fn use_guard(self: &Arc<Self>) -> InUse {
        self.in_use.fetch_add(1, Ordering::Relaxed);
        InUse(self.clone())
    }

    pub fn is_up(&self) -> bool {
        !self.down.load(Ordering::Relaxed)
    }

    /// The exit could not be reached: no host gets it until a probe reaches it again.
    pub fn mark_unreachable(self: &Arc<Self>, probe_interval: Duration, timeout: Duration) {
        let Some(address) = self.proxy_address().cloned() else {
            return; // A direct exit failing to reach a site says nothing about the exit.
        };
        self.down.store(true, Ordering::Relaxed);
        if self.probing.swap(true, Ordering::Relaxed) {
            return;
        }
        tracing::warn!(exit = %self.name, "exit unreachable; probing until it answers");
        let exit = Arc::downgrade(self);
        tokio::spawn(probe(exit, address, probe_interval, timeout));
    }

    pub fn proxy_address(&self) -> Option<&ProxyAddress> {
        match &self.kind {
            ExitKind::Direct => None,
            ExitKind::Http { address, .. } | ExitKind::Socks5 { address, .. } => Some(address),
        }
    }

    pub fn is_cooling(&self, host: &str, now: Instant) -> bool {
        let cooldowns = self.cooldowns.lock().unwrap_or_else(|p| p.into_inner());
        cooldowns.get(host).is_some_and(|c| c.until > now)
    }

    /// The site `host` banned this exit: it rests for that host, `base` doubled per
    /// ban in a row, capped at `max`, with ±20% jitter so exits banned together do not
    /// come back together.
    pub fn cool_down(
        &self,
        host: &str,
        base: Duration,
        max: Duration,
        rng: &SplitMix,
        now: Instant,
    ) -> Duration {
        let mut cooldowns = self.cooldowns.lock().unwrap_or_else(|p| p.into_inner());
        let entry = cooldown_of(&mut cooldowns, host, now, max);
        entry.strikes = entry.strikes.saturating_add(1);
        let doubled = base.saturating_mul(1u32 << (entry.strikes - 1).min(20));
        let jitter = 0.8 + 0.4 * (rng.next_u64() as f64 / u64::MAX as f64);
        let rest = doubled.min(max).mul_f64(jitter).min(max);
        entry.until = now + rest;
        rest
    }

    /// A ban reported with its own rest: the exit rests for `host` for `rest` from
    /// now (longer if it already does), and the ban counts as one more in a row.
    pub fn rest_for(&self, host: &str, rest: Duration, now: Instant) -> Duration {
        let mut cooldowns = self.cooldowns.lock().unwrap_or_else(|p| p.into_inner());
        let entry = cooldown_of(&mut cooldowns, host, now, Duration::ZERO);
        entry.strikes = entry.strikes.saturating_add(1);
        entry.until = entry.until.max(now + rest);
        entry.until - now
    }

    /// Another instance of the fleet rests this exit for `host` for `rest` more: it
    /// rests here as long (a longer local rest stays).
    pub fn adopt_rest(&self, host: &str, rest: Duration, now: Instant) {
        let mut cooldowns = self.cooldowns.lock().unwrap_or_else(|p| p.into_inner());
        let entry = cooldown_of(&mut cooldowns, host, now, Duration::ZERO);
        entry.strikes = entry.strikes.max(1);
        entry.until = entry.until.max(now + rest);
    }

    /// A good answer from `host`: the next ban starts from the first cooldown again.
    pub fn forgive(&self, host: &str, now: Instant) {
        let mut cooldowns = self.cooldowns.lock().unwrap_or_else(|p| p.into_inner());
        if cooldowns.get(host).is_some_and(|c| c.until <= now) {
            cooldowns.remove(host);
        }
    }

    /// Hosts this exit is resting for now.
    pub fn cooling_hosts(&self, now: Instant) -> usize {
        let cooldowns = self.cooldowns.lock().unwrap_or_else(|p| p.into_inner());
        cooldowns.values().filter(|c| c.until > now).count()
    }
}

/// Marks an exit in use until dropped.
pub struct InUse(Arc<Exit>);

impl Drop for InUse {
    fn drop(&mut self) {
        self.0.in_use.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Tries to reach an unreachable exit every `interval` until it answers (or the exit
/// is gone from the plan).
async fn probe(exit: Weak<Exit>, address: ProxyAddress, interval: Duration, timeout: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        if exit.strong_count() == 0 {
            return;
        }
        let target = (address.host.as_str(), address.port);
        let reached = matches!(
            tokio::time::timeout(timeout, tokio::net::TcpStream::connect(target)).await,
            Ok(Ok(_))
        );
        if reached {
            if let Some(exit) = exit.upgrade() {
                tracing::info!(exit = %exit.name, "exit reachable again");
                exit.down.store(false, Ordering::Relaxed);
                exit.probing.store(false, Ordering::Relaxed);
            }
            return;
        }
    }
}

/// `Basic base64(user:pass)` (RFC 7617).
pub fn basic_authorization(user: &str, pass: &str) -> HeaderValue {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    HeaderValue::from_str(&format!("Basic {encoded}")).expect("base64 is a valid header value")
}

/// A socket address as a site key of a direct exit.
pub fn site_key(address: SocketAddr) -> String {
    match address {
        // By hand: `Display` for an address costs some 1 600 instructions, a tenth of
        // what a plain request through a direct exit costs in all.
        SocketAddr::V4(v4) => {
            let (address, len) = decimal::ipv4(*v4.ip());
            let mut key = String::with_capacity(21);
            key.push_str(std::str::from_utf8(&address[..len]).unwrap_or_default());
            key.push(':');
            key.push_str(Digits::of(u64::from(v4.port())).as_str());
            key
        }
        SocketAddr::V6(_) => address.to_string(),
    }
}

// === Read-only snapshots, for the admin API ===

/// A site that banned an exit: bans in a row, and the rest left (zero once the exit
/// serves the site again; the count stays until a good answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteBan {
    pub host: String,
    pub strikes: u32,
    pub resting_for: Duration,
}

impl Exit {
    /// The `top` sites this exit rests for longest (then those remembered with a
    /// count of bans), and how many sites it remembers bans for in all.
    pub fn bans_snapshot(&self, now: Instant, top: usize) -> (Vec<SiteBan>, usize) {
        let cooldowns = self.cooldowns.lock().unwrap_or_else(|p| p.into_inner());
        let mut bans: Vec<(&String, &Cooldown)> = cooldowns.iter().collect();
        let total = bans.len();
        let order = |a: &(&String, &Cooldown), b: &(&String, &Cooldown)| {
            (b.1.until, b.1.strikes, a.0).cmp(&(a.1.until, a.1.strikes, b.0))
        };
        if bans.len() > top && top > 0 {
            bans.select_nth_unstable_by(top - 1, order);
        }
        bans.truncate(top);
        bans.sort_unstable_by(order);
        let bans = bans
            .into_iter()
            .map(|(host, cooldown)| SiteBan {
                host: host.clone(),
                strikes: cooldown.strikes,
                resting_for: cooldown.until.saturating_duration_since(now),
            })
            .collect();
        (bans, total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_keys_read_as_the_address_displays() {
        for address in [
            "0.0.0.0:0",
            "127.0.0.1:80",
            "10.200.3.45:8080",
            "255.255.255.255:65535",
            "[::1]:443",
            "[2001:db8::7]:8443",
        ] {
            let address: SocketAddr = address.parse().unwrap();
            assert_eq!(site_key(address), address.to_string());
        }
    }

    #[test]
    fn parses_exit_urls() {
        assert_eq!(ExitUrl::parse("direct").unwrap(), ExitUrl::Direct);
        let http = ExitUrl::parse("http://us%40er:p%3Ass@proxy.example.com:8000").unwrap();
        assert_eq!(
            http,
            ExitUrl::Http {
                address: ProxyAddress {
                    host: "proxy.example.com".into(),
                    port: 8000
                },
                tls: false,
                credentials: Some(("us@er".into(), "p:ss".into())),
            }
        );
        assert_eq!(http.redacted(), "http://us@er:***@proxy.example.com:8000");
        let socks = ExitUrl::parse("socks5://[::1]:1080/").unwrap();
        assert_eq!(socks.redacted(), "socks5://[::1]:1080");
        assert!(matches!(
            ExitUrl::parse("https://p.example").unwrap(),
            ExitUrl::Http {
                tls: true,
                address: ProxyAddress { port: 443, .. },
                ..
            }
        ));
        for bad in [
            "ftp://x:1",
            "proxy:8000",
            "http://:80",
            "http://h:0",
            "http://h:1/path",
            "http://h%zz@x:1",
        ] {
            assert!(ExitUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_exits_files() {
        let text =
            "# exits\nhttp://a:1 region=us name=a1\n\nsocks5://b:2  # fr later\ndirect region=jp\n";
        let exits = parse_exits_file(text).unwrap();
        assert_eq!(exits.len(), 3);
        assert_eq!(exits[0].region.as_deref(), Some("us"));
        assert_eq!(exits[0].name.as_deref(), Some("a1"));
        assert_eq!(exits[1].region, None);
        assert_eq!(exits[2].url, "direct");
        let error = parse_exits_file("direct\nhttp://x:1 colour=red\n").unwrap_err();
        assert!(error.starts_with("line 2:"), "{error}");
        assert!(
            parse_exits_file("nope\n")
                .unwrap_err()
                .starts_with("line 1:")
        );
    }

    /// An exit that dials sites itself, for the cool-down tests.
    fn direct_exit() -> Arc<Exit> {
        let source = ExitSource {
            url: "direct".into(),
            region: None,
            name: None,
        };
        Exit::new(source, None, Arc::default()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn cooldowns_double_up_to_the_cap_and_are_forgiven() {
        let exit = direct_exit();
        let rng = SplitMix::with_seed(7);
        let base = Duration::from_secs(60);
        let max = Duration::from_secs(300);
        let now = Instant::now();
        let first = exit.cool_down("a.example", base, max, &rng, now);
        assert!(
            first >= Duration::from_secs(48) && first <= Duration::from_secs(72),
            "{first:?}"
        );
        assert!(exit.is_cooling("a.example", now));
        assert!(!exit.is_cooling("b.example", now));
        let second = exit.cool_down("a.example", base, max, &rng, now);
        assert!(second >= Duration::from_secs(96), "{second:?}");
        for _ in 0..10 {
            assert!(exit.cool_down("a.example", base, max, &rng, now) <= max);
        }
        assert_eq!(exit.cooling_hosts(now), 1);
        let later = now + max + Duration::from_secs(1);
        assert!(!exit.is_cooling("a.example", later));
        exit.forgive("a.example", later);
        let again = exit.cool_down("a.example", base, max, &rng, later);
        assert!(
            again <= Duration::from_secs(72),
            "strikes start over: {again:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_snapshot_lists_the_longest_rests_first() {
        let exit = direct_exit();
        let rng = SplitMix::with_seed(7);
        let (base, max) = (Duration::from_secs(60), Duration::from_secs(3600));
        let now = Instant::now();
        exit.cool_down("once.example", base, max, &rng, now);
        exit.cool_down("twice.example", base, max, &rng, now);
        exit.cool_down("twice.example", base, max, &rng, now);
        let (bans, total) = exit.bans_snapshot(now, 1);
        assert_eq!(total, 2);
        assert_eq!(bans.len(), 1);
        assert_eq!(
            (bans[0].host.as_str(), bans[0].strikes),
            ("twice.example", 2)
        );
        assert!(
            bans[0].resting_for >= Duration::from_secs(96),
            "{:?}",
            bans[0]
        );
        // Rested: still remembered (the count of bans in a row), resting for nothing.
        let later = now + Duration::from_secs(3601);
        let (bans, total) = exit.bans_snapshot(later, 10);
        assert_eq!(total, 2);
        assert!(bans.iter().all(|b| b.resting_for.is_zero()), "{bans:?}");
    }
}
