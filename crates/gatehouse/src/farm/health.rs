//! Active health checks: one task per backend of each site that has a check,
//! on the process's main runtime, for as long as the configuration generation
//! that started them serves. A TCP check connects; an HTTP check GETs its path
//! over the backend's own TLS settings (its CA, its name) with the site's
//! public host name and expects the status. Results go to the backend's
//! [`super::MemberState`], which applies rise and fall and logs each change.

use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderValue, CONNECTION, HOST, USER_AGENT};

use super::{Farm, Member};
use crate::config::Check;

/// The running checks of one generation; dropping it stops them.
pub struct Checks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Checks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

impl Checks {
    /// Starts the checks of `farms` (each with the `Host` its checks send).
    pub fn start<'a>(farms: impl Iterator<Item = (&'a Arc<Farm>, Option<String>)>) -> Checks {
        let mut tasks = Vec::new();
        for (farm, host) in farms {
            if farm.health.check == Check::None {
                continue;
            }
            for i in 0..farm.members.len() {
                let (farm, host) = (farm.clone(), host.clone());
                tasks.push(tokio::spawn(async move { run(&farm, i, host).await }));
            }
        }
        Checks(tasks)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

async fn run(farm: &Farm, i: usize, host: Option<String>) {
    let Some(member) = farm.members.get(i) else { return };
    let h = &farm.health;
    // A backend kept from the last generation was checked already: its next
    // check comes in its turn, so a reload does not check every backend at once.
    if member.state.checked() {
        tokio::time::sleep(h.interval).await;
    }
    loop {
        let result = match tokio::time::timeout(h.timeout, probe(member, &h.check, host.as_deref())).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {}", humantime::format_duration(h.timeout))),
        };
        member.state.check_result(result, h);
        tokio::time::sleep(h.interval).await;
    }
}

/// One check of `member`.
async fn probe(member: &Member, check: &Check, host: Option<&str>) -> Result<(), String> {
    match check {
        Check::None => Ok(()),
        Check::Tcp => {
            let b = &member.backend;
            tokio::net::TcpStream::connect((b.host.as_str(), b.port))
                .await
                .map(drop)
                .map_err(|e| format!("TCP connect: {e}"))
        }
        Check::Http { path, status } => {
            // The check's own limit applies around this whole call.
            let mut sender = member.target.connect(Duration::from_secs(3600)).await.map_err(|e| e.to_string())?;
            let progress = crate::request_body::RequestProgress::new();
            let mut req = http::Request::new(crate::request_body::RequestBody::empty(progress));
            *req.uri_mut() = path.parse().map_err(|_| format!("`{path}` is not a path"))?;
            let host = match host {
                Some(h) => h.to_owned(),
                None => format!("{}:{}", member.backend.host, member.backend.port),
            };
            let headers = req.headers_mut();
            headers.insert(HOST, HeaderValue::from_str(&host).map_err(|_| format!("`{host}` is not a Host"))?);
            headers.insert(USER_AGENT, HeaderValue::from_static("gatehouse-health-check"));
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
            let resp = sender.try_send_request(req).await.map_err(|e| format!("GET {path}: {}", e.error()))?;
            if resp.status().as_u16() == *status {
                Ok(())
            } else {
                Err(format!("GET {path} answered {} (expected {status})", resp.status().as_u16()))
            }
        }
    }
}
