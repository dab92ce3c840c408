//! What an operator sees of the service: every authentication decision as an audit log line
//! and as a counter, and the Prometheus text of every metric the adapters record.
//!
//! The adapters record through the `metrics` facade; only the composition root installs the
//! recorder (once per process), so a library user who never calls [`install_prometheus`]
//! pays one relaxed atomic load per metric call.

use latchkey_domain::{ports::AuthEvents, AuthEvent};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Writes every authentication decision to the log (target `audit`, level info) and counts it.
#[derive(Clone, Copy, Debug, Default)]
pub struct AuditLog;

impl AuthEvents for AuditLog {
    fn record(&self, event: AuthEvent) {
        log(&event);
        count(&event);
    }
}

fn log(event: &AuthEvent) {
    let name = event.name();
    let user_id = event.user().map(tracing::field::display);
    match *event {
        AuthEvent::LoginSucceeded {
            session, client, ..
        } => {
            tracing::info!(target: "audit", event = name, user_id, %session, %client, "login succeeded")
        }
        AuthEvent::LoginFailed { client, reason, .. } => tracing::info!(
            target: "audit", event = name, user_id, %client, reason = reason.as_str(), "login failed"
        ),
        AuthEvent::LoginThrottled { client, .. } => {
            tracing::info!(target: "audit", event = name, user_id, %client, "login refused with 429")
        }
        AuthEvent::RefreshRefused { client, throttled } => tracing::info!(
            target: "audit", event = name, %client, throttled, "refresh refused"
        ),
        AuthEvent::Refreshed {
            session,
            client,
            within_grace,
            ..
        } => tracing::info!(
            target: "audit", event = name, user_id, %session, %client, within_grace,
            "session refreshed"
        ),
        AuthEvent::RefreshReuseDetected {
            session,
            client,
            rotated_by,
            within_grace,
            ..
        } => tracing::warn!(
            target: "audit", event = name, user_id, %session, %client,
            rotated_by = rotated_by.map(tracing::field::display), within_grace,
            "{}",
            if within_grace {
                "rotated refresh token replayed from another network within the grace window; session ended"
            } else {
                "rotated refresh token reused after the grace window; session ended"
            }
        ),
        AuthEvent::SessionsEnded { session, cause, .. } => tracing::info!(
            target: "audit", event = name, user_id,
            session = session.map(tracing::field::display), cause = cause.as_str(),
            "{}", if session.is_some() { "session ended" } else { "every session ended" }
        ),
        AuthEvent::PasswordChanged { how, .. } => {
            tracing::info!(target: "audit", event = name, user_id, how = how.as_str(), "password changed")
        }
        AuthEvent::Registered { .. } => {
            tracing::info!(target: "audit", event = name, user_id, "account registered")
        }
        AuthEvent::EmailVerified { .. } => {
            tracing::info!(target: "audit", event = name, user_id, "email address verified")
        }
        AuthEvent::AccountDeleted { .. } => {
            tracing::info!(target: "audit", event = name, user_id, "account deleted")
        }
        AuthEvent::AdminAction { admin, action, .. } => tracing::info!(
            target: "audit", event = name, user_id, admin_id = %admin, action = action.as_str(),
            "administrator acted on an account"
        ),
        AuthEvent::AdminGrantedByConfiguration { .. } => tracing::info!(
            target: "audit", event = name, user_id, "account made administrator by ADMIN_EMAILS"
        ),
        AuthEvent::AdminEnabledByConfiguration { .. } => tracing::warn!(
            target: "audit", event = name, user_id, "disabled administrator enabled again by ADMIN_EMAILS"
        ),
        AuthEvent::AdminGrantedByOperator { .. } => tracing::warn!(
            target: "audit", event = name, user_id, "account made administrator by an operator"
        ),
    }
}

fn count(event: &AuthEvent) {
    metrics::counter!("latchkey_auth_events_total", "event" => event.name()).increment(1);
    match *event {
        AuthEvent::LoginSucceeded { .. } => login("succeeded"),
        AuthEvent::LoginFailed { .. } => login("failed"),
        AuthEvent::LoginThrottled { .. } => login("throttled"),
        AuthEvent::RefreshRefused { throttled, .. } => {
            refresh(if throttled { "throttled" } else { "refused" })
        }
        AuthEvent::Refreshed { within_grace, .. } => refresh(if within_grace {
            "within_grace"
        } else {
            "rotated"
        }),
        AuthEvent::RefreshReuseDetected { .. } => {
            refresh("reuse_detected");
            ended(latchkey_domain::SessionEndCause::RefreshReuse);
        }
        AuthEvent::SessionsEnded { cause, .. } => ended(cause),
        AuthEvent::Registered { .. }
        | AuthEvent::PasswordChanged { .. }
        | AuthEvent::EmailVerified { .. }
        | AuthEvent::AccountDeleted { .. }
        | AuthEvent::AdminAction { .. }
        | AuthEvent::AdminGrantedByConfiguration { .. }
        | AuthEvent::AdminEnabledByConfiguration { .. }
        | AuthEvent::AdminGrantedByOperator { .. } => {}
    }
}

fn login(outcome: &'static str) {
    metrics::counter!("latchkey_logins_total", "outcome" => outcome).increment(1);
}

fn refresh(outcome: &'static str) {
    metrics::counter!("latchkey_refreshes_total", "outcome" => outcome).increment(1);
}

fn ended(cause: latchkey_domain::SessionEndCause) {
    metrics::counter!("latchkey_sessions_ended_total", "cause" => cause.as_str()).increment(1);
}

#[derive(Debug, thiserror::Error)]
#[error("the metrics recorder cannot be installed: {0}")]
pub struct MetricsSetupError(String);

/// Latency buckets in seconds: from a cached token check (well under a millisecond) to a
/// store call about to time out.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the process-wide Prometheus recorder. The handle renders the text format; call
/// its `run_upkeep` every few seconds so histograms do not grow between scrapes.
pub fn install_prometheus() -> Result<PrometheusHandle, MetricsSetupError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .map_err(|e| MetricsSetupError(e.to_string()))?
        .install_recorder()
        .map_err(|e| MetricsSetupError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_domain::{ClientNetwork, LoginFailure, UserId};
    use metrics_exporter_prometheus::PrometheusBuilder;

    #[test]
    fn each_login_outcome_moves_its_own_counter() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let audit = AuditLog;
            audit.record(AuthEvent::LoginFailed {
                user: Some(UserId::from_uuid(Default::default())),
                client: ClientNetwork::Unknown,
                reason: LoginFailure::InvalidCredentials,
            });
            audit.record(AuthEvent::LoginThrottled {
                user: None,
                client: ClientNetwork::Unknown,
            });
            audit.record(AuthEvent::LoginThrottled {
                user: None,
                client: ClientNetwork::Unknown,
            });
        });
        let text = handle.render();
        assert!(
            text.contains("latchkey_logins_total{outcome=\"failed\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("latchkey_logins_total{outcome=\"throttled\"} 2"),
            "{text}"
        );
        assert!(!text.contains("outcome=\"succeeded\""), "{text}");
    }

    /// The JSON lines `event` writes to the log.
    fn audit_lines(event: AuthEvent) -> Vec<serde_json::Value> {
        use std::sync::{Arc, Mutex};
        let written = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = written.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || AuditLog.record(event));
        let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_admin_action_names_the_account_the_action_and_the_administrator() {
        let admin = UserId::from_uuid(uuid::Uuid::from_bytes([1; 16]));
        let user = UserId::from_uuid(uuid::Uuid::from_bytes([2; 16]));
        let lines = audit_lines(AuthEvent::AdminAction {
            admin,
            user,
            action: latchkey_domain::AdminAction::Disabled,
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line = &lines[0];
        assert_eq!(line["target"], "audit");
        let fields = &line["fields"];
        assert_eq!(fields["event"], "admin_action");
        assert_eq!(fields["action"], "disabled");
        assert_eq!(fields["user_id"], user.to_string());
        assert_eq!(fields["admin_id"], admin.to_string());
    }

    #[test]
    fn a_replay_from_another_network_is_a_warning_naming_both_networks() {
        let replayed_from = ClientNetwork::of("198.51.100.9".parse().unwrap());
        let rotated_by = ClientNetwork::of("2001:db8:1:2::7".parse().unwrap());
        let lines = audit_lines(AuthEvent::RefreshReuseDetected {
            user: UserId::from_uuid(uuid::Uuid::from_bytes([2; 16])),
            session: latchkey_domain::FamilyId::from_uuid(uuid::Uuid::from_bytes([3; 16])),
            client: replayed_from,
            rotated_by: Some(rotated_by),
            within_grace: true,
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["level"], "WARN");
        let fields = &lines[0]["fields"];
        assert_eq!(fields["event"], "refresh_reuse_detected");
        assert_eq!(fields["client"], "198.51.100.9");
        assert_eq!(fields["rotated_by"], "2001:db8:1:2::/64");
        assert_eq!(fields["within_grace"], true);
    }

    #[test]
    fn a_refresh_names_the_network_it_came_from() {
        let lines = audit_lines(AuthEvent::Refreshed {
            user: UserId::from_uuid(uuid::Uuid::from_bytes([2; 16])),
            session: latchkey_domain::FamilyId::from_uuid(uuid::Uuid::from_bytes([3; 16])),
            client: ClientNetwork::of("198.51.100.9".parse().unwrap()),
            within_grace: true,
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(lines[0]["fields"]["client"], "198.51.100.9");
        assert_eq!(lines[0]["fields"]["within_grace"], true);
    }

    #[test]
    fn a_session_ended_by_the_limit_names_the_session_and_the_cause() {
        let session = latchkey_domain::FamilyId::from_uuid(uuid::Uuid::from_bytes([3; 16]));
        let event = AuthEvent::SessionsEnded {
            user: UserId::from_uuid(uuid::Uuid::from_bytes([2; 16])),
            session: Some(session),
            cause: latchkey_domain::SessionEndCause::SessionLimit,
        };
        let lines = audit_lines(event);
        assert_eq!(lines.len(), 1, "{lines:?}");
        let fields = &lines[0]["fields"];
        assert_eq!(fields["event"], "sessions_ended");
        assert_eq!(fields["cause"], "session_limit");
        assert_eq!(fields["session"], session.to_string());

        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || AuditLog.record(event));
        let text = handle.render();
        assert!(
            text.contains("latchkey_sessions_ended_total{cause=\"session_limit\"} 1"),
            "{text}"
        );
    }
}
