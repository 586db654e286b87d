//! `healthCheckNodePort`: for each Service with `externalTrafficPolicy: Local`
//! the node answers HTTP on that port as kube-proxy does, 200 with the number
//! of local endpoints when there is one, 503 otherwise, so that an external
//! load balancer sends the Service's traffic only to nodes that can serve it.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::listen;
use crate::model::HealthCheck;

/// The answer for `check`: kube-proxy's status code and JSON body.
pub fn answer(check: &HealthCheck) -> (StatusCode, String) {
    let status = if check.local_endpoints > 0 { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = serde_json::json!({
        "service": { "namespace": check.namespace, "name": check.name },
        "localEndpoints": check.local_endpoints,
        "serviceProxyHealthy": true,
    });
    (status, body.to_string())
}

/// One listening port and the check it currently answers for.
struct Server {
    check: watch::Sender<HealthCheck>,
    task: JoinHandle<()>,
}

/// The running servers, one per port; stops them all when dropped.
#[derive(Default)]
pub struct HealthChecks {
    servers: HashMap<u16, Server>,
}

impl HealthChecks {
    /// Serves exactly `wanted`: starts servers for new ports, updates the
    /// answer of kept ones, stops the others. A port that cannot be bound is
    /// logged, returned, and tried again at the next update.
    pub fn update(&mut self, wanted: &BTreeMap<u16, HealthCheck>) -> Vec<(u16, std::io::Error)> {
        self.servers.retain(|port, server| {
            let keep = wanted.contains_key(port);
            if !keep {
                server.task.abort();
            }
            keep
        });
        let mut failed = Vec::new();
        for (port, check) in wanted {
            if let Some(server) = self.servers.get(port) {
                server.check.send_if_modified(|current| std::mem::replace(current, check.clone()) != *check);
                continue;
            }
            match start(*port, check.clone()) {
                Ok(server) => {
                    self.servers.insert(*port, server);
                }
                Err(error) => {
                    tracing::error!(port, service = %format!("{}/{}", check.namespace, check.name), "healthCheckNodePort not served: {error}");
                    failed.push((*port, error));
                }
            }
        }
        failed
    }
}

impl Drop for HealthChecks {
    fn drop(&mut self) {
        for server in self.servers.values() {
            server.task.abort();
        }
    }
}

/// Binds at once (so a taken port is reported now, not in a task) on every
/// address of the node's namespace, of both families, as a NodePort is.
fn start(port: u16, check: HealthCheck) -> std::io::Result<Server> {
    let listener = listen::on_every_address(port)?;
    let (check, answers) = watch::channel(check);
    let task = tokio::spawn(serve(listener, answers));
    Ok(Server { check, task })
}

async fn serve(listener: TcpListener, answers: watch::Receiver<HealthCheck>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "healthCheckNodePort accept failed");
                continue;
            }
        };
        let answers = answers.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_request| {
                let (status, body) = answer(&answers.borrow());
                let response = Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .header("x-content-type-options", "nosniff")
                    .body(Full::new(Bytes::from(body)))
                    .expect("static response parts are valid");
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                tracing::debug!(%error, "healthCheckNodePort connection ended");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_as_kube_proxy_does() {
        let check = |local_endpoints| HealthCheck { namespace: "shop".into(), name: "web".into(), local_endpoints };
        let (status, body) = answer(&check(2));
        assert_eq!(status, StatusCode::OK);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"service": {"namespace": "shop", "name": "web"}, "localEndpoints": 2, "serviceProxyHealthy": true})
        );
        let (status, body) = answer(&check(0));
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("\"localEndpoints\":0"), "{body}");
    }
}
