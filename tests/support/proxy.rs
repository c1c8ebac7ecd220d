//! `TestProxy`: Junction in-process, from config text, on OS-chosen ports.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use junction::balance::SplitMix;
use junction::server::Gateway;

pub struct TestProxy {
    toml: String,
    seed: u64,
}

pub struct RunningProxy {
    pub gateway: Arc<Gateway>,
}

impl TestProxy {
    pub fn from_toml(toml: &str) -> Self {
        TestProxy {
            toml: toml.into(),
            seed: 7,
        }
    }

    /// Seed of the random choices (weighted random, p2c), for exact tests.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    pub async fn start(self) -> RunningProxy {
        let gateway = Gateway::from_str(
            &self.toml,
            Path::new("."),
            Arc::new(SplitMix::with_seed(self.seed)),
        )
        .unwrap_or_else(|errors| panic!("test config is invalid:\n{errors}"));
        gateway.start().await.expect("start gateway");
        RunningProxy { gateway }
    }
}

impl RunningProxy {
    /// Junction from a config file, so that a reload re-reads it.
    pub async fn from_file(path: &Path) -> RunningProxy {
        let gateway = Gateway::from_file(path.to_path_buf(), Arc::new(SplitMix::with_seed(7)))
            .unwrap_or_else(|errors| panic!("invalid config:\n{errors}"));
        gateway.start().await.expect("start gateway");
        RunningProxy { gateway }
    }

    /// The actual address of a listener.
    pub fn addr(&self, listener: &str) -> SocketAddr {
        self.gateway
            .listener_addr(listener)
            .expect("listener is running")
    }

    /// `http://ADDR{path}` on the listener named "public".
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr("public"))
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!(
            "http://{}{path}",
            self.gateway.admin_addr().expect("admin is running")
        )
    }

    /// `POST /api/reload` on the admin listener, as curl or a script sends it, with the
    /// admin token the running config has (the config must set one).
    pub async fn reload(&self) -> reqwest::Response {
        let token = self.gateway.plan().admin_token.clone();
        let token = token.expect("POST /api/reload needs [admin] token_file or token_env");
        super::client()
            .post(self.admin_url("/api/reload"))
            .bearer_auth(&*token)
            .send()
            .await
            .expect("admin answers")
    }

    /// The text of `GET /metrics` on the admin listener, which must answer 200.
    pub async fn metrics_text(&self) -> String {
        let reply = super::client()
            .get(self.admin_url("/metrics"))
            .send()
            .await
            .expect("metrics answer");
        assert_eq!(reply.status(), 200, "GET /metrics");
        reply.text().await.expect("metrics text")
    }

    /// The JSON body of `GET {path}` on the admin listener.
    pub async fn admin_json(&self, path: &str) -> serde_json::Value {
        self.admin_status_json(path).await.1
    }

    /// The status and JSON body of `GET {path}` on the admin listener.
    pub async fn admin_status_json(&self, path: &str) -> (u16, serde_json::Value) {
        let reply = super::client()
            .get(self.admin_url(path))
            .send()
            .await
            .expect("admin answer");
        let status = reply.status().as_u16();
        (status, reply.json().await.expect("admin JSON"))
    }
}
