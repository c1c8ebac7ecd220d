//! robots.txt (RFC 9309) for the egress proxy: parses a site's file, picks the group
//! that applies to our crawler, answers whether a path may be fetched, and caches each
//! site's answer so robots.txt is fetched once per site and `ttl`, not once per request.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio::time::Instant;

/// RFC 9309 2.5: crawlers must parse at least 500 KiB; beyond that they may stop.
const MAX_PARSED_BYTES: usize = 500 * 1024;

/// RFC 9309 2.4 lets an unreachable site's robots.txt be treated as "disallow all", but a
/// site that was down should not stay closed to us for a whole `ttl`.
const MAX_UNREACHABLE_TTL: Duration = Duration::from_secs(60);

/// Stands in for "never expires" where a ttl would overflow the clock.
const KEEP_FOR_GOOD: Duration = Duration::from_secs(86_400 * 365 * 30);

/// The rules of the group that applies to our agent.
#[derive(Clone, Debug, Default)]
pub struct Robots {
    rules: Vec<Rule>,
    /// The group's `Crawl-delay` (not in RFC 9309, but widely written): seconds
    /// between two requests.
    pub crawl_delay: Option<Duration>,
}

/// The longest `Crawl-delay` taken; more is read as this.
const MAX_CRAWL_DELAY: Duration = Duration::from_secs(3600);

fn crawl_delay(value: &str) -> Option<Duration> {
    let seconds: f64 = value.parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0)
        .then(|| Duration::from_secs_f64(seconds.min(MAX_CRAWL_DELAY.as_secs_f64())))
}

#[derive(Clone, Debug)]
struct Rule {
    allow: bool,
    /// Normalized pattern without its end anchor; `*` matches any run of octets.
    pattern: Vec<u8>,
    /// The pattern ended in `$`: it must match up to the end of the path.
    anchored: bool,
    /// Octets of the pattern as written (after normalization); the longest match wins.
    specificity: usize,
}

impl Rule {
    fn parse(allow: bool, value: &str) -> Option<Rule> {
        if value.is_empty() {
            // RFC 9309 2.2.2: an empty rule matches nothing (`disallow:` allows all).
            return None;
        }
        let mut pattern = normalize_percent_encoding(value);
        let specificity = pattern.len();
        let anchored = pattern.last() == Some(&b'$');
        if anchored {
            pattern.pop();
        }
        Some(Rule {
            allow,
            pattern,
            anchored,
            specificity,
        })
    }

    fn matches(&self, path: &[u8]) -> bool {
        wildcard_match(&self.pattern, self.anchored, path)
    }
}

/// Which groups a run of `user-agent:` lines names.
#[derive(Default)]
struct GroupTarget {
    us: bool,
    everyone: bool,
}

impl Robots {
    /// Parses robots.txt text for the product token `agent` (case-insensitive match of
    /// the user-agent line against the token; the `*` group when no group names it).
    pub fn parse(text: &str, agent: &str) -> Robots {
        let agent = product_token(agent);
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let text = &text[..text.floor_char_boundary(MAX_PARSED_BYTES)];

        let mut ours = Vec::new();
        let mut everyones = Vec::new();
        let (mut our_delay, mut everyones_delay) = (None, None);
        let mut named_us = false;
        let mut target = GroupTarget::default();
        // Consecutive user-agent lines share one group; the first rule closes the list.
        let mut reading_agents = false;
        for line in text.split(['\n', '\r']) {
            let line = line.split_once('#').map_or(line, |(content, _)| content);
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let key = key.trim();
            let value = value.trim();
            if key.eq_ignore_ascii_case("user-agent") {
                if !reading_agents {
                    target = GroupTarget::default();
                    reading_agents = true;
                }
                let token = product_token(value);
                if token == "*" {
                    target.everyone = true;
                } else if !agent.is_empty() && token.eq_ignore_ascii_case(agent) {
                    target.us = true;
                    named_us = true;
                }
            } else if key.eq_ignore_ascii_case("allow") || key.eq_ignore_ascii_case("disallow") {
                reading_agents = false;
                let allow = key.eq_ignore_ascii_case("allow");
                let Some(rule) = Rule::parse(allow, value) else {
                    continue;
                };
                if target.us {
                    ours.push(rule.clone());
                }
                if target.everyone {
                    everyones.push(rule);
                }
            } else if key.eq_ignore_ascii_case("crawl-delay") {
                // Like sitemap lines, it neither carries rules nor ends a group.
                if let Some(delay) = crawl_delay(value) {
                    if target.us {
                        our_delay = Some(delay);
                    }
                    if target.everyone {
                        everyones_delay = Some(delay);
                    }
                }
            }
            // Other lines (sitemap, ...) neither carry rules nor end a group.
        }
        // A group naming us replaces `*` entirely, even when it has no rules.
        if named_us {
            Robots {
                rules: ours,
                crawl_delay: our_delay,
            }
        } else {
            Robots {
                rules: everyones,
                crawl_delay: everyones_delay,
            }
        }
    }

    pub fn allow_all() -> Robots {
        Robots::default()
    }

    pub fn disallow_all() -> Robots {
        Robots {
            rules: Rule::parse(false, "/").into_iter().collect(),
            crawl_delay: None,
        }
    }

    /// `path` is the path plus optional query of the request (e.g. "/a/b?x=1").
    pub fn allows(&self, path: &str) -> bool {
        let path = if path.is_empty() { "/" } else { path };
        let path_only = path.split_once('?').map_or(path, |(path, _)| path);
        // RFC 9309 2.2.2: the file itself is always allowed, or nobody could read it.
        if path_only == "/robots.txt" {
            return true;
        }
        let path = normalize_percent_encoding(path);
        let mut best: Option<&Rule> = None;
        for rule in self.rules.iter().filter(|rule| rule.matches(&path)) {
            let better = best.is_none_or(|best| {
                rule.specificity > best.specificity
                    || (rule.specificity == best.specificity && rule.allow && !best.allow)
            });
            if better {
                best = Some(rule);
            }
        }
        best.is_none_or(|rule| rule.allow)
    }
}

/// The product token of a user-agent value: `"JunctionBot/1.0 (+https://…)"` names
/// `JunctionBot`.
fn product_token(value: &str) -> &str {
    value
        .trim()
        .split(|c: char| c == '/' || c.is_whitespace())
        .next()
        .unwrap_or("")
}

/// Brings patterns and paths to one spelling before comparing: `%xx` hex in upper case,
/// escaped unreserved characters (`%7E`) decoded, and non-ASCII octets escaped, as
/// RFC 9309 2.2.2 compares octets after percent-encoding.
fn normalize_percent_encoding(text: &str) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = text.as_bytes();
    let mut normalized = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        let escaped = (byte == b'%')
            .then(|| {
                Some((
                    hex_value(*bytes.get(index + 1)?)?,
                    hex_value(*bytes.get(index + 2)?)?,
                ))
            })
            .flatten();
        if let Some((high, low)) = escaped {
            let decoded = (high << 4) | low;
            if decoded.is_ascii_alphanumeric() || b"-._~".contains(&decoded) {
                normalized.push(decoded);
            } else {
                normalized.extend([b'%', HEX[usize::from(high)], HEX[usize::from(low)]]);
            }
            index += 3;
        } else if byte.is_ascii() {
            normalized.push(byte);
            index += 1;
        } else {
            normalized.extend([
                b'%',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xF)],
            ]);
            index += 1;
        }
    }
    normalized
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|value| u8::try_from(value).ok())
}

/// Matches `pattern` (`*` = any run of octets) against the start of `path`, or against
/// all of it when `anchored`. Greedy with backtracking to the last `*` only, so at worst
/// pattern length × path length steps, never exponential.
fn wildcard_match(pattern: &[u8], anchored: bool, path: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut last_star: Option<(usize, usize)> = None;
    while t < path.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            last_star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == path[t] {
            p += 1;
            t += 1;
        } else if p == pattern.len() && !anchored {
            return true;
        } else if let Some((star_p, star_t)) = last_star {
            // Let the last `*` swallow one more octet and retry from there.
            last_star = Some((star_p, star_t + 1));
            p = star_p + 1;
            t = star_t + 1;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|octet| *octet == b'*')
}

/// What fetching a site's robots.txt gave.
#[derive(Clone, Debug)]
pub enum RobotsFetch {
    /// 2xx with this body
    Found(String),
    /// 4xx: no rules (RFC 9309 2.3.1.3: allow all)
    Unavailable,
    /// 5xx or network error: disallow all (RFC 9309 2.3.1.4)
    Unreachable,
}

/// Each site's robots.txt rules for one agent, fetched once per site and `ttl`.
pub struct RobotsCache {
    agent: String,
    ttl: Duration,
    max_sites: usize,
    sites: Mutex<HashMap<String, Arc<SiteRules>>>,
}

/// One site's entry; concurrent callers share the one fetch through the cell.
struct SiteRules {
    created: Instant,
    rules: OnceCell<CachedRobots>,
}

impl SiteRules {
    fn new() -> Self {
        SiteRules {
            created: Instant::now(),
            rules: OnceCell::new(),
        }
    }

    fn is_expired(&self, now: Instant) -> bool {
        self.rules.get().is_some_and(|cached| cached.expires <= now)
    }
}

struct CachedRobots {
    robots: Robots,
    expires: Instant,
}

impl RobotsCache {
    pub fn new(agent: &str, ttl: Duration, max_sites: usize) -> Self {
        RobotsCache {
            agent: agent.to_string(),
            ttl,
            // Zero would leave no room for the entry that coalesces fetches.
            max_sites: max_sites.max(1),
            sites: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `path` may be fetched from `site` (a key like "http://host:port"). The
    /// first caller for a site runs `fetch`; concurrent callers for the same site wait
    /// for that one fetch. The result is kept for `ttl` (an Unreachable one for at most
    /// 60s, so a site that was down is asked again soon). Should the fetching caller be
    /// dropped mid-fetch, the next waiter runs its own `fetch` instead.
    pub async fn allows<F, Fut>(&self, site: &str, path: &str, fetch: F) -> bool
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = RobotsFetch>,
    {
        self.check(site, path, fetch).await.0
    }

    /// As [`RobotsCache::allows`], with the site's `Crawl-delay` for our agent.
    pub async fn check<F, Fut>(&self, site: &str, path: &str, fetch: F) -> (bool, Option<Duration>)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = RobotsFetch>,
    {
        let entry = self.entry(site);
        let cached = entry
            .rules
            .get_or_init(|| async {
                let (robots, ttl) = match fetch().await {
                    RobotsFetch::Found(body) => (Robots::parse(&body, &self.agent), self.ttl),
                    RobotsFetch::Unavailable => (Robots::allow_all(), self.ttl),
                    RobotsFetch::Unreachable => {
                        (Robots::disallow_all(), self.ttl.min(MAX_UNREACHABLE_TTL))
                    }
                };
                let now = Instant::now();
                // A ttl past the end of the clock means "keep for good".
                let expires = now
                    .checked_add(ttl)
                    .or_else(|| now.checked_add(KEEP_FOR_GOOD))
                    .unwrap_or(now);
                CachedRobots { robots, expires }
            })
            .await;
        (cached.robots.allows(path), cached.robots.crawl_delay)
    }

    /// The site's entry, a fresh one when there is none or it expired.
    fn entry(&self, site: &str) -> Arc<SiteRules> {
        let key = site.to_ascii_lowercase();
        let now = Instant::now();
        let mut sites = self.sites.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = sites.get(&key).filter(|entry| !entry.is_expired(now)) {
            return entry.clone();
        }
        if !sites.contains_key(&key) && sites.len() >= self.max_sites {
            Self::make_room(&mut sites, self.max_sites, now);
        }
        let entry = Arc::new(SiteRules::new());
        sites.insert(key, entry.clone());
        entry
    }

    /// Drops expired sites, then, if still full, the oldest eighth, so a full cache is
    /// not scanned again on every new site.
    fn make_room(sites: &mut HashMap<String, Arc<SiteRules>>, max_sites: usize, now: Instant) {
        sites.retain(|_, entry| !entry.is_expired(now));
        if sites.len() < max_sites {
            return;
        }
        let mut ages: Vec<Instant> = sites.values().map(|entry| entry.created).collect();
        let evicted = (sites.len() / 8).max(1);
        let (_, newest_evicted, _) = ages.select_nth_unstable(evicted - 1);
        let cutoff = *newest_evicted;
        let mut left_to_evict = evicted;
        sites.retain(|_, entry| {
            if left_to_evict > 0 && entry.created <= cutoff {
                left_to_evict -= 1;
                false
            } else {
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn parse(text: &str) -> Robots {
        Robots::parse(text, "JunctionBot")
    }

    #[test]
    fn empty_file_allows_everything() {
        let robots = parse("");
        assert!(robots.allows("/"));
        assert!(robots.allows("/any/path?x=1"));
    }

    #[test]
    fn star_group_applies_when_nobody_names_us() {
        let robots =
            parse("User-agent: *\nDisallow: /private\n\nUser-agent: OtherBot\nDisallow: /\n");
        assert!(!robots.allows("/private"));
        assert!(!robots.allows("/private/page"));
        assert!(robots.allows("/public"));
    }

    #[test]
    fn our_group_replaces_the_star_group() {
        let text = "User-agent: *\nDisallow: /\n\nUser-agent: junctionbot\nDisallow: /secret\n";
        let robots = parse(text);
        assert!(robots.allows("/page"));
        assert!(!robots.allows("/secret"));
    }

    #[test]
    fn our_group_without_rules_allows_all() {
        let text = "User-agent: *\nDisallow: /\n\nUser-agent: JunctionBot\nSitemap: /map.xml\n";
        assert!(parse(text).allows("/page"));
    }

    #[test]
    fn agent_matching_is_case_insensitive_on_the_product_token() {
        let text = "User-agent: JUNCTIONBOT/2.0\nDisallow: /a\n";
        assert!(!Robots::parse(text, "junctionbot").allows("/a"));
        assert!(!Robots::parse(text, "JunctionBot/1.0 (+https://example.com)").allows("/a"));
        assert!(Robots::parse(text, "JunctionBotX").allows("/a"));
        assert!(
            Robots::parse(text, "").allows("/a"),
            "an empty agent is nobody"
        );
    }

    #[test]
    fn several_agent_lines_share_one_group() {
        let text = "User-agent: OtherBot\nUser-agent: JunctionBot\nDisallow: /shared\n\
                    User-agent: ThirdBot\nDisallow: /third\n";
        let robots = parse(text);
        assert!(!robots.allows("/shared"));
        assert!(robots.allows("/third"), "a rule line ends the group");
    }

    #[test]
    fn groups_naming_us_are_merged() {
        let text = "User-agent: JunctionBot\nDisallow: /a\n\nUser-agent: *\nDisallow: /star\n\n\
                    User-agent: JunctionBot\nDisallow: /b\n";
        let robots = parse(text);
        assert!(!robots.allows("/a"));
        assert!(!robots.allows("/b"));
        assert!(robots.allows("/star"));
    }

    #[test]
    fn star_groups_are_merged_too() {
        let text = "User-agent: *\nDisallow: /a\n\nUser-agent: *\nDisallow: /b\n";
        let robots = parse(text);
        assert!(!robots.allows("/a"));
        assert!(!robots.allows("/b"));
        assert!(robots.allows("/c"));
    }

    #[test]
    fn rules_before_any_group_are_ignored() {
        assert!(parse("Disallow: /\nUser-agent: *\nDisallow: /x\n").allows("/page"));
    }

    #[test]
    fn longest_match_wins() {
        let text =
            "User-agent: *\nDisallow: /shop\nAllow: /shop/public\nDisallow: /shop/public/hidden\n";
        let robots = parse(text);
        assert!(!robots.allows("/shop/cart"));
        assert!(robots.allows("/shop/public/page"));
        assert!(!robots.allows("/shop/public/hidden/x"));
        // Order in the file does not matter.
        let reordered = "User-agent: *\nAllow: /shop/public\nDisallow: /shop\n";
        assert!(parse(reordered).allows("/shop/public"));
        assert!(!parse(reordered).allows("/shop/other"));
    }

    #[test]
    fn allow_wins_a_tie() {
        let robots = parse("User-agent: *\nDisallow: /page\nAllow: /page\n");
        assert!(robots.allows("/page"));
        let robots = parse("User-agent: *\nAllow: /pa*\nDisallow: /pag\n");
        assert!(robots.allows("/page"), "same length, allow wins");
    }

    #[test]
    fn empty_disallow_disallows_nothing() {
        let robots = parse("User-agent: *\nDisallow:\n");
        assert!(robots.allows("/"));
        assert!(robots.allows("/anything"));
    }

    #[test]
    fn wildcards() {
        let robots = parse("User-agent: *\nDisallow: /*.pdf\nDisallow: /a*/b*/c\n");
        assert!(!robots.allows("/files/report.pdf"));
        assert!(
            !robots.allows("/report.pdf?download=1"),
            "unanchored: prefix match"
        );
        assert!(robots.allows("/report.html"));
        assert!(!robots.allows("/ax/by/c"));
        assert!(!robots.allows("/a/b/c/d"));
        assert!(robots.allows("/a/c"));
    }

    #[test]
    fn end_anchor() {
        let robots = parse("User-agent: *\nDisallow: /*.php$\nDisallow: /exact$\n");
        assert!(!robots.allows("/index.php"));
        assert!(robots.allows("/index.php?x=1"));
        assert!(robots.allows("/index.php5"));
        assert!(!robots.allows("/exact"));
        assert!(robots.allows("/exact/more"));
    }

    #[test]
    fn dollar_inside_a_pattern_is_literal() {
        let robots = parse("User-agent: *\nDisallow: /a$b\n");
        assert!(!robots.allows("/a$b/c"));
        assert!(robots.allows("/ab"));
    }

    #[test]
    fn queries_are_part_of_the_path() {
        let robots = parse("User-agent: *\nDisallow: /search?q=\nDisallow: /*?sessionid\n");
        assert!(!robots.allows("/search?q=cats"));
        assert!(robots.allows("/search"));
        assert!(!robots.allows("/page?sessionid=1"));
    }

    #[test]
    fn robots_txt_is_always_allowed() {
        for robots in [
            parse("User-agent: *\nDisallow: /\n"),
            parse("User-agent: *\nDisallow: /robots\n"),
            Robots::disallow_all(),
        ] {
            assert!(robots.allows("/robots.txt"));
            assert!(robots.allows("/robots.txt?x=1"));
            assert!(!robots.allows("/robots"));
        }
    }

    #[test]
    fn comments_keys_and_line_endings() {
        let text = "# header comment\r\nUSER-AGENT: * # everyone\r\nDISALLOW: /private # no\r\n\
                    disAllow : /spaced \r\nAllow:/private/ok#tail\r\n";
        let robots = parse(text);
        assert!(!robots.allows("/private/x"));
        assert!(robots.allows("/private/ok"));
        assert!(!robots.allows("/spaced"));
        assert!(robots.allows("/public"));
        let old_mac = "User-agent: *\rDisallow: /cr\r";
        assert!(!parse(old_mac).allows("/cr"));
    }

    #[test]
    fn unknown_lines_are_ignored() {
        let text = "User-agent: *\nCrawl-delay: 10\nSitemap: https://example.com/map.xml\n\
                    Disallow: /x\nnonsense without colon\nHost: example.com\nDisallow: /y\n";
        let robots = parse(text);
        assert!(!robots.allows("/x"));
        assert!(!robots.allows("/y"));
        assert!(robots.allows("/z"));
    }

    #[test]
    fn byte_order_mark_is_skipped() {
        assert!(!parse("\u{feff}User-agent: *\nDisallow: /\n").allows("/page"));
    }

    #[test]
    fn parsing_stops_at_500_kib() {
        let mut text = String::from("User-agent: *\nDisallow: /early\n");
        while text.len() < MAX_PARSED_BYTES - 10 {
            text.push_str("# padding padding padding padding padding padding\n");
        }
        text.push_str("é".repeat(20).as_str());
        text.push_str("\nDisallow: /late\n");
        assert!(text.len() > MAX_PARSED_BYTES);
        let robots = parse(&text);
        assert!(!robots.allows("/early"));
        assert!(robots.allows("/late"), "rules past the limit are not read");
    }

    #[test]
    fn percent_encoding_compares_by_meaning() {
        let robots =
            parse("User-agent: *\nDisallow: /a%2fb\nDisallow: /%7Euser\nDisallow: /caf%C3%A9\n");
        assert!(!robots.allows("/a%2Fb"));
        assert!(!robots.allows("/a%2fb"));
        assert!(robots.allows("/a/b"), "an escaped slash is not a slash");
        assert!(!robots.allows("/~user"));
        assert!(!robots.allows("/%7euser"));
        assert!(
            !robots.allows("/café"),
            "raw UTF-8 matches its escaped form"
        );
        let raw = parse("User-agent: *\nDisallow: /café\n");
        assert!(!raw.allows("/caf%c3%a9"));
    }

    #[test]
    fn malformed_escapes_are_taken_literally() {
        let robots = parse("User-agent: *\nDisallow: /100%\nDisallow: /x%zz\n");
        assert!(!robots.allows("/100%"));
        assert!(!robots.allows("/x%zz"));
        assert!(robots.allows("/x%2"));
    }

    #[test]
    fn many_stars_do_not_blow_up() {
        let pattern = format!("/{}b$", "a*".repeat(200));
        let robots = parse(&format!("User-agent: *\nDisallow: {pattern}\n"));
        let path = format!("/{}", "a".repeat(5000));
        let start = std::time::Instant::now();
        assert!(robots.allows(&path));
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        assert!(!robots.allows(&format!("{path}b")));
    }

    #[test]
    fn wildcard_matcher() {
        assert!(wildcard_match(b"/a", false, b"/abc"));
        assert!(!wildcard_match(b"/a", true, b"/abc"));
        assert!(wildcard_match(b"/a*c", true, b"/abc"));
        assert!(wildcard_match(b"*", true, b""));
        assert!(wildcard_match(b"", false, b"/anything"));
        assert!(wildcard_match(b"/*a*b", true, b"/xaybzb"));
        assert!(!wildcard_match(b"/*a*b", true, b"/xaybzc"));
        assert!(!wildcard_match(b"/abc", false, b"/ab"));
    }

    #[test]
    fn allow_all_and_disallow_all() {
        assert!(Robots::allow_all().allows("/anything"));
        assert!(!Robots::disallow_all().allows("/anything"));
        assert!(!Robots::disallow_all().allows(""));
    }

    type BoxedFetch<'a> = std::pin::Pin<Box<dyn Future<Output = RobotsFetch> + Send + 'a>>;

    /// A fetch that counts its runs in `count` and takes `delay` to give `result`.
    fn counting_fetch<'a>(
        count: &'a AtomicUsize,
        result: RobotsFetch,
        delay: Duration,
    ) -> impl FnOnce() -> BoxedFetch<'a> {
        move || {
            Box::pin(async move {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                result
            })
        }
    }

    fn found(body: &str) -> RobotsFetch {
        RobotsFetch::Found(body.to_string())
    }

    const NO_PRIVATE: &str = "User-agent: *\nDisallow: /private\n";

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_fetch() {
        let cache = RobotsCache::new("JunctionBot", Duration::from_secs(3600), 100);
        let fetches = AtomicUsize::new(0);
        let second = Duration::from_secs(1);
        let (first, other) = tokio::join!(
            cache.allows(
                "http://a:80",
                "/private",
                counting_fetch(&fetches, found(NO_PRIVATE), second)
            ),
            cache.allows(
                "http://a:80",
                "/public",
                counting_fetch(&fetches, found(NO_PRIVATE), second)
            ),
        );
        assert!(!first);
        assert!(other);
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        assert!(
            !cache
                .allows(
                    "http://A:80",
                    "/private",
                    counting_fetch(&fetches, found(""), second)
                )
                .await
        );
        assert_eq!(
            fetches.load(Ordering::SeqCst),
            1,
            "cached, site keys case-insensitive"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn sites_are_cached_separately() {
        let cache = RobotsCache::new("JunctionBot", Duration::from_secs(3600), 100);
        let fetches = AtomicUsize::new(0);
        let instant = Duration::ZERO;
        assert!(
            !cache
                .allows(
                    "http://a:80",
                    "/private",
                    counting_fetch(&fetches, found(NO_PRIVATE), instant)
                )
                .await
        );
        assert!(
            cache
                .allows(
                    "http://b:80",
                    "/private",
                    counting_fetch(&fetches, found(""), instant)
                )
                .await
        );
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn results_expire_after_ttl() {
        let cache = RobotsCache::new("JunctionBot", Duration::from_secs(600), 100);
        let fetches = AtomicUsize::new(0);
        let instant = Duration::ZERO;
        assert!(
            !cache
                .allows(
                    "http://a:80",
                    "/private",
                    counting_fetch(&fetches, found(NO_PRIVATE), instant)
                )
                .await
        );
        tokio::time::sleep(Duration::from_secs(599)).await;
        assert!(
            !cache
                .allows(
                    "http://a:80",
                    "/private",
                    counting_fetch(&fetches, found(""), instant)
                )
                .await
        );
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            cache
                .allows(
                    "http://a:80",
                    "/private",
                    counting_fetch(&fetches, found(""), instant)
                )
                .await
        );
        assert_eq!(fetches.load(Ordering::SeqCst), 2, "fetched again after ttl");
    }

    #[tokio::test(start_paused = true)]
    async fn unavailable_allows_all() {
        let cache = RobotsCache::new("JunctionBot", Duration::from_secs(600), 100);
        let fetches = AtomicUsize::new(0);
        let fetch = counting_fetch(&fetches, RobotsFetch::Unavailable, Duration::ZERO);
        assert!(cache.allows("http://a:80", "/anything", fetch).await);
    }

    #[tokio::test(start_paused = true)]
    async fn unreachable_disallows_all_for_a_short_while() {
        let cache = RobotsCache::new("JunctionBot", Duration::from_secs(3600), 100);
        let fetches = AtomicUsize::new(0);
        let instant = Duration::ZERO;
        let down = || counting_fetch(&fetches, RobotsFetch::Unreachable, instant);
        assert!(!cache.allows("http://a:80", "/page", down()).await);
        assert!(cache.allows("http://a:80", "/robots.txt", down()).await);
        tokio::time::sleep(Duration::from_secs(59)).await;
        assert!(!cache.allows("http://a:80", "/page", down()).await);
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            cache
                .allows(
                    "http://a:80",
                    "/page",
                    counting_fetch(&fetches, found(""), instant)
                )
                .await
        );
        assert_eq!(fetches.load(Ordering::SeqCst), 2, "asked again after 60s");
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_fetcher_hands_over_to_the_next_caller() {
        let cache = RobotsCache::new("JunctionBot", Duration::from_secs(600), 100);
        let fetches = AtomicUsize::new(0);
        let slow = counting_fetch(&fetches, found(""), Duration::from_secs(60));
        let abandoned = tokio::time::timeout(
            Duration::from_secs(1),
            cache.allows("http://a:80", "/x", slow),
        )
        .await;
        assert!(abandoned.is_err());
        let fetch = counting_fetch(&fetches, found(NO_PRIVATE), Duration::ZERO);
        assert!(!cache.allows("http://a:80", "/private", fetch).await);
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn cache_stays_within_max_sites() {
        let cache = RobotsCache::new("JunctionBot", Duration::from_secs(600), 16);
        let fetches = AtomicUsize::new(0);
        for index in 0..100 {
            let site = format!("http://site{index}:80");
            tokio::time::sleep(Duration::from_millis(1)).await;
            assert!(
                cache
                    .allows(
                        &site,
                        "/",
                        counting_fetch(&fetches, found(""), Duration::ZERO)
                    )
                    .await
            );
            let tracked = cache.sites.lock().unwrap_or_else(|p| p.into_inner()).len();
            assert!(tracked <= 16, "{tracked} sites cached");
        }
        // The newest site is still cached; the oldest was evicted.
        assert!(
            cache
                .allows(
                    "http://site99:80",
                    "/",
                    counting_fetch(&fetches, found(""), Duration::ZERO)
                )
                .await
        );
        assert_eq!(fetches.load(Ordering::SeqCst), 100);
        assert!(
            cache
                .allows(
                    "http://site0:80",
                    "/",
                    counting_fetch(&fetches, found(""), Duration::ZERO)
                )
                .await
        );
        assert_eq!(fetches.load(Ordering::SeqCst), 101);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_max_sites_still_answers() {
        let cache = RobotsCache::new("JunctionBot", Duration::from_secs(600), 0);
        let fetches = AtomicUsize::new(0);
        for site in ["http://a:80", "http://b:80", "http://a:80"] {
            let fetch = counting_fetch(&fetches, found(NO_PRIVATE), Duration::ZERO);
            assert!(!cache.allows(site, "/private", fetch).await);
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn crawl_delay_is_read_for_our_group() {
        let text = "User-agent: *\nCrawl-delay: 2.5\nDisallow: /x\n\nUser-agent: OtherBot\nCrawl-delay: 60\n";
        assert_eq!(parse(text).crawl_delay, Some(Duration::from_millis(2500)));
        let ours =
            "User-agent: *\nCrawl-delay: 2\n\nUser-agent: JunctionBot\nCrawl-delay: 7\nAllow: /\n";
        assert_eq!(parse(ours).crawl_delay, Some(Duration::from_secs(7)));
        assert_eq!(
            parse("User-agent: *\nCrawl-delay: soon\n").crawl_delay,
            None
        );
        assert_eq!(parse("User-agent: *\nCrawl-delay: -1\n").crawl_delay, None);
        assert_eq!(
            parse("User-agent: *\nCrawl-delay: 1e12\n").crawl_delay,
            Some(MAX_CRAWL_DELAY)
        );
        assert_eq!(parse("User-agent: *\nDisallow: /\n").crawl_delay, None);
    }
}
