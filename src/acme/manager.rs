//! One `acme` section at work: reuse the stored certificate while it is good, otherwise
//! order one (account, order, HTTP-01 answers, CSR, download) under the storage lock,
//! store it, publish it; then sleep until two thirds of its lifetime and renew (or take
//! what another process sharing the storage renewed), retrying with backoff.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use instant_acme::{
    Account, AccountBuilder, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder,
    OrderStatus, RetryPolicy,
};
use tokio::task::JoinHandle;

use super::http01::Pending;
use super::store::{Storage, StoredAccount};
use super::tls_alpn::{AlpnPending, TlsAlpnAnswers};
use super::{AcmeError, AcmeResolver, AcmeSettings, Challenge, Http01Answers, Issued, Published};

/// First wait after a failed attempt; it doubles up to `RETRY_MAX`.
const RETRY_FIRST: Duration = Duration::from_secs(30);
const RETRY_MAX: Duration = Duration::from_secs(3600);
/// Longest single sleep before renewal: the wall clock is read again after it, so a
/// suspended machine or a clock step does not push renewal past expiry.
const SLEEP_MAX: Duration = Duration::from_secs(3600);

/// How `ensure` came by the certificate it published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The stored one: it names every domain and is not yet due for renewal.
    Reused,
    /// A new one, ordered from the ACME server.
    Obtained,
}

/// The certificate of one `acme` section, from first issuance to each renewal.
pub struct Acme {
    settings: AcmeSettings,
    storage: Storage,
    answers: Arc<Http01Answers>,
    /// This section's TLS-ALPN-01 certificates, served by its resolver.
    alpn: Arc<TlsAlpnAnswers>,
    published: Arc<Published>,
    /// Loaded or created on first use: a restart that reuses its stored certificate
    /// does not talk to the ACME server at all.
    account: tokio::sync::Mutex<Option<Account>>,
}

impl Acme {
    /// `answers` is the table the listeners consult for HTTP-01
    /// (`Gateway::acme_answers`).
    pub fn new(settings: AcmeSettings, answers: Arc<Http01Answers>) -> Arc<Self> {
        Arc::new(Self {
            storage: Storage::new(&settings.storage, &settings.domains),
            settings,
            answers,
            alpn: TlsAlpnAnswers::new(),
            published: Published::new(),
            account: tokio::sync::Mutex::new(None),
        })
    }

    pub fn published(&self) -> &Arc<Published> {
        &self.published
    }

    /// The rustls resolver for the listener that serves these domains: the published
    /// certificate, and TLS-ALPN-01 challenge certificates while an order needs them.
    pub fn resolver(&self) -> AcmeResolver {
        AcmeResolver::new(self.published.clone(), self.alpn.clone())
    }

    pub fn settings(&self) -> &AcmeSettings {
        &self.settings
    }

    /// Publishes a certificate: the stored one if it is good, else a new one. The
    /// storage lock is taken before ordering, and what is stored looked at again under
    /// it: another process or listener sharing `storage` may have just stored one.
    pub async fn ensure(&self) -> Result<Outcome, AcmeError> {
        if self.publish_stored() {
            return Ok(Outcome::Reused);
        }
        let _lock = self.storage.lock().await?;
        if self.publish_stored() {
            return Ok(Outcome::Reused);
        }
        self.order().await?;
        Ok(Outcome::Obtained)
    }

    /// Publishes the stored certificate if it names every domain and is not yet due
    /// for renewal (and is not the one already published).
    fn publish_stored(&self) -> bool {
        let Some(stored) = self.stored() else {
            return false;
        };
        if !stored.covers(&self.settings.domains) || SystemTime::now() >= stored.renew_at() {
            return false;
        }
        let same = self
            .published
            .current()
            .is_some_and(|current| current.serial == stored.serial);
        if !same {
            tracing::info!(domains = ?self.settings.domains, serial = %stored.serial, "acme: reusing the stored certificate");
            self.published.publish(Arc::new(stored));
        }
        true
    }

    /// Runs `ensure`, then renews whenever due, until the task is aborted.
    pub fn spawn(self: &Arc<Self>) -> JoinHandle<()> {
        let acme = self.clone();
        tokio::spawn(async move { acme.run().await })
    }

    async fn run(&self) {
        let mut retry = RETRY_FIRST;
        loop {
            let result = match self.published.current() {
                None => self.ensure().await.map(drop),
                Some(current) => {
                    sleep_until(current.renew_at()).await;
                    // A process sharing the storage may have renewed it already.
                    self.ensure().await.map(drop)
                }
            };
            match result {
                Ok(()) => retry = RETRY_FIRST,
                Err(error) => {
                    tracing::warn!(domains = ?self.settings.domains, %error, retry_in = ?retry, "acme: no certificate this time");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// The stored certificate, if there is one that parses; a broken one is logged and
    /// ordered anew rather than stopping issuance.
    fn stored(&self) -> Option<Issued> {
        let (chain, key) = match self.storage.load_certificate() {
            Ok(found) => found?,
            Err(error) => {
                tracing::warn!(%error, "acme: cannot read the stored certificate");
                return None;
            }
        };
        Issued::from_pem(chain, key)
            .inspect_err(|error| tracing::warn!(%error, "acme: the stored certificate is unusable"))
            .ok()
    }

    /// Orders a certificate for the domains, stores and publishes it, holding the
    /// storage lock.
    pub async fn obtain(&self) -> Result<Arc<Issued>, AcmeError> {
        let _lock = self.storage.lock().await?;
        self.order().await
    }

    /// `obtain` under a lock already held.
    async fn order(&self) -> Result<Arc<Issued>, AcmeError> {
        // Logged under the lock: another process sharing the storage waits from here.
        tracing::info!(domains = ?self.settings.domains, "acme: ordering a certificate");
        let account = self.account().await?;
        let identifiers: Vec<Identifier> = self
            .settings
            .domains
            .iter()
            .map(|d| Identifier::Dns(d.clone()))
            .collect();
        let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
        // Answers are served until the order is ready or has failed, then withdrawn.
        let mut answering = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization?;
            let identifier = authorization.identifier().to_string();
            match authorization.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                status => {
                    return Err(AcmeError::Authorization {
                        identifier,
                        status: format!("{status:?}"),
                    });
                }
            }
            let kind = match self.settings.challenge {
                Challenge::Http01 => ChallengeType::Http01,
                Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
            };
            let no_challenge = AcmeError::NoChallenge {
                challenge: self.settings.challenge.name(),
                identifier: identifier.clone(),
            };
            let mut challenge = authorization.challenge(kind).ok_or(no_challenge)?;
            let key_authorization = challenge.key_authorization();
            answering.push(match self.settings.challenge {
                Challenge::Http01 => Answering::Http01 {
                    _token: self
                        .answers
                        .insert(&challenge.token, key_authorization.as_str()),
                },
                Challenge::TlsAlpn01 => Answering::TlsAlpn01 {
                    _certificate: self
                        .alpn
                        .insert(&identifier, key_authorization.digest().as_ref())?,
                },
            });
            challenge.set_ready().await?;
        }
        let status = order.poll_ready(&RetryPolicy::default()).await?;
        drop(answering);
        if status != OrderStatus::Ready {
            let problem = order.state().error.as_ref().map(|p| p.to_string());
            return Err(AcmeError::Order(format!(
                "{status:?}: {}",
                problem.unwrap_or_default()
            )));
        }
        let key_pem = order.finalize().await?;
        let chain_pem = order.poll_certificate(&RetryPolicy::default()).await?;
        let issued = Issued::from_pem(chain_pem, key_pem)?;
        if !issued.covers(&self.settings.domains) {
            return Err(AcmeError::BadCertificate(format!(
                "issued for {:?}, not all of {:?}",
                issued.names, self.settings.domains
            )));
        }
        self.storage
            .save_certificate(&issued.chain_pem, &issued.key_pem)?;
        tracing::info!(domains = ?self.settings.domains, serial = %issued.serial, "acme: certificate obtained");
        let issued = Arc::new(issued);
        self.published.publish(issued.clone());
        Ok(issued)
    }

    /// The ACME account: the stored one for this directory, or a new one (stored).
    async fn account(&self) -> Result<Account, AcmeError> {
        let mut slot = self.account.lock().await;
        if let Some(account) = &*slot {
            return Ok(account.clone());
        }
        let directory = &self.settings.directory;
        let account = match self.storage.load_account(directory)? {
            Some(stored) => self.builder()?.from_credentials(stored.credentials).await?,
            None => {
                let contact: Vec<String> = self
                    .settings
                    .email
                    .iter()
                    .map(|e| format!("mailto:{e}"))
                    .collect();
                let contact_refs: Vec<&str> = contact.iter().map(String::as_str).collect();
                let new = NewAccount {
                    contact: &contact_refs,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                };
                let (account, credentials) = self
                    .builder()?
                    .create(&new, directory.clone(), None)
                    .await?;
                self.storage.save_account(&StoredAccount {
                    directory: directory.clone(),
                    contact,
                    credentials,
                })?;
                account
            }
        };
        *slot = Some(account.clone());
        Ok(account)
    }

    fn builder(&self) -> Result<AccountBuilder, AcmeError> {
        Ok(match &self.settings.ca {
            Some(ca) => Account::builder_with_root(ca)?,
            None => Account::builder()?,
        })
    }
}

/// An answer served while its order is in flight; dropping it withdraws it.
#[derive(Debug)]
enum Answering {
    Http01 { _token: Pending },
    TlsAlpn01 { _certificate: AlpnPending },
}

async fn sleep_until(due: SystemTime) {
    while let Ok(left) = due.duration_since(SystemTime::now()) {
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(left.min(SLEEP_MAX)).await;
    }
}
