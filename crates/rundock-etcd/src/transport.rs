//! HTTP transport: endpoint failover, TLS, and authentication (v3 tokens, v2 basic auth).
//!
//! Every request goes to the endpoint that answered last; on a transport failure
//! (refused, timed out, TLS) the next endpoint is tried, once around the list, and the
//! one that answers becomes the current one. An endpoint that answers with an error
//! status is *not* failed over: it is up, and another member would say the same.

use crate::messages::{decode, AuthenticateResponse, ErrorBody};
use crate::EtcdError;
use reqwest::{Method, RequestBuilder, Response};
use rundock_spec::{EtcdApi, EtcdSpec};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How long a connection attempt may take before the next endpoint is tried.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one unary request may take (watches have no limit).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct Transport {
    http: reqwest::Client,
    endpoints: Vec<String>,
    current: AtomicUsize,
    pub(crate) api: EtcdApi,
    credentials: Option<(String, String)>,
    /// v3 token and the endpoint that issued it: simple tokens are local to one member,
    /// so a failover needs a new one.
    token: tokio::sync::Mutex<Option<(usize, String)>>,
}

/// An answer of any status, body not yet decoded.
pub(crate) struct Answer {
    pub endpoint: String,
    pub status: u16,
    pub body: Vec<u8>,
    /// v2's `X-Etcd-Index` header.
    pub index: Option<u64>,
    /// etcd's error message when `status` is not 2xx.
    pub message: String,
}

impl Answer {
    pub(crate) fn into_status_error(self) -> EtcdError {
        EtcdError::Status {
            endpoint: self.endpoint,
            code: self.status,
            message: self.message,
        }
    }
}

/// A request's parts, rebuilt for each endpoint tried.
pub(crate) struct Req<'a> {
    pub method: Method,
    pub path: &'a str,
    pub json: Option<&'a Value>,
    pub form: Option<&'a [(&'a str, String)]>,
    pub query: &'a [(&'a str, String)],
    /// `None` for watches.
    pub timeout: Option<Duration>,
}

impl<'a> Req<'a> {
    pub fn post_json(path: &'a str, json: &'a Value) -> Req<'a> {
        Req {
            method: Method::POST,
            path,
            json: Some(json),
            form: None,
            query: &[],
            timeout: Some(REQUEST_TIMEOUT),
        }
    }
}

impl Transport {
    pub(crate) fn new(spec: &EtcdSpec) -> Result<Transport, EtcdError> {
        if spec.endpoints.is_empty() {
            return Err(EtcdError::Config("no endpoints".into()));
        }
        // Parsed and normalised once, when the spec was made (rundock_spec::EtcdEndpoint).
        let endpoints: Vec<String> = spec.endpoints.iter().map(|e| e.to_string()).collect();
        spec.check_tls()
            .map_err(|(field, why)| EtcdError::Config(format!("{field} {why}")))?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            // Idle connections to a member that died linger otherwise; a short idle
            // timeout keeps a keep-alive every `interval` on a fresh, working socket.
            .pool_idle_timeout(Duration::from_secs(30));
        if let Some(ca) = &spec.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| EtcdError::Config(format!("ca_file {}: {e}", ca.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| EtcdError::Config(format!("ca_file {}: {e}", ca.display())))?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        // check_tls refused one without the other.
        if let (Some(cert), Some(key)) = (&spec.cert_file, &spec.key_file) {
            let mut pem = std::fs::read(cert)
                .map_err(|e| EtcdError::Config(format!("cert_file {}: {e}", cert.display())))?;
            pem.push(b'\n');
            pem.extend(
                std::fs::read(key)
                    .map_err(|e| EtcdError::Config(format!("key_file {}: {e}", key.display())))?,
            );
            let identity = reqwest::Identity::from_pem(&pem)
                .map_err(|e| EtcdError::Config(format!("client certificate: {e}")))?;
            builder = builder.identity(identity);
        }
        let credentials = match (&spec.username, &spec.password) {
            (Some(user), Some(password)) => Some((user.clone(), password.clone())),
            (Some(user), None) => Some((user.clone(), String::new())),
            _ => None,
        };
        let http = builder
            .build()
            .map_err(|e| EtcdError::Config(error_chain(&e)))?;
        Ok(Transport {
            http,
            endpoints,
            current: AtomicUsize::new(0),
            api: spec.api,
            credentials,
            token: tokio::sync::Mutex::new(None),
        })
    }

    pub(crate) fn current_endpoint(&self) -> &str {
        &self.endpoints[self.current.load(Ordering::Relaxed) % self.endpoints.len()]
    }

    fn build(&self, base: &str, req: &Req<'_>, token: Option<&str>) -> RequestBuilder {
        let mut rb = self
            .http
            .request(req.method.clone(), format!("{base}{}", req.path));
        if !req.query.is_empty() {
            rb = rb.query(req.query);
        }
        if let Some(json) = req.json {
            rb = rb.json(json);
        }
        if let Some(form) = req.form {
            rb = rb.form(form);
        }
        if let Some(timeout) = req.timeout {
            rb = rb.timeout(timeout);
        }
        if let Some(token) = token {
            rb = rb.header(reqwest::header::AUTHORIZATION, token);
        }
        if self.api == EtcdApi::V2 {
            if let Some((user, password)) = &self.credentials {
                rb = rb.basic_auth(user, Some(password));
            }
        }
        rb
    }

    /// Sends `req` to the current endpoint, failing over on transport errors. Returns
    /// the response whatever its status.
    pub(crate) async fn send(&self, req: &Req<'_>) -> Result<Response, EtcdError> {
        let n = self.endpoints.len();
        let start = self.current.load(Ordering::Relaxed);
        let mut reason = String::new();
        for i in 0..n {
            let idx = (start + i) % n;
            let base = &self.endpoints[idx];
            let token = match self.token_for(idx).await {
                Ok(token) => token,
                Err(EtcdError::Unreachable { reason: r, .. }) => {
                    reason = r;
                    continue;
                }
                Err(e) => return Err(e),
            };
            match self.build(base, req, token.as_deref()).send().await {
                Ok(resp) => {
                    if idx != start % n {
                        self.current.store(idx, Ordering::Relaxed);
                    }
                    return Ok(resp);
                }
                Err(e) => reason = format!("{base}: {}", error_chain(&e)),
            }
        }
        Err(EtcdError::Unreachable {
            endpoints: self.endpoints.join(","),
            reason,
        })
    }

    /// A unary call: sends, checks the status, returns the body undecoded (for
    /// messages that borrow from it).
    pub(crate) async fn call_bytes(&self, req: &Req<'_>) -> Result<Vec<u8>, EtcdError> {
        let answer = self.call_any(req).await?;
        if answer.status < 300 {
            Ok(answer.body)
        } else {
            Err(answer.into_status_error())
        }
    }

    /// A unary call: sends, checks the status, decodes into `T`.
    pub(crate) async fn call<T: DeserializeOwned>(&self, req: &Req<'_>) -> Result<T, EtcdError> {
        let bytes = self.call_bytes(req).await?;
        decode(req.path, &bytes)
    }

    /// A unary call whose error statuses the caller interprets (v2 puts meaning in
    /// error bodies). A refused v3 token is renewed once (tokens expire, and members
    /// restart).
    pub(crate) async fn call_any(&self, req: &Req<'_>) -> Result<Answer, EtcdError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let resp = self.send(req).await?;
            let endpoint = resp.url().origin().ascii_serialization();
            let status = resp.status().as_u16();
            let index = resp
                .headers()
                .get("x-etcd-index")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            // Bytes into Vec reuses the buffer when it is the only reference.
            let body: Vec<u8> = resp
                .bytes()
                .await
                .map_err(|e| EtcdError::Unreachable {
                    endpoints: endpoint.clone(),
                    reason: error_chain(&e),
                })?
                .into();
            let message = if status < 300 {
                String::new()
            } else {
                ErrorBody::message(&body)
            };
            if status >= 300
                && self.api == EtcdApi::V3
                && self.credentials.is_some()
                && attempt == 1
                && (status == 401 || message.contains("token"))
            {
                *self.token.lock().await = None;
                continue;
            }
            return Ok(Answer {
                endpoint,
                status,
                body,
                index,
                message,
            });
        }
    }

    /// The v3 token for endpoint `idx`, authenticating when there is none yet.
    async fn token_for(&self, idx: usize) -> Result<Option<String>, EtcdError> {
        let Some((user, password)) = &self.credentials else {
            return Ok(None);
        };
        if self.api != EtcdApi::V3 {
            return Ok(None);
        }
        let mut cached = self.token.lock().await;
        if let Some((at, token)) = cached.as_ref() {
            if *at == idx {
                return Ok(Some(token.clone()));
            }
        }
        let base = &self.endpoints[idx];
        let body = serde_json::json!({"name": user, "password": password});
        let resp = self
            .http
            .post(format!("{base}/v3/auth/authenticate"))
            .json(&body)
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|e| EtcdError::Unreachable {
                endpoints: base.clone(),
                reason: error_chain(&e),
            })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| EtcdError::Unreachable {
            endpoints: base.clone(),
            reason: error_chain(&e),
        })?;
        if !status.is_success() {
            let message = ErrorBody::message(&bytes);
            if message.contains("not enabled") {
                // Auth is off on this cluster: plain requests work.
                return Ok(None);
            }
            return Err(EtcdError::Auth(message));
        }
        let answer: AuthenticateResponse = decode("/v3/auth/authenticate", &bytes)?;
        if answer.token.is_empty() {
            return Err(EtcdError::Decode(
                "authenticate answered without a token".into(),
            ));
        }
        let token = answer.token;
        *cached = Some((idx, token.clone()));
        Ok(Some(token))
    }
}

/// reqwest's own Display says only "error sending request"; the cause is below it.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let s = cause.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = cause.source();
    }
    text
}
