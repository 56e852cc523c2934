//! The process's counters, in Prometheus' format (the official
//! `prometheus-client` crate), served on `[admin]`'s `/metrics`.
//!
//! One [`Metrics`] per process, made at start and kept across reloads. No
//! stage reaches it: each gets the small handle for what it counts
//! ([`Requests`] for the access record, [`SignIns`] for authentication,
//! [`Backends`] for the send stage, [`Connections`] for the listeners, the
//! [`Kdc`] observer for kcd). What is a state rather than an event (the
//! credential cache, idle backend connections, certificate expiry, busy
//! winbind helpers) is read at scrape time into a [`Live`] by whoever can see
//! it, and written with the rest.
//!
//! Labels come from bounded sets only: site, listener and backend names from
//! the configuration, fixed words (status class, scheme, outcome, cause, KDC
//! request kind) and kcd's Kerberos error names. Never a user name, a path or
//! anything else a client chooses.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The site label of a request that reached no site (refused before routing,
/// or matching none).
pub const NO_SITE: &str = "-";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SiteLabels {
    site: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    site: String,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignInLabels {
    scheme: &'static str,
    outcome: Outcome,
    cause: Cause,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SchemeLabels {
    scheme: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KdcErrorLabels {
    kind: &'static str,
    code: &'static str,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum Outcome {
    Success,
    Refused,
    Unavailable,
}

/// Why a sign-in did not pass, in the classes an operator acts on.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Cause {
    /// Passed (the `success` outcome's cause).
    None,
    /// Wrong password or no such user (one answer for both), or an account
    /// the domain refuses (disabled, expired password).
    WrongPassword,
    /// gatehouse's extranet lockout stopped the attempt before the domain.
    LockedOut,
    /// A Kerberos authenticator seen before.
    Replay,
    /// Extended Protection: the client's channel bindings are not this
    /// connection's.
    ChannelBinding,
    /// Signed in, and refused by the site's `allow`/`deny` (or the domain's
    /// standing of the account).
    DeniedByRule,
    /// A malformed or out-of-order message, a ticket MIT refuses for another
    /// reason, a forged cookie.
    BadMessage,
    /// The domain could not be asked (the `unavailable` outcome).
    Unavailable,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Refused => "refused",
            Outcome::Unavailable => "unavailable",
        }
    }
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::None => "none",
            Cause::WrongPassword => "wrong_password",
            Cause::LockedOut => "locked_out",
            Cause::Replay => "replay",
            Cause::ChannelBinding => "bad_channel_binding",
            Cause::DeniedByRule => "denied_by_rule",
            Cause::BadMessage => "bad_message",
            Cause::Unavailable => "domain_unavailable",
        }
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

impl EncodeLabelValue for Cause {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

/// Every family, registered once.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    edge_latency: Family<SiteLabels, Histogram>,
    backend_latency: Family<SiteLabels, Histogram>,
    backend_connect_failures: Family<SiteLabels, Counter>,
    bytes_in: Family<SiteLabels, Counter>,
    bytes_out: Family<SiteLabels, Counter>,
    signins: Family<SignInLabels, Counter>,
    lockout_hits: Family<SchemeLabels, Counter>,
    kdc_requests: Family<KindLabels, Counter>,
    kdc_latency: Family<KindLabels, Histogram>,
    kdc_errors: Family<KdcErrorLabels, Counter>,
    open_connections: Family<ListenerLabels, Gauge>,
    live: Arc<LiveCollector>,
    /// One scrape at a time: the live values are set, then written.
    scrape: Mutex<()>,
    /// Each site's series, looked up by the site's name without building a
    /// label (a `String`) and hashing it into each family on every request.
    sites: std::sync::RwLock<std::collections::HashMap<String, Arc<SiteSeries>>>,
}

/// One site's per-request series, each made in its family the first time it
/// is used (so a scrape shows what it did before: no series at zero).
#[derive(Default)]
struct SiteSeries {
    /// By status class, in `class_index`'s order.
    requests: [OnceLock<Counter>; 6],
    edge_latency: OnceLock<Histogram>,
    backend_latency: OnceLock<Histogram>,
    bytes_in: OnceLock<Counter>,
    bytes_out: OnceLock<Counter>,
}

const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

fn class_index(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        500..=599 => 4,
        // 0: an HTTP/2 stream reset (HTTP_1_1_REQUIRED).
        _ => 5,
    }
}

impl Metrics {
    /// The site's series (made on its first request). Sites are few and
    /// come from the configuration, so the map stays as small as the
    /// families' own label sets.
    fn site(&self, site: &str) -> Arc<SiteSeries> {
        if let Some(found) = self.sites.read().unwrap_or_else(|e| e.into_inner()).get(site) {
            return found.clone();
        }
        let mut sites = self.sites.write().unwrap_or_else(|e| e.into_inner());
        sites.entry(site.to_owned()).or_default().clone()
    }
}

impl SiteSeries {
    fn labels(site: &str) -> SiteLabels {
        SiteLabels { site: site.to_owned() }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

fn edge_buckets() -> Histogram {
    // 5 ms to about 41 s: a cached request to a long MAPI poll's head.
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

fn kdc_buckets() -> Histogram {
    // 1 ms to about 8 s: a loopback KDC to one timing out behind a WAN.
    Histogram::new(exponential_buckets(0.001, 2.0, 14))
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("gatehouse");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("requests", "Requests answered, by site and status class (1xx..5xx)", requests.clone());
        let edge_latency = Family::<SiteLabels, Histogram>::new_with_constructor(edge_buckets as fn() -> Histogram);
        registry.register(
            "request_duration_seconds",
            "Time from a request's head to the end of its response, by site",
            edge_latency.clone(),
        );
        let backend_latency = Family::<SiteLabels, Histogram>::new_with_constructor(edge_buckets as fn() -> Histogram);
        registry.register(
            "backend_response_seconds",
            "Time from sending to a backend to its response head (connecting and delegation included), by site",
            backend_latency.clone(),
        );
        let backend_connect_failures = Family::<SiteLabels, Counter>::default();
        registry.register(
            "backend_connect_failures",
            "Backend connections that could not be made (TCP, TLS or HTTP handshake), by site",
            backend_connect_failures.clone(),
        );
        let bytes_in = Family::<SiteLabels, Counter>::default();
        registry.register("received_bytes", "Request body bytes received from clients, by site", bytes_in.clone());
        let bytes_out = Family::<SiteLabels, Counter>::default();
        registry.register("sent_bytes", "Response body bytes sent to clients, by site", bytes_out.clone());
        let signins = Family::<SignInLabels, Counter>::default();
        registry.register(
            "signins",
            "Sign-ins by scheme, outcome and cause (handshakes that ended; challenge legs are not counted)",
            signins.clone(),
        );
        let lockout_hits = Family::<SchemeLabels, Counter>::default();
        registry.register(
            "lockout_hits",
            "Attempts the extranet lockout stopped before the domain was asked, by scheme",
            lockout_hits.clone(),
        );
        let kdc_requests = Family::<KindLabels, Counter>::default();
        registry.register(
            "kdc_requests",
            "Requests to the KDC by kind (as, s4u2self, s4u2proxy, change_password)",
            kdc_requests.clone(),
        );
        let kdc_latency = Family::<KindLabels, Histogram>::new_with_constructor(kdc_buckets as fn() -> Histogram);
        registry.register("kdc_request_duration_seconds", "KDC request time by kind", kdc_latency.clone());
        let kdc_errors = Family::<KdcErrorLabels, Counter>::default();
        registry.register(
            "kdc_errors",
            "KDC requests that failed, by kind and Kerberos error (KDC_ERR_BADOPTION, KRB5_KDC_UNREACH, ...)",
            kdc_errors.clone(),
        );
        let open_connections = Family::<ListenerLabels, Gauge>::default();
        registry.register("open_connections", "Client connections open now, by listener", open_connections.clone());
        let live = Arc::new(LiveCollector::default());
        registry.register_collector(Box::new(live.clone()));
        Metrics {
            registry,
            requests,
            edge_latency,
            backend_latency,
            backend_connect_failures,
            bytes_in,
            bytes_out,
            signins,
            lockout_hits,
            kdc_requests,
            kdc_latency,
            kdc_errors,
            open_connections,
            live,
            scrape: Mutex::new(()),
            sites: Default::default(),
        }
    }

    /// The text a scrape gets, with `live` as the states' values.
    pub fn scrape(&self, live: Live) -> String {
        let _one = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        *self.live.now.lock().unwrap_or_else(|e| e.into_inner()) = live;
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            tracing::error!("metrics: cannot encode a scrape");
        }
        out
    }

    /// [`Metrics::scrape`]'s OpenMetrics text in Prometheus' older text
    /// format (0.0.4), for clients that do not ask for OpenMetrics (promtool,
    /// curl, older scrapers): a counter's `# HELP`/`# TYPE` name carries its
    /// `_total`, and `# EOF` goes. The samples are the same.
    pub fn prometheus_text(openmetrics: &str) -> String {
        let mut counters = std::collections::HashSet::new();
        for line in openmetrics.lines() {
            if let Some(name) = line.strip_prefix("# TYPE ").and_then(|l| l.strip_suffix(" counter")) {
                counters.insert(name.to_owned());
            }
        }
        let mut out = String::with_capacity(openmetrics.len());
        for line in openmetrics.lines() {
            if line == "# EOF" || line.starts_with("# UNIT ") {
                continue;
            }
            let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
                let rest = line.strip_prefix(p)?;
                let (name, tail) = rest.split_once(' ')?;
                counters.contains(name).then(|| format!("{p}{name}_total {tail}"))
            });
            out.push_str(renamed.as_deref().unwrap_or(line));
            out.push('\n');
        }
        out
    }

    pub fn requests(self: &Arc<Self>) -> Requests {
        Requests(self.clone())
    }

    pub fn signins(self: &Arc<Self>) -> SignIns {
        SignIns(self.clone())
    }

    pub fn backends(self: &Arc<Self>) -> Backends {
        Backends(self.clone())
    }

    pub fn connections(self: &Arc<Self>) -> Connections {
        Connections(self.clone())
    }

    pub fn kdc(self: &Arc<Self>) -> Arc<dyn kcd::KdcObserver> {
        Arc::new(Kdc(self.clone()))
    }
}

/// The access record's handle: one request's site, status, time and bytes.
#[derive(Clone)]
pub struct Requests(Arc<Metrics>);

impl Requests {
    pub fn finished(&self, site: Option<&str>, status: u16, took: Duration, bytes_in: u64, bytes_out: u64) {
        let m = &self.0;
        let name = site.unwrap_or(NO_SITE);
        let series = m.site(name);
        let class = class_index(status);
        series.requests[class]
            .get_or_init(|| {
                m.requests.get_or_create(&RequestLabels { site: name.to_owned(), class: CLASSES[class] }).clone()
            })
            .inc();
        series
            .edge_latency
            .get_or_init(|| m.edge_latency.get_or_create(&SiteSeries::labels(name)).clone())
            .observe(took.as_secs_f64());
        if bytes_in > 0 {
            series
                .bytes_in
                .get_or_init(|| m.bytes_in.get_or_create(&SiteSeries::labels(name)).clone())
                .inc_by(bytes_in);
        }
        if bytes_out > 0 {
            series
                .bytes_out
                .get_or_init(|| m.bytes_out.get_or_create(&SiteSeries::labels(name)).clone())
                .inc_by(bytes_out);
        }
    }
}

/// The authentication stages' handle.
#[derive(Clone)]
pub struct SignIns(Arc<Metrics>);

impl SignIns {
    pub fn passed(&self, scheme: &'static str) {
        self.count(scheme, Outcome::Success, Cause::None);
    }

    pub fn refused(&self, scheme: &'static str, cause: Cause) {
        if cause == Cause::LockedOut {
            self.0.lockout_hits.get_or_create(&SchemeLabels { scheme }).inc();
        }
        let outcome = if cause == Cause::Unavailable { Outcome::Unavailable } else { Outcome::Refused };
        self.count(scheme, outcome, cause);
    }

    fn count(&self, scheme: &'static str, outcome: Outcome, cause: Cause) {
        self.0.signins.get_or_create(&SignInLabels { scheme, outcome, cause }).inc();
    }
}

/// The send stage's handle.
#[derive(Clone)]
pub struct Backends(Arc<Metrics>);

impl Backends {
    pub fn answered(&self, site: &str, took: Duration) {
        let m = &self.0;
        let series = m.site(site);
        series
            .backend_latency
            .get_or_init(|| m.backend_latency.get_or_create(&SiteSeries::labels(site)).clone())
            .observe(took.as_secs_f64());
    }

    pub fn connect_failed(&self, site: &str) {
        self.0.backend_connect_failures.get_or_create(&SiteLabels { site: site.to_owned() }).inc();
    }
}

/// The listeners' handle: a connection counts as open while its guard lives.
#[derive(Clone)]
pub struct Connections(Arc<Metrics>);

impl Connections {
    pub fn open(&self, listener: &str) -> OpenConnection {
        let gauge = self.0.open_connections.get_or_create(&ListenerLabels { listener: listener.to_owned() }).clone();
        gauge.inc();
        OpenConnection(gauge)
    }
}

/// Counted off when dropped, however the connection ends.
pub struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// kcd's observer.
struct Kdc(Arc<Metrics>);

impl kcd::KdcObserver for Kdc {
    fn kdc(&self, kind: kcd::KdcRequest, took: Duration, error: Option<&'static str>) {
        let kind = kind.as_str();
        let m = &self.0;
        m.kdc_requests.get_or_create(&KindLabels { kind }).inc();
        m.kdc_latency.get_or_create(&KindLabels { kind }).observe(took.as_secs_f64());
        if let Some(code) = error {
            m.kdc_errors.get_or_create(&KdcErrorLabels { kind, code }).inc();
        }
    }
}

/// The last Kerberos failures of delegation, explained as `gatehouse
/// doctor` explains them, for the status page. A few, newest first: the
/// page shows what is wrong now, the log keeps the history.
#[derive(Default)]
pub struct Problems(Mutex<std::collections::VecDeque<Problem>>);

#[derive(Clone, Debug)]
pub struct Problem {
    pub at: std::time::SystemTime,
    pub site: String,
    /// kcd's message (`S4U2Proxy (ticket for the backend): KDC_ERR_BADOPTION ...`).
    pub error: String,
    /// Doctor's explanation, when kcd has one: the code, its cause, the fixes.
    pub explained: Option<kcd::Explanation>,
}

const PROBLEMS_KEPT: usize = 8;

impl Problems {
    pub fn record(&self, problem: Problem) {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        kept.push_front(problem);
        kept.truncate(PROBLEMS_KEPT);
    }

    pub fn recent(&self) -> Vec<Problem> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }
}

/// States read at scrape time.
#[derive(Debug, Default, Clone)]
pub struct Live {
    /// The delegating account's credential cache: entries, hits, evictions.
    pub credential_cache: Option<(u64, u64, u64)>,
    /// Idle pooled connections by backend origin.
    pub backend_pool_idle: Vec<(String, u64)>,
    /// (listener, certificate's first name, seconds until it expires; negative once expired).
    pub certificate_expiry: Vec<(String, String, i64)>,
    /// Winbind helpers busy now, and how many may run.
    pub winbind_helpers: Option<(u64, u64)>,
    /// Browser sessions held (the sign-in page's).
    pub sessions: u64,
    /// Whether `/readyz` would say ready (1) or not (0).
    pub ready: bool,
}

#[derive(Debug, Default)]
struct LiveCollector {
    now: Mutex<Live>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertificateLabels {
    listener: String,
    name: String,
}

impl prometheus_client::collector::Collector for LiveCollector {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let live = self.now.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let gauge = |encoder: &mut prometheus_client::encoding::DescriptorEncoder, name, help, v: i64| {
            let g = ConstGauge::new(v);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
        };
        let counter = |encoder: &mut prometheus_client::encoding::DescriptorEncoder, name, help, v: u64| {
            let c = ConstCounter::new(v);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)
        };
        gauge(&mut encoder, "ready", "1 when /readyz answers 200", live.ready as i64)?;
        gauge(&mut encoder, "sessions", "Browser sessions held by the sign-in page", live.sessions as i64)?;
        if let Some((entries, hits, evictions)) = live.credential_cache {
            gauge(&mut encoder, "credential_cache_entries", "Users' Kerberos credentials held", entries as i64)?;
            counter(&mut encoder, "credential_cache_hits", "Delegations served from a held credential", hits)?;
            counter(
                &mut encoder,
                "credential_cache_evictions",
                "Credentials dropped from the cache to make room",
                evictions,
            )?;
        }
        if let Some((busy, max)) = live.winbind_helpers {
            gauge(&mut encoder, "winbind_helpers_busy", "ntlm_auth helpers checking a password now", busy as i64)?;
            gauge(&mut encoder, "winbind_helpers_max", "ntlm_auth helpers that may run at once", max as i64)?;
        }
        {
            let g0 = ConstGauge::new(0i64);
            let mut family = encoder.encode_descriptor(
                "backend_pool_idle_connections",
                "Idle pooled backend connections, by backend",
                None,
                g0.metric_type(),
            )?;
            for (backend, n) in &live.backend_pool_idle {
                let labels = BackendLabels { backend: backend.clone() };
                ConstGauge::new(*n as i64).encode(family.encode_family(&labels)?)?;
            }
        }
        {
            let g0 = ConstGauge::new(0i64);
            let mut family = encoder.encode_descriptor(
                "certificate_expiry_seconds",
                "Seconds until each listener certificate expires (negative: expired)",
                None,
                g0.metric_type(),
            )?;
            for (listener, name, secs) in &live.certificate_expiry {
                let labels = CertificateLabels { listener: listener.clone(), name: name.clone() };
                ConstGauge::new(*secs).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-site series kept between requests count like the families
    /// they come from, each class on its own, and a series appears only
    /// once something was counted in it.
    #[test]
    fn site_series_count_per_class_and_appear_when_used() {
        let m = Arc::new(Metrics::new());
        for (site, status) in [("owa", 200), ("owa", 204), ("owa", 404), ("ews", 503), ("owa", 0), ("owa", 101)] {
            m.requests().finished(Some(site), status, Duration::from_millis(3), 0, 0);
        }
        m.requests().finished(Some("ews"), 200, Duration::from_millis(3), 5, 7);
        m.backends().answered("ews", Duration::from_millis(2));
        let text = m.scrape(Live::default());
        for line in [
            "gatehouse_requests_total{site=\"owa\",class=\"2xx\"} 2",
            "gatehouse_requests_total{site=\"owa\",class=\"4xx\"} 1",
            "gatehouse_requests_total{site=\"owa\",class=\"other\"} 1",
            "gatehouse_requests_total{site=\"owa\",class=\"1xx\"} 1",
            "gatehouse_requests_total{site=\"ews\",class=\"5xx\"} 1",
            "gatehouse_requests_total{site=\"ews\",class=\"2xx\"} 1",
            "gatehouse_received_bytes_total{site=\"ews\"} 5",
            "gatehouse_sent_bytes_total{site=\"ews\"} 7",
            "gatehouse_request_duration_seconds_count{site=\"owa\"} 5",
            "gatehouse_backend_response_seconds_count{site=\"ews\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        for absent in [
            "{site=\"owa\",class=\"5xx\"}",
            "gatehouse_sent_bytes_total{site=\"owa\"}",
            "gatehouse_backend_response_seconds_count{site=\"owa\"}",
        ] {
            assert!(!text.contains(absent), "{absent} counted nothing and should not be there:\n{text}");
        }
    }

    #[test]
    fn a_scrape_names_each_family_and_its_labels() {
        let m = Arc::new(Metrics::new());
        m.requests().finished(Some("owa"), 200, Duration::from_millis(12), 10, 2000);
        m.requests().finished(None, 404, Duration::from_millis(1), 0, 0);
        m.signins().passed("NTLM");
        m.signins().refused("NTLM", Cause::WrongPassword);
        m.signins().refused("Basic", Cause::LockedOut);
        m.backends().answered("owa", Duration::from_millis(5));
        m.backends().connect_failed("owa");
        let open = m.connections().open("https");
        use kcd::KdcObserver;
        Kdc(m.clone()).kdc(kcd::KdcRequest::S4u2Proxy, Duration::from_millis(3), Some("KDC_ERR_BADOPTION"));
        let live = Live {
            credential_cache: Some((3, 7, 1)),
            certificate_expiry: vec![("https".into(), "mail.example.com".into(), 86_400)],
            ..Live::default()
        };
        let text = m.scrape(live);
        for line in [
            "gatehouse_requests_total{site=\"owa\",class=\"2xx\"} 1",
            "gatehouse_requests_total{site=\"-\",class=\"4xx\"} 1",
            "gatehouse_sent_bytes_total{site=\"owa\"} 2000",
            "gatehouse_signins_total{scheme=\"NTLM\",outcome=\"success\",cause=\"none\"} 1",
            "gatehouse_signins_total{scheme=\"NTLM\",outcome=\"refused\",cause=\"wrong_password\"} 1",
            "gatehouse_lockout_hits_total{scheme=\"Basic\"} 1",
            "gatehouse_backend_connect_failures_total{site=\"owa\"} 1",
            "gatehouse_kdc_errors_total{kind=\"s4u2proxy\",code=\"KDC_ERR_BADOPTION\"} 1",
            "gatehouse_open_connections{listener=\"https\"} 1",
            "gatehouse_credential_cache_entries 3",
            "gatehouse_credential_cache_evictions_total 1",
            "gatehouse_certificate_expiry_seconds{listener=\"https\",name=\"mail.example.com\"} 86400",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        let old = Metrics::prometheus_text(&text);
        assert!(old.contains("# TYPE gatehouse_requests_total counter\n"), "{old}");
        assert!(old.contains("# TYPE gatehouse_request_duration_seconds histogram\n"), "{old}");
        assert!(!old.contains("# EOF"));
        drop(open);
        assert!(m.scrape(Live::default()).contains("gatehouse_open_connections{listener=\"https\"} 0"));
    }
}
