//! The mock's inference server: a number of slots, a FIFO queue in front of them, a
//! speed, an optional KV-cache budget and a prefix cache, published as vLLM publishes
//! them on `/metrics`. Enough of a model server to compare balancing policies on.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;

/// How the simulated server behaves (`junction mock --slots N ...`).
#[derive(Debug, Clone)]
pub struct InferenceOptions {
    /// Requests generated at once; more wait in the queue.
    pub slots: usize,
    /// Relative speed: 0.5 takes twice as long for prefill and every token.
    pub speed: f64,
    /// Prefill time per 1000 prompt tokens at speed 1 (a cached prefix is not prefilled).
    pub prefill_per_1k_tokens: Duration,
    /// KV-cache size in tokens; its use is published as `vllm:kv_cache_usage_perc`.
    pub kv_tokens: u64,
    /// A request waits until its prompt and `max_tokens` fit in the KV cache, as well as
    /// for a slot.
    pub kv_pressure: bool,
    /// Prompt prefixes remembered (least recently used go first); 0: no prefix cache.
    pub prefix_cache: usize,
    /// Output tokens when a request gives no `max_tokens`.
    pub output_tokens: u64,
    /// Add an ORCA `endpoint-load-metrics` header to every answer.
    pub orca: bool,
}

impl InferenceOptions {
    pub fn new(slots: usize) -> Self {
        InferenceOptions {
            slots: slots.max(1),
            speed: 1.0,
            prefill_per_1k_tokens: Duration::from_millis(100),
            kv_tokens: slots.max(1) as u64 * 4096,
            kv_pressure: false,
            prefix_cache: 0,
            output_tokens: 32,
            orca: false,
        }
    }

    /// `duration` at this server's speed.
    pub fn scaled(&self, duration: Duration) -> Duration {
        duration.div_f64(self.speed.max(0.01))
    }
}

/// One request's demands on the server.
#[derive(Debug, Clone, Copy)]
pub struct Demand {
    pub prompt_tokens: u64,
    pub max_tokens: u64,
    /// The prompt prefix's hash and its length in tokens.
    pub prefix: Option<(u64, u64)>,
}

struct Waiter {
    kv: u64,
    admitted: oneshot::Sender<()>,
}

#[derive(Default)]
struct Slots {
    running: usize,
    kv_reserved: u64,
    waiting: VecDeque<Waiter>,
    /// Most recent first.
    prefixes: VecDeque<u64>,
}

/// The running server's state: slots, queue, prefix cache, counters.
pub struct InferenceServer {
    pub options: InferenceOptions,
    slots: Mutex<Slots>,
    prefix_hits: AtomicU64,
    prefix_misses: AtomicU64,
    prefix_hit_tokens: AtomicU64,
    prefix_query_tokens: AtomicU64,
    finished: AtomicU64,
}

/// A slot held by one request; freed (and the next in the queue admitted) on drop.
pub struct Admission<'a> {
    server: &'a InferenceServer,
    kv: u64,
    /// Prompt tokens to prefill: all of them, less a cached prefix.
    pub prefill_tokens: u64,
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        self.server.release(self.kv);
        self.server.finished.fetch_add(1, Ordering::Relaxed);
    }
}

/// A request in the queue. Dropped before it got to run (its client left), it gives
/// back a slot it was admitted to in the meantime.
struct Queued<'a> {
    server: &'a InferenceServer,
    kv: u64,
    receiver: Option<oneshot::Receiver<()>>,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if let Some(mut receiver) = self.receiver.take() {
            receiver.close();
            if receiver.try_recv().is_ok() {
                self.server.release(self.kv);
            }
        }
    }
}

impl std::fmt::Debug for InferenceServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InferenceServer")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl InferenceServer {
    pub fn new(options: InferenceOptions) -> Self {
        InferenceServer {
            options,
            slots: Mutex::new(Slots::default()),
            prefix_hits: AtomicU64::new(0),
            prefix_misses: AtomicU64::new(0),
            prefix_hit_tokens: AtomicU64::new(0),
            prefix_query_tokens: AtomicU64::new(0),
            finished: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn release(&self, kv: u64) {
        let mut slots = self.lock();
        slots.running -= 1;
        slots.kv_reserved -= kv;
        self.admit_waiting(&mut slots);
    }

    fn kv_need(&self, demand: &Demand) -> u64 {
        if self.options.kv_pressure {
            // A request larger than the whole cache would wait for ever: it gets it all.
            (demand.prompt_tokens + demand.max_tokens).min(self.options.kv_tokens)
        } else {
            0
        }
    }

    fn fits(&self, slots: &Slots, kv: u64) -> bool {
        slots.running < self.options.slots && slots.kv_reserved + kv <= self.options.kv_tokens
    }

    /// First come, first served: the head of the queue goes first, even when a later,
    /// smaller request would fit (vLLM's default scheduling).
    fn admit_waiting(&self, slots: &mut Slots) {
        while let Some(next) = slots.waiting.front() {
            if !self.fits(slots, next.kv) {
                return;
            }
            let next = slots.waiting.pop_front().expect("front exists");
            slots.running += 1;
            slots.kv_reserved += next.kv;
            if next.admitted.send(()).is_err() {
                // Its client left while it waited.
                slots.running -= 1;
                slots.kv_reserved -= next.kv;
            }
        }
    }

    /// Waits for a slot (and KV room); then looks the prefix up in the prefix cache.
    pub async fn admit(&self, demand: Demand) -> Admission<'_> {
        let kv = self.kv_need(&demand);
        let waiting = {
            let mut slots = self.lock();
            if slots.waiting.is_empty() && self.fits(&slots, kv) {
                slots.running += 1;
                slots.kv_reserved += kv;
                None
            } else {
                let (admitted, wait) = oneshot::channel();
                slots.waiting.push_back(Waiter { kv, admitted });
                Some(wait)
            }
        };
        if let Some(wait) = waiting {
            let mut queued = Queued {
                server: self,
                kv,
                receiver: Some(wait),
            };
            if let Some(receiver) = queued.receiver.as_mut() {
                // The sender stays in the queue until it admits this request.
                let _ = receiver.await;
            }
            // Admitted: the slot is the admission's to free from here on.
            queued.receiver = None;
        }
        let cached = self.prefix_lookup(demand.prefix);
        Admission {
            server: self,
            kv,
            prefill_tokens: demand.prompt_tokens.saturating_sub(cached),
        }
    }

    /// Tokens of the prompt found in the prefix cache (0 on a miss); remembers it.
    fn prefix_lookup(&self, prefix: Option<(u64, u64)>) -> u64 {
        let capacity = self.options.prefix_cache;
        let Some((hash, tokens)) = prefix.filter(|_| capacity > 0) else {
            return 0;
        };
        let mut slots = self.lock();
        let hit = match slots.prefixes.iter().position(|p| *p == hash) {
            Some(at) => {
                slots.prefixes.remove(at);
                true
            }
            None => false,
        };
        slots.prefixes.push_front(hash);
        slots.prefixes.truncate(capacity);
        drop(slots);
        self.prefix_query_tokens
            .fetch_add(tokens, Ordering::Relaxed);
        if hit {
            self.prefix_hits.fetch_add(1, Ordering::Relaxed);
            self.prefix_hit_tokens.fetch_add(tokens, Ordering::Relaxed);
            tokens
        } else {
            self.prefix_misses.fetch_add(1, Ordering::Relaxed);
            0
        }
    }

    /// The prefill time of an admitted request.
    pub fn prefill_time(&self, admission: &Admission<'_>) -> Duration {
        let per_1k = self.options.prefill_per_1k_tokens;
        self.options
            .scaled(per_1k.mul_f64(admission.prefill_tokens as f64 / 1000.0))
    }

    /// (waiting, running, KV-cache use 0..1).
    pub fn load(&self) -> (usize, usize, f64) {
        let slots = self.lock();
        let kv = if self.options.kv_pressure {
            slots.kv_reserved as f64 / self.options.kv_tokens as f64
        } else {
            // Without a KV budget, a running request is taken to fill its slot's share.
            slots.running as f64 / self.options.slots as f64
        };
        (slots.waiting.len(), slots.running, kv.min(1.0))
    }

    /// The ORCA `endpoint-load-metrics` header vLLM sends (TEXT form).
    pub fn orca_header(&self) -> String {
        let (waiting, running, kv) = self.load();
        format!(
            "TEXT named_metrics.kv_cache_usage_perc={kv}, named_metrics.num_requests_waiting={waiting}.0, named_metrics.num_requests_running={running}.0"
        )
    }

    /// `/metrics` in the Prometheus text format, with vLLM's names.
    pub fn metrics_text(&self, model: &str) -> String {
        let (waiting, running, kv) = self.load();
        let labels = format!("{{model_name=\"{model}\"}}");
        let hits = self.prefix_hits.load(Ordering::Relaxed);
        let misses = self.prefix_misses.load(Ordering::Relaxed);
        let mut text = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, series: &[(&str, String)]| {
            text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (labels, value) in series {
                text.push_str(&format!("{name}{labels} {value}\n"));
            }
        };
        metric(
            "vllm:num_requests_waiting",
            "gauge",
            "Number of requests waiting to be processed.",
            &[(&labels, format!("{waiting}.0"))],
        );
        metric(
            "vllm:num_requests_running",
            "gauge",
            "Number of requests in model execution batches.",
            &[(&labels, format!("{running}.0"))],
        );
        metric(
            "vllm:kv_cache_usage_perc",
            "gauge",
            "KV-cache usage. 1 means 100 percent usage.",
            &[(&labels, format!("{kv}"))],
        );
        metric(
            "vllm:prefix_cache_queries_total",
            "counter",
            "Prefix cache queries, in terms of number of queried tokens.",
            &[(
                &labels,
                self.prefix_query_tokens.load(Ordering::Relaxed).to_string(),
            )],
        );
        metric(
            "vllm:prefix_cache_hits_total",
            "counter",
            "Prefix cache hits, in terms of number of cached tokens.",
            &[(
                &labels,
                self.prefix_hit_tokens.load(Ordering::Relaxed).to_string(),
            )],
        );
        metric(
            "vllm:request_success_total",
            "counter",
            "Count of successfully processed requests.",
            &[(&labels, self.finished.load(Ordering::Relaxed).to_string())],
        );
        let hit = format!("{{model_name=\"{model}\",result=\"hit\"}}");
        let miss = format!("{{model_name=\"{model}\",result=\"miss\"}}");
        metric(
            "mock_prefix_cache_requests_total",
            "counter",
            "Requests whose prompt prefix was (hit) or was not (miss) in the prefix cache.",
            &[(&hit, hits.to_string()), (&miss, misses.to_string())],
        );
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demand(prompt: u64, prefix: Option<(u64, u64)>) -> Demand {
        Demand {
            prompt_tokens: prompt,
            max_tokens: 10,
            prefix,
        }
    }

    #[tokio::test]
    async fn slots_queue_first_come_first_served() {
        let server = InferenceServer::new(InferenceOptions::new(1));
        let first = server.admit(demand(10, None)).await;
        let mut second = Box::pin(server.admit(demand(10, None)));
        assert!(futures_poll(&mut second).is_none());
        assert_eq!(server.load().0, 1);
        drop(first);
        let second = futures_poll(&mut second).expect("admitted when the slot freed");
        assert_eq!(server.load(), (0, 1, 1.0));
        drop(second);
        assert_eq!(server.load(), (0, 0, 0.0));
    }

    #[tokio::test]
    async fn kv_pressure_holds_requests_back() {
        let mut options = InferenceOptions::new(8);
        options.kv_pressure = true;
        options.kv_tokens = 100;
        let server = InferenceServer::new(options);
        let big = server.admit(demand(80, None)).await;
        let mut next = Box::pin(server.admit(demand(20, None)));
        assert!(futures_poll(&mut next).is_none());
        assert!((server.load().2 - 0.9).abs() < 1e-9);
        drop(big);
        assert!(futures_poll(&mut next).is_some());
    }

    #[tokio::test]
    async fn prefix_cache_hits_skip_the_prefix() {
        let mut options = InferenceOptions::new(4);
        options.prefix_cache = 2;
        let server = InferenceServer::new(options);
        let miss = server.admit(demand(100, Some((7, 60)))).await;
        assert_eq!(miss.prefill_tokens, 100);
        let hit = server.admit(demand(100, Some((7, 60)))).await;
        assert_eq!(hit.prefill_tokens, 40);
        drop((miss, hit));
        // Two others push it out of a cache of two.
        for other in [8, 9] {
            drop(server.admit(demand(100, Some((other, 60)))).await);
        }
        assert_eq!(
            server
                .admit(demand(100, Some((7, 60))))
                .await
                .prefill_tokens,
            100
        );
        assert!(
            server
                .metrics_text("m")
                .contains("mock_prefix_cache_requests_total{model_name=\"m\",result=\"hit\"} 1\n")
        );
    }

    /// Polls a future once.
    fn futures_poll<F: std::future::Future + Unpin>(future: &mut F) -> Option<F::Output> {
        let waker = std::task::Waker::noop();
        let mut context = std::task::Context::from_waker(waker);
        match std::pin::Pin::new(future).poll(&mut context) {
            std::task::Poll::Ready(output) => Some(output),
            std::task::Poll::Pending => None,
        }
    }
}
