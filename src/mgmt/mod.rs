//! The management HTTP API (semantics 6.7, 8.5, 8.14), as pure functions.
//!
//! The reactor owns the management listener and its sockets. Per connection it keeps a
//! [`Session`] and hands it the bytes it reads together with a [`MgmtContext`] over its
//! connection table; the session parses ([`crate::http::HttpParser`]), answers every
//! request through [`handle`], appends the answers to the output, and says when to close.
//! Nothing here does I/O or reads a clock.
//!
//! ```text
//!  bytes ─► HttpParser ─► HttpRequest ─► handle(req, ctx) ─► MgmtResponse ─► write(out)
//!               │                          │ authorized? route? 410 before 400 (8.5)
//!               └─ HttpError ─► from_http_error (400/413/417/431/501/505, close)
//! ```
//!
//! See `docs/management.md` for the routes as a user sees them.

mod envelope;
mod info;
mod metrics;
mod session;

pub use envelope::{parse_post_body, BadBody, Envelope};
pub use info::{iso8601, ConnInfo};
pub use metrics::{
    render_metrics, Histogram, MetricsSnapshot, LATENCY_BUCKETS, METRICS_CONTENT_TYPE,
};
pub use session::Session;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use serde_json::json;

use configurapi::http::percent_decode;

use crate::http::{reason_phrase, write_head, write_response, HttpError, HttpRequest};

/// Default management port (semantics 6.1.2); 0 turns the server off.
pub const DEFAULT_PORT: u16 = 9100;

pub use runner_cold::TOKEN_ENV;

/// How long a keep-alive management connection may sit idle between requests, and how
/// long a started request may take to arrive, before the server closes it.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// A management route: what a request asks for, before any connection is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /@connections`, `GET /list_@connections`: the connected ids.
    List,
    /// `POST /@connections/{id}`, `POST /post_@connection?id={id}`: send an envelope.
    /// `None` when the request names no id (400, 8.14).
    Post {
        /// The target connection.
        id: Option<String>,
    },
    /// `GET /@connections/{id}`: one connection's facts.
    Get {
        /// The connection.
        id: String,
    },
    /// `DELETE /@connections/{id}`: close it with 1000.
    Delete {
        /// The connection.
        id: String,
    },
    /// `GET /healthz`.
    Health,
    /// `POST /@broadcast[?identity=ID]`: one envelope to every connection (of one
    /// identity), cluster-wide under `--cluster` (docs/cluster.md).
    Broadcast {
        /// Only the connections whose identity has this id.
        identity: Option<String>,
    },
    /// `POST /@reload`: load the config and TLS files again.
    Reload,
    /// `GET /metrics`.
    Metrics,
    /// Anything else: 501 with the core's Not Implemented ErrorResponse.
    NotImplemented {
        /// The event name the core's path rules give the request (2.2).
        event: String,
    },
}

/// Match a request to a route. `HEAD` is routed as `GET` (the answer has no body).
/// Paths are split on `/` with empty segments dropped, as the core does (2.2.1), and
/// each segment is percent-decoded. The post id is the path's, else query `id` (6.7.2).
pub fn route(req: &HttpRequest) -> Route {
    let segs: Vec<String> = req
        .path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s, false))
        .collect();
    let read = req.method == "GET" || req.method == "HEAD";
    let query_id = || {
        req.query_param("id")
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match (req.method.as_str(), segs.as_slice()) {
        (_, ["@connections"] | ["list_@connections"]) if read => Route::List,
        ("POST", ["@connections"] | ["post_@connection"]) => Route::Post { id: query_id() },
        ("POST", ["@connections", id]) => Route::Post {
            id: Some(id.to_string()),
        },
        (_, ["@connections", id]) if read => Route::Get { id: id.to_string() },
        ("DELETE", ["@connections", id]) => Route::Delete { id: id.to_string() },
        (_, ["healthz"]) if read => Route::Health,
        ("POST", ["@broadcast"]) => Route::Broadcast {
            identity: req.query_param("identity").map(str::to_string),
        },
        ("POST", ["@reload"]) => Route::Reload,
        (_, ["metrics"]) if read => Route::Metrics,
        _ => Route::NotImplemented {
            event: event_name(&req.method, &segs),
        },
    }
}

/// The event name the core's path rules (2.2) give `method` and the decoded segments: the
/// 501 names it as the core would (`Route for 'list_users' event could not be found.'`).
fn event_name(method: &str, segs: &[&str]) -> String {
    let method = method.to_ascii_lowercase();
    configurapi::path::map_segments("", &method, segs, &serde_json::Map::new())
        .name
        .into()
}

/// Whether the request may use the API: always when no token is set, else only with
/// `Authorization: Bearer <token>` (scheme case-insensitive). The token comparison takes
/// the same time wherever the first difference is.
pub fn authorized(req: &HttpRequest, token: Option<&str>) -> bool {
    let Some(token) = token else { return true };
    let Some(value) = req.header("authorization") else {
        return false;
    };
    let value = value.trim();
    let (scheme, given) = value.split_at(value.find(' ').unwrap_or(value.len()));
    scheme.eq_ignore_ascii_case("bearer")
        & constant_time_eq(given.trim().as_bytes(), token.as_bytes())
}

/// Compare without an early exit: every byte of `expected` is looked at, and a length
/// difference is folded into the same accumulator. Only `expected`'s length (the
/// server's token) shapes the timing.
fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = (given.len() ^ expected.len()) as u64;
    for (i, e) in expected.iter().enumerate() {
        let g = given.get(i).copied().unwrap_or(!e);
        diff |= u64::from(g ^ e);
    }
    std::hint::black_box(diff) == 0
}

/// What [`handle`] needs from the reactor's connection table. Ids are the connection-id
/// strings clients see.
pub trait MgmtContext {
    /// The accepted connections' ids (8.4).
    fn list(&self) -> Vec<String>;
    /// One connection's facts; `None` when it is not connected.
    fn info(&self, id: &str) -> Option<ConnInfo>;
    /// Queue `envelope_json` as one text frame to the connection; `false` when it is gone.
    fn post(&mut self, id: &str, envelope_json: Vec<u8>) -> bool;
    /// Start a close handshake with code 1000; `false` when it is gone.
    fn close(&mut self, id: &str) -> bool;
    /// Whether the server is shutting down (healthz answers 503).
    fn shutting_down(&self) -> bool;
    /// The current figures for `/metrics`.
    fn metrics(&self) -> MetricsSnapshot;
    /// The management token, when access needs one.
    fn token(&self) -> Option<&str>;
    /// Reload the config and TLS files: what was reloaded, or why nothing was. The
    /// default: reloading is not offered.
    fn reload(&mut self) -> Result<String, String> {
        Err("reloading is not available here".to_string())
    }
    /// Send `envelope_json` to every local connection (of `identity`, when given);
    /// how many took it. The default: there are none.
    fn broadcast(&mut self, identity: Option<&str>, envelope_json: &[u8]) -> usize {
        let _ = (identity, envelope_json);
        0
    }
    /// Hand an operation on connections this node does not hold to the cluster
    /// (docs/cluster.md). `None`: there is no cluster (answer locally); `Some(Ok)`:
    /// the request is parked and answered later; `Some(Err(why))`: the cluster is
    /// unreachable now (503).
    fn remote(&mut self, op: Remote) -> Option<Result<(), String>> {
        let _ = op;
        None
    }
    /// Why the node is degraded (it serves its own clients, the cluster is
    /// unreachable), when it is.
    fn degraded(&self) -> Option<String> {
        None
    }
    /// Whether the id is connected; the default asks [`MgmtContext::info`].
    fn contains(&self, id: &str) -> bool {
        self.info(id).is_some()
    }
}

/// A management operation the cluster answers: on connections another node holds, or
/// on all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remote {
    /// Every connection's id, cluster-wide.
    List,
    /// One connection's facts.
    Get {
        /// The connection.
        id: String,
    },
    /// Queue an envelope; `body` is the encoded envelope, or why the request body was
    /// refused (400, but only once the connection is known to exist: 410 first, 8.5).
    Post {
        /// The connection.
        id: String,
        /// The envelope's JSON, or the 400's reason.
        body: Result<Vec<u8>, String>,
    },
    /// Close with 1000.
    Delete {
        /// The connection.
        id: String,
    },
    /// One envelope to every connection (of one identity).
    Broadcast {
        /// Only this identity's connections.
        identity: Option<String>,
        /// The encoded envelope, encoded once for all nodes.
        envelope: Vec<u8>,
    },
}

/// An answer to one management request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MgmtResponse {
    /// The status code.
    pub status: u16,
    /// The `Content-Type`, when there is a body.
    pub content_type: Option<&'static str>,
    /// The body (not sent for `HEAD`, see [`MgmtResponse::head`]).
    pub body: Vec<u8>,
    /// Close the connection after this answer.
    pub close: bool,
    /// The request was `HEAD`: send the head only, with the body's length.
    pub head: bool,
    /// Other headers, e.g. `WWW-Authenticate` on a 401.
    pub headers: Vec<(&'static str, String)>,
    /// Not an answer: the request was handed to the cluster and the session waits for
    /// the real answer ([`Session::resume`]).
    pub parked: bool,
}

impl MgmtResponse {
    fn new(status: u16, content_type: Option<&'static str>, body: Vec<u8>) -> MgmtResponse {
        MgmtResponse {
            status,
            content_type,
            body,
            close: false,
            head: false,
            headers: Vec::new(),
            parked: false,
        }
    }

    /// A 200 with a JSON body.
    pub fn json(body: Vec<u8>) -> MgmtResponse {
        MgmtResponse::new(200, Some("application/json"), body)
    }

    /// A status with no body (200 after a post, 204 after a close).
    pub fn empty(status: u16) -> MgmtResponse {
        MgmtResponse::new(status, None, Vec::new())
    }

    /// 503: the cluster cannot be reached now; the reason says why.
    pub fn cluster_unavailable(why: &str) -> MgmtResponse {
        let mut r = MgmtResponse::error(503, "Service Unavailable.", why);
        r.headers.push(("Retry-After", "1".to_string()));
        r
    }

    fn parked() -> MgmtResponse {
        let mut r = MgmtResponse::empty(0);
        r.parked = true;
        r
    }

    /// An ErrorResponse body (semantics 4.2): `{"statusCode","message","details"}`.
    pub fn error(status: u16, message: &str, details: &str) -> MgmtResponse {
        let body = json!({"statusCode": status, "message": message, "details": details});
        MgmtResponse::new(
            status,
            Some("application/json"),
            serde_json::to_vec(&body).unwrap_or_default(),
        )
    }

    /// The answer to a request the parser refused; it always closes.
    pub fn from_http_error(e: &HttpError) -> MgmtResponse {
        let mut r =
            MgmtResponse::error(e.status, &format!("{}.", reason_phrase(e.status)), e.reason);
        r.close = e.close;
        r
    }

    /// Append the encoded answer to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(1 + self.headers.len());
        if let Some(ct) = self.content_type {
            headers.push(("Content-Type", ct));
        }
        headers.extend(self.headers.iter().map(|(k, v)| (*k, v.as_str())));
        if self.head {
            write_head(out, self.status, &headers, self.body.len(), !self.close);
        } else {
            write_response(out, self.status, &headers, &self.body, !self.close);
        }
    }
}

/// Answer one request. Order: the token (401), then the route; for a post the target's
/// presence (410) before the body (400), as 8.5 asks. Answers close the connection when
/// the request did not keep it alive or the server is shutting down.
pub fn handle(req: &HttpRequest, ctx: &mut dyn MgmtContext) -> MgmtResponse {
    let mut r = answer(req, ctx);
    r.close |= !req.keep_alive || ctx.shutting_down();
    r.head = req.method == "HEAD";
    r
}

fn answer(req: &HttpRequest, ctx: &mut dyn MgmtContext) -> MgmtResponse {
    if !authorized(req, ctx.token()) {
        let mut r = MgmtResponse::error(
            401,
            "Unauthorized.",
            "A valid 'Authorization: Bearer <token>' header is required.",
        );
        r.headers.push(("WWW-Authenticate", "Bearer".to_string()));
        return r;
    }
    let json = Some("application/json");
    match route(req) {
        Route::List => {
            if req.query_param("scope") != Some("local") {
                if let Some(r) = park(ctx, Remote::List) {
                    return r;
                }
            }
            let ids = ctx.list();
            MgmtResponse::new(200, json, serde_json::to_vec(&ids).unwrap_or_default())
        }
        Route::Post { id: None } => MgmtResponse::error(
            400,
            "Bad Request.",
            "No connection id: use POST /@connections/{id}.",
        ),
        Route::Post { id: Some(id) } => {
            if !ctx.contains(&id) {
                let body = parse_post_body(&req.body)
                    .map(|e| e.to_json())
                    .map_err(|BadBody(why)| why.to_string());
                return park(
                    ctx,
                    Remote::Post {
                        id: id.clone(),
                        body,
                    },
                )
                .unwrap_or_else(|| gone(&id));
            }
            let envelope = match parse_post_body(&req.body) {
                Ok(e) => e,
                Err(BadBody(why)) => return MgmtResponse::error(400, "Bad Request.", why),
            };
            if ctx.post(&id, envelope.to_json()) {
                MgmtResponse::new(200, None, Vec::new())
            } else {
                gone(&id)
            }
        }
        Route::Get { id } => match ctx.info(&id) {
            Some(info) => MgmtResponse::new(200, json, info.to_json(&id)),
            None => park(ctx, Remote::Get { id: id.clone() }).unwrap_or_else(|| gone(&id)),
        },
        Route::Delete { id } => {
            if ctx.close(&id) {
                MgmtResponse::new(204, None, Vec::new())
            } else {
                park(ctx, Remote::Delete { id: id.clone() }).unwrap_or_else(|| gone(&id))
            }
        }
        Route::Broadcast { identity } => {
            let envelope = match parse_post_body(&req.body) {
                Ok(e) => e.to_json(),
                Err(BadBody(why)) => return MgmtResponse::error(400, "Bad Request.", why),
            };
            let op = Remote::Broadcast {
                identity: identity.clone(),
                envelope: envelope.clone(),
            };
            if let Some(r) = park(ctx, op) {
                return r;
            }
            let n = ctx.broadcast(identity.as_deref(), &envelope);
            MgmtResponse::json(broadcast_body(&[("local".to_string(), n)], &[]))
        }
        Route::Health => {
            let text = Some("text/plain; charset=utf-8");
            if ctx.shutting_down() {
                MgmtResponse::new(503, text, b"shutting down\n".to_vec())
            } else if let Some(why) = ctx.degraded() {
                // Still 200: a degraded node serves its own clients, and a load
                // balancer that took it out would drop them for a fault elsewhere.
                MgmtResponse::new(200, text, format!("degraded: {why}\n").into_bytes())
            } else {
                MgmtResponse::new(200, text, b"ok\n".to_vec())
            }
        }
        Route::Reload => match ctx.reload() {
            Ok(summary) => MgmtResponse::new(
                200,
                json,
                serde_json::to_vec(&serde_json::json!({ "reloaded": summary })).unwrap_or_default(),
            ),
            // The server keeps the previous config: a failure of the server, not of
            // the request.
            Err(why) => MgmtResponse::error(500, "Reload failed.", &why),
        },
        Route::Metrics => MgmtResponse::new(
            200,
            Some(METRICS_CONTENT_TYPE),
            render_metrics(&ctx.metrics()).into_bytes(),
        ),
        Route::NotImplemented { event } => MgmtResponse::error(
            501,
            "Not Implemented.",
            // The stray trailing quote is the core's (semantics 3.3.1).
            &format!("Route for '{event}' event could not be found.'"),
        ),
    }
}

/// Hand `op` to the cluster: `None` without one, else the parked marker or a 503.
fn park(ctx: &mut dyn MgmtContext, op: Remote) -> Option<MgmtResponse> {
    match ctx.remote(op)? {
        Ok(()) => Some(MgmtResponse::parked()),
        Err(why) => Some(MgmtResponse::cluster_unavailable(&why)),
    }
}

/// The answer to `POST /@broadcast`: `{"delivered":N,"nodes":{"node":n,..},"silent":[..]}`.
pub fn broadcast_body(counts: &[(String, usize)], silent: &[String]) -> Vec<u8> {
    let nodes: serde_json::Map<String, serde_json::Value> = counts
        .iter()
        .map(|(n, c)| (n.clone(), serde_json::Value::from(*c)))
        .collect();
    let total: usize = counts.iter().map(|(_, c)| c).sum();
    serde_json::to_vec(&json!({"delivered": total, "nodes": nodes, "silent": silent}))
        .unwrap_or_default()
}

/// 410 for a connection that is not (or no longer) connected, like AWS's GoneException.
pub fn gone(id: &str) -> MgmtResponse {
    MgmtResponse::error(
        410,
        "Gone.",
        &format!("Connection '{id}' is not connected."),
    )
}

/// The base URL that reaches a management listener bound to `addr`, the default base of
/// the `postback-url` header (8.6; the runner appends `/@connections/<id>`): an
/// unspecified address (`0.0.0.0`, `::`) is replaced by loopback, which reaches it from
/// this host.
pub fn base_url(addr: SocketAddr) -> String {
    base_url_with_scheme("http", addr)
}

/// [`base_url`] with a scheme (`https` when the management API serves TLS).
pub fn base_url_with_scheme(scheme: &str, addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => Ipv4Addr::LOCALHOST.into(),
        IpAddr::V6(v6) if v6.is_unspecified() => Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!("{scheme}://{}", SocketAddr::new(ip, addr.port()))
}

#[cfg(test)]
mod tests;
