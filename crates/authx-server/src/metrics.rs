//! Prometheus metrics: requests and latency by route, sign-ins by outcome, live sessions.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

/// The method label: the standard methods by name, any other as `other`, so that a client
/// inventing methods cannot grow the metrics without bound.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabels {
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// The server's metrics.
pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    sign_ins: Family<OutcomeLabels, Counter>,
    second_factors: Family<OutcomeLabels, Counter>,
    rate_limited: Family<ClassLabels, Counter>,
    audit_unstored: Gauge,
    live_sessions: Gauge,
    mail: Family<OutcomeLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("authx");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ])
        });
        let sign_ins = Family::<OutcomeLabels, Counter>::default();
        let second_factors = Family::<OutcomeLabels, Counter>::default();
        let live_sessions = Gauge::default();
        let rate_limited = Family::<ClassLabels, Counter>::default();
        let audit_unstored = Gauge::default();
        let mail = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "mail_deliveries",
            "Mail delivery attempts by outcome (sent, retried, failed for good, lost_claim)",
            mail.clone(),
        );
        registry.register(
            "audit_unstored_events",
            "Audit events written to the log but not to the store since start",
            audit_unstored.clone(),
        );
        registry.register(
            "rate_limited",
            "Requests refused by a rate limit, by endpoint class",
            rate_limited.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        registry.register("sign_ins", "Sign-in attempts by outcome", sign_ins.clone());
        registry.register(
            "second_factor_checks",
            "Answers to the second step of a sign-in by outcome",
            second_factors.clone(),
        );
        registry.register(
            "active_sessions",
            "Browser sessions live now",
            live_sessions.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            requests,
            latency,
            sign_ins,
            second_factors,
            rate_limited,
            audit_unstored,
            live_sessions,
            mail,
        }
    }
}

impl Metrics {
    /// Records one finished request.
    pub fn observe_request(
        &self,
        method: &axum::http::Method,
        route: &str,
        status: u16,
        seconds: f64,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method_label(method),
                route: route.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    /// Records a sign-in outcome.
    pub fn sign_in(&self, outcome: authx_core::auth::SignInOutcome) {
        self.sign_ins
            .get_or_create(&OutcomeLabels {
                outcome: outcome.label(),
            })
            .inc();
    }

    /// Records the outcome of an answer to a sign-in's second step; a success also counts as
    /// a sign-in (the first step counted as `second_factor`).
    pub fn second_factor(&self, outcome: authx_core::auth::SignInOutcome) {
        self.second_factors
            .get_or_create(&OutcomeLabels {
                outcome: outcome.label(),
            })
            .inc();
        if outcome == authx_core::auth::SignInOutcome::Success {
            self.sign_in(outcome);
        }
    }

    /// Counts a request refused by a rate limit.
    pub fn rate_limited(&self, class: &'static str) {
        self.rate_limited
            .get_or_create(&ClassLabels { class })
            .inc();
    }

    /// Sets the count of audit events that could not be stored.
    pub fn set_audit_unstored(&self, n: u64) {
        self.audit_unstored
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Counts `n` mail delivery outcomes of one kind (`sent`, `retried`, `failed`, `lost_claim`).
    pub fn mail_outcome(&self, outcome: &'static str, n: u32) {
        if n > 0 {
            self.mail
                .get_or_create(&OutcomeLabels { outcome })
                .inc_by(u64::from(n));
        }
    }

    /// Sets the live-session gauge.
    pub fn set_live_sessions(&self, n: u64) {
        self.live_sessions.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The Prometheus text exposition.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}

impl authx_core::federation::SignInCounter for Metrics {
    fn count(&self, outcome: authx_core::auth::SignInOutcome) {
        self.sign_in(outcome);
    }
}
