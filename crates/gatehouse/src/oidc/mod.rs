//! OpenID Connect relying party: one [`Provider`] per `[[idp]]`.
//!
//! - `http.rs`: the requests to the provider, over our own hyper and rustls;
//! - the `idtoken` crate: a JWT checked completely (signature with the provider's
//!   JWKS, RS256/ES256/EdDSA only; iss, aud, azp, exp, iat, nonce);
//! - here: discovery (fetched when first needed, kept), the JWKS (kept;
//!   fetched again when a token names an unknown key, at most once per
//!   [`REFETCH_EVERY`]), the authorization code flow with PKCE S256, `state`
//!   and `nonce` (kept server-side, bound to the browser by a cookie, used
//!   once), the code exchanged with `client_secret_basic`.
//!
//! A provider that cannot be asked decides nothing: every caller turns
//! [`Failed::Unreachable`] into a 503 and lets nobody in.

pub mod http;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;

use crate::config::Idp;
pub use http::Unreachable;
use idtoken as token;
pub use idtoken::{Claims, Invalid};

/// The JWKS is fetched again for an unknown `kid` at most this often: a
/// client sending made-up key ids cannot make gatehouse hammer the provider.
pub const REFETCH_EVERY: Duration = Duration::from_secs(10);
/// A started sign-in must come back within this.
pub const PENDING_FOR: Duration = Duration::from_secs(10 * 60);
/// Sign-ins in progress at once, over all browsers (a browser that starts
/// one and never returns costs an entry until [`PENDING_FOR`]).
const MAX_PENDING: usize = 20_000;

/// What the provider's discovery document says.
#[derive(Debug)]
pub struct Metadata {
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub end_session_endpoint: Option<String>,
}

/// One `[[idp]]` at run time.
pub struct Provider {
    pub settings: Idp,
    pub index: u8,
    client: http::Client,
    metadata: Mutex<Option<Arc<Metadata>>>,
    keys: Mutex<(Arc<token::Keys>, Option<Instant>)>,
    /// One fetch of discovery or JWKS at a time.
    fetching: tokio::sync::Mutex<()>,
    pending: Mutex<HashMap<String, Pending>>,
    /// JWKS documents fetched (for tests and `gatehouse doctor`).
    pub jwks_fetches: std::sync::atomic::AtomicU64,
}

/// A sign-in that went to the provider and has not come back.
pub struct Pending {
    pub nonce: String,
    pub verifier: String,
    pub return_to: String,
    /// The host (with port) the browser started on: the redirect URI's.
    pub host: String,
    started: Instant,
}

/// Why a provider's answer signs nobody in.
#[derive(Debug)]
pub enum Failed {
    /// The provider could not be asked (or answered with a server error).
    Unreachable(String),
    /// It answered, and the answer is refused.
    Refused(String),
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failed::Unreachable(w) => write!(f, "provider unreachable: {w}"),
            Failed::Refused(w) => f.write_str(w),
        }
    }
}

impl From<Unreachable> for Failed {
    fn from(u: Unreachable) -> Failed {
        Failed::Unreachable(u.0)
    }
}

/// What the provider's token endpoint gave for a code, checked.
pub struct SignedIn {
    pub claims: Claims,
    /// For RP-initiated logout (`id_token_hint`).
    pub id_token: String,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn random() -> String {
    let mut b = [0u8; 32];
    let _ = getrandom::fill(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// `application/x-www-form-urlencoded` / query component.
pub fn enc(s: &str) -> String {
    websession::form::encode(s)
}

impl Provider {
    pub fn new(settings: Idp, index: u8) -> Result<Provider, String> {
        let client = http::Client::new(settings.ca_file.as_deref(), settings.timeout)?;
        Ok(Provider {
            settings,
            index,
            client,
            metadata: Mutex::new(None),
            keys: Mutex::new((Arc::new(token::Keys::default()), None)),
            fetching: tokio::sync::Mutex::new(()),
            pending: Mutex::new(HashMap::new()),
            jwks_fetches: Default::default(),
        })
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// The discovery document: kept once read; read when first needed.
    pub async fn metadata(&self) -> Result<Arc<Metadata>, Failed> {
        if let Some(m) = self.metadata.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(m);
        }
        let _one = self.fetching.lock().await;
        if let Some(m) = self.metadata.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(m);
        }
        let url = format!("{}/.well-known/openid-configuration", self.settings.issuer.trim_end_matches('/'));
        let doc = self.json(&url).await?;
        let s = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_owned);
        // OpenID Connect Discovery 4.3: the document's issuer is exactly the one asked.
        if s("issuer").as_deref() != Some(self.settings.issuer.as_str()) {
            return Err(Failed::Refused(format!(
                "{url}: its issuer is {:?}, not the configured {:?}",
                s("issuer").unwrap_or_default(),
                self.settings.issuer
            )));
        }
        let need = |k: &str| s(k).ok_or_else(|| Failed::Refused(format!("{url}: no {k}")));
        let m = Arc::new(Metadata {
            authorization_endpoint: need("authorization_endpoint")?,
            token_endpoint: need("token_endpoint")?,
            jwks_uri: need("jwks_uri")?,
            end_session_endpoint: s("end_session_endpoint"),
        });
        *self.metadata.lock().unwrap_or_else(|e| e.into_inner()) = Some(m.clone());
        Ok(m)
    }

    async fn json(&self, url: &str) -> Result<Value, Failed> {
        let (status, body) = self.client.get(url).await?;
        if status.is_server_error() {
            return Err(Failed::Unreachable(format!("{url}: {status}")));
        }
        if !status.is_success() {
            return Err(Failed::Refused(format!("{url}: {status}")));
        }
        serde_json::from_slice(&body).map_err(|e| Failed::Refused(format!("{url}: not JSON: {e}")))
    }

    /// The JWKS as kept, fetched when none is, or (`stale`) when a token
    /// named a key it lacks and the last fetch is older than [`REFETCH_EVERY`].
    async fn keys(&self, stale: bool) -> Result<Arc<token::Keys>, Failed> {
        let fresh_enough = |k: &(Arc<token::Keys>, Option<Instant>)| match k.1 {
            None => false,
            Some(at) => !stale || at.elapsed() < REFETCH_EVERY,
        };
        {
            let k = self.keys.lock().unwrap_or_else(|e| e.into_inner());
            if fresh_enough(&k) {
                return Ok(k.0.clone());
            }
        }
        let meta = self.metadata().await?;
        let _one = self.fetching.lock().await;
        {
            let k = self.keys.lock().unwrap_or_else(|e| e.into_inner());
            if fresh_enough(&k) {
                return Ok(k.0.clone());
            }
        }
        let (status, body) = self.client.get(&meta.jwks_uri).await?;
        self.jwks_fetches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if !status.is_success() {
            return Err(Failed::Unreachable(format!("{}: {status}", meta.jwks_uri)));
        }
        let keys = Arc::new(token::Keys::parse(&body).map_err(|e| Failed::Refused(format!("{}: {e}", meta.jwks_uri)))?);
        tracing::info!(idp = %self.settings.name, keys = keys.len(), "provider's signing keys fetched");
        *self.keys.lock().unwrap_or_else(|e| e.into_inner()) = (keys.clone(), Some(Instant::now()));
        Ok(keys)
    }

    /// Checks a token with the provider's keys; a token naming a key the
    /// kept JWKS lacks makes one new fetch (rate-limited) and one more try.
    pub async fn verify(&self, jwt: &str, expect: &token::Expect<'_>) -> Result<Claims, Failed> {
        // An unreadable token or a refused algorithm costs no fetch.
        token::kid(jwt).map_err(|e| Failed::Refused(e.to_string()))?;
        let keys = self.keys(false).await?;
        match token::check(jwt, &keys, expect) {
            Err(Invalid::UnknownKey(_)) => {
                let keys = self.keys(true).await?;
                token::check(jwt, &keys, expect).map_err(|e| Failed::Refused(e.to_string()))
            }
            other => other.map_err(|e| Failed::Refused(e.to_string())),
        }
    }

    /// A bearer access token: for the configured audience, no nonce.
    pub async fn verify_bearer(&self, jwt: &str) -> Result<Claims, Failed> {
        let audience = self.settings.bearer_audience.as_deref().unwrap_or(&self.settings.client_id);
        let expect = token::Expect {
            issuer: &self.settings.issuer,
            audience,
            client_id: None,
            nonce: None,
            skew: self.settings.clock_skew,
            required: &self.settings.required_claims,
            now: unix_now(),
        };
        self.verify(jwt, &expect).await
    }

    /// Starts a sign-in: the provider's authorization URL for it, and the
    /// state (the browser's cookie holds it, the server the rest).
    pub async fn begin(&self, host: &str, return_to: &str) -> Result<(String, String), Failed> {
        let meta = self.metadata().await?;
        let (state, nonce, verifier) = (random(), random(), random());
        let challenge = {
            use sha2::Digest;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
        };
        {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if p.len() >= MAX_PENDING {
                p.retain(|_, v| v.started.elapsed() < PENDING_FOR);
            }
            if p.len() >= MAX_PENDING {
                return Err(Failed::Unreachable(format!("{MAX_PENDING} sign-ins are already in progress")));
            }
            p.insert(
                state.clone(),
                Pending {
                    nonce: nonce.clone(),
                    verifier,
                    return_to: return_to.to_owned(),
                    host: host.to_owned(),
                    started: Instant::now(),
                },
            );
        }
        let sep = if meta.authorization_endpoint.contains('?') { '&' } else { '?' };
        let url = format!(
            "{}{sep}response_type=code&client_id={}&redirect_uri={}&scope={}&state={state}&nonce={nonce}\
             &code_challenge={challenge}&code_challenge_method=S256",
            meta.authorization_endpoint,
            enc(&self.settings.client_id),
            enc(&self.redirect_uri(host)),
            enc(&self.settings.scopes.join(" ")),
        );
        Ok((url, state))
    }

    pub fn redirect_uri(&self, host: &str) -> String {
        format!("https://{host}{}", self.settings.redirect_path)
    }

    /// The sign-in `state` names, taken (a second use finds nothing).
    pub fn take(&self, state: &str) -> Option<Pending> {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let found = p.remove(state)?;
        (found.started.elapsed() < PENDING_FOR).then_some(found)
    }

    /// Whether a sign-in is pending under `state` (without taking it).
    pub fn has(&self, state: &str) -> bool {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).contains_key(state)
    }

    /// Exchanges the code (client_secret_basic, the PKCE verifier) and
    /// checks the ID token completely.
    pub async fn finish(&self, pending: &Pending, code: &str) -> Result<SignedIn, Failed> {
        let meta = self.metadata().await?;
        // RFC 6749 2.3.1: each form-urlencoded before base64.
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            enc(&self.settings.client_id),
            enc(&self.settings.client_secret.0)
        ));
        let form = format!(
            "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={}",
            enc(code),
            enc(&self.redirect_uri(&pending.host)),
            enc(&pending.verifier)
        );
        let (status, body) = self.client.post_form(&meta.token_endpoint, Some(&format!("Basic {basic}")), form).await?;
        if status.is_server_error() {
            return Err(Failed::Unreachable(format!("token endpoint: {status}")));
        }
        let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if !status.is_success() {
            let error = answer.get("error").and_then(Value::as_str).unwrap_or("?");
            let words: String = error.chars().filter(|c| c.is_ascii_graphic()).take(60).collect();
            return Err(Failed::Refused(format!("the token endpoint refused the code: {status} {words}")));
        }
        let id_token = answer
            .get("id_token")
            .and_then(Value::as_str)
            .ok_or_else(|| Failed::Refused("the token endpoint sent no id_token".into()))?
            .to_owned();
        let expect = token::Expect {
            issuer: &self.settings.issuer,
            audience: &self.settings.client_id,
            client_id: Some(&self.settings.client_id),
            nonce: Some(&pending.nonce),
            skew: self.settings.clock_skew,
            required: &self.settings.required_claims,
            now: unix_now(),
        };
        let claims = self.verify(&id_token, &expect).await?;
        Ok(SignedIn { claims, id_token })
    }

    /// Where to send the browser to end its session at the provider, if it
    /// offers RP-initiated logout (and its discovery document is known).
    pub fn end_session(&self, id_token: &str, host: &str) -> Option<String> {
        let meta = self.metadata.lock().unwrap_or_else(|e| e.into_inner()).clone()?;
        let end = meta.end_session_endpoint.as_deref()?;
        let sep = if end.contains('?') { '&' } else { '?' };
        Some(format!(
            "{end}{sep}id_token_hint={}&post_logout_redirect_uri={}&client_id={}",
            enc(id_token),
            enc(&format!("https://{host}{}", self.settings.post_logout_path)),
            enc(&self.settings.client_id),
        ))
    }
}
