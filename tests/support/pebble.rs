//! `Pebble`: Let's Encrypt's ACME test server (Debian package `pebble`, installed by
//! scripts/test) started on free loopback ports, with its own HTTPS certificate made
//! here, and a tiny DNS responder that points every name at 127.0.0.1 so its HTTP-01
//! checks reach the listener under test.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::UdpSocket;
use tokio::process::{Child, Command};

pub struct Pebble {
    child: Child,
    dir: tempfile::TempDir,
    /// `https://127.0.0.1:PORT/dir`.
    pub directory: String,
    management: SocketAddr,
    dns: tokio::task::JoinHandle<()>,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.dns.abort();
    }
}

/// A port free on 127.0.0.1 right now (pebble's config needs one written down).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

impl Pebble {
    /// Starts pebble validating HTTP-01 on `http_port` and TLS-ALPN-01 on `tls_port` of
    /// 127.0.0.1, issuing certificates valid for `validity` (pebble's default, 5 years,
    /// when `None`).
    pub async fn start(http_port: u16, tls_port: u16, validity: Option<Duration>) -> Pebble {
        let dir = tempfile::tempdir().expect("tempdir");
        // The HTTPS certificate of pebble's own API: a CA of ours, a leaf for 127.0.0.1.
        let ca_key = KeyPair::generate().expect("key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("ca");
        let leaf_key = KeyPair::generate().expect("key");
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()])
            .expect("params")
            .signed_by(&leaf_key, &ca, &ca_key)
            .expect("leaf");
        std::fs::write(dir.path().join("api-ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("api-cert.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.path().join("api-key.pem"), leaf_key.serialize_pem()).unwrap();

        let dns_socket = UdpSocket::bind("127.0.0.1:0").await.expect("dns bind");
        let dns_addr = dns_socket.local_addr().unwrap();
        let dns = tokio::spawn(answer_dns(dns_socket));

        let (api, management) = (free_port(), free_port());
        let mut config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{api}"),
                "managementListenAddress": format!("127.0.0.1:{management}"),
                "certificate": dir.path().join("api-cert.pem"),
                "privateKey": dir.path().join("api-key.pem"),
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
            }
        });
        if let Some(validity) = validity {
            config["pebble"]["certificateValidityPeriod"] = validity.as_secs().into();
        }
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let mut child = Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &dns_addr.to_string(), "-strict=false"])
            // Validate at once, never reject a good nonce, never reuse an authorization:
            // each order is checked over HTTP-01 again.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn pebble (Debian package `pebble`, installed by scripts/test)");
        let stdout = child.stdout.take().unwrap();
        let (ready, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("Listening on") || line.contains("directory available") {
                    let _ = ready.send(());
                }
            }
        });
        let directory = format!("https://127.0.0.1:{api}/dir");
        let pebble = Pebble {
            child,
            dir,
            directory,
            management: SocketAddr::from(([127, 0, 0, 1], management)),
            dns,
        };
        tokio::time::timeout(Duration::from_secs(20), ready_rx.recv())
            .await
            .expect("pebble said it listens")
            .expect("pebble exited before listening");
        // It logs before it accepts: ask until the directory answers.
        let client = pebble.client();
        for _ in 0..100 {
            if let Ok(response) = client.get(&pebble.directory).send().await
                && response.status().is_success()
            {
                return pebble;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("pebble's directory never answered");
    }

    /// The root of pebble's HTTPS API (not of what it issues).
    pub fn api_ca(&self) -> PathBuf {
        self.dir.path().join("api-ca.pem")
    }

    fn client(&self) -> reqwest::Client {
        let ca = std::fs::read(self.api_ca()).unwrap();
        reqwest::Client::builder()
            .no_proxy()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .build()
            .unwrap()
    }

    /// The root pebble issues under (made fresh at each start), PEM.
    pub async fn issuer_root(&self) -> String {
        let url = format!("https://{}/roots/0", self.management);
        let response = self.client().get(url).send().await.expect("roots");
        assert!(response.status().is_success());
        response.text().await.unwrap()
    }

    pub async fn stop(mut self) {
        self.child.kill().await.expect("kill pebble");
    }
}

/// Answers every DNS query: `A` with 127.0.0.1, anything else with no records.
async fn answer_dns(socket: UdpSocket) {
    let mut buf = [0u8; 512];
    loop {
        let Ok((len, from)) = socket.recv_from(&mut buf).await else {
            return;
        };
        if let Some(reply) = dns_reply(&buf[..len]) {
            let _ = socket.send_to(&reply, from).await;
        }
    }
}

fn dns_reply(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 || u16::from_be_bytes([query[4], query[5]]) != 1 {
        return None;
    }
    // The one question: labels up to the root, then type and class.
    let mut end = 12;
    while *query.get(end)? != 0 {
        end += 1 + usize::from(query[end]);
    }
    let question = &query[12..end + 5];
    let qtype = u16::from_be_bytes([question[question.len() - 4], question[question.len() - 3]]);
    let answers: u16 = (qtype == 1).into();
    let mut reply = Vec::with_capacity(64);
    reply.extend_from_slice(&query[..2]);
    // QR, the opcode and RD as asked, RA; NOERROR.
    reply.extend_from_slice(&[0x80 | (query[2] & 0x79), 0x80]);
    reply.extend_from_slice(&[0, 1, 0, answers as u8, 0, 0, 0, 0]);
    reply.extend_from_slice(question);
    if answers == 1 {
        // Name by pointer to the question, A, IN, TTL 0, 4 bytes: 127.0.0.1.
        reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 127, 0, 0, 1]);
    }
    Some(reply)
}
