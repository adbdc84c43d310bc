//! The live view's HTTP server: hyper's HTTP/1 server on smol's sockets (through
//! smol-hyper), so it runs on the same runtime family as the node. Read-only, GET only.
//!
//! | path | what |
//! |---|---|
//! | `/` `/app.js` `/style.css` | the page (embedded in the binary; nothing fetched from elsewhere) |
//! | `/api/ring` | the latest walk, as `chord ring --json` prints it |
//! | `/api/lookup?key=NAME` | a lookup of NAME traced hop by hop ([`super::trace`]) |
//! | `/events` | server-sent events: `ring` (every new walk), `change` (what changed) |
//!
//! Hostile input is bounded: requests of at most 16 KiB of headers, read within 10 s;
//! at most [`MAX_CONNECTIONS`] connections and [`super::MAX_FOLLOWERS`] event streams;
//! one traced lookup at a time (the next waits up to 5 s; each takes at most 10 s), keys of at most [`MAX_KEY`]
//! bytes. The `Host` header must name a loopback host on a loopback address, and an IP
//! address (or `localhost`) elsewhere, never a DNS name, so that a web site cannot read
//! the view through its own name rebound to our address; and everything but the page
//! itself is refused to other sites' pages (`Sec-Fetch-Site`, `Origin`), so that a page
//! a visitor opens elsewhere cannot read the ring or keep the view busy.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chord_net::frame::timeout;
use chord_net::NetworkKey;
use futures_lite::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response, StatusCode};
use smol_hyper::rt::{FuturesIo, SmolTimer};

use super::{trace, Hub};

/// Open connections at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 64;

/// Longest key a traced lookup takes, in bytes.
pub const MAX_KEY: usize = 1024;

/// How long a traced lookup waits for its turn before it is answered 429.
const LOOKUP_WAIT: Duration = Duration::from_secs(5);

/// How long a traced lookup may take.
const TRACE_DEADLINE: Duration = Duration::from_secs(10);

const PAGE: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/app.js");
const STYLE: &str = include_str!("page/style.css");

/// What the server's tasks share.
pub struct Shared {
    /// Where the server listens.
    pub listen: SocketAddr,
    /// The node whose view this is.
    pub node: SocketAddr,
    /// Its ring's network key.
    pub key: Option<NetworkKey>,
    /// Walks and changes, and the pages following them.
    pub hub: Hub,
    connections: AtomicUsize,
    /// The turn to trace a lookup (one at a time), and where to give it back.
    tracing: async_channel::Receiver<()>,
    tracing_done: async_channel::Sender<()>,
}

impl Shared {
    pub fn new(listen: SocketAddr, node: SocketAddr, key: Option<NetworkKey>) -> Shared {
        let (tracing_done, tracing) = async_channel::bounded(1);
        // The one turn; the channel was just made with room for it.
        let _ = tracing_done.try_send(());
        Shared {
            listen,
            node,
            key,
            hub: Hub::new(),
            connections: AtomicUsize::new(0),
            tracing,
            tracing_done,
        }
    }
}

/// Counts a connection while it lives.
struct Counted(Arc<Shared>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Accept connections for ever, each served on `ex`.
pub async fn accept(
    ex: Arc<async_executor::Executor<'static>>,
    listener: async_net::TcpListener,
    shared: Arc<Shared>,
) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of file descriptors, say: wait instead of spinning.
                tracing::warn!("live view: accept failed: {e}");
                async_io::Timer::after(Duration::from_millis(100)).await;
                continue;
            }
        };
        if shared.connections.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            shared.connections.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        let counted = Counted(shared.clone());
        let shared = shared.clone();
        ex.spawn(async move {
            let _counted = counted;
            let service = hyper::service::service_fn(move |req| route(shared.clone(), req));
            let served = hyper::server::conn::http1::Builder::new()
                .timer(SmolTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .max_buf_size(16 * 1024)
                .serve_connection(FuturesIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!("live view: connection ended: {e}");
            }
        })
        .detach();
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn respond(status: StatusCode, kind: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    respond_with(status, kind, Full::new(body.into()).boxed())
}

/// A response with the headers every answer of the view carries.
fn respond_with(status: StatusCode, kind: &'static str, body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    r
}

fn text(status: StatusCode, msg: &str) -> Response<Body> {
    respond(status, "text/plain; charset=utf-8", format!("{msg}\n"))
}

const JSON: &str = "application/json";

async fn route(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let loopback = shared.listen.ip().is_loopback();
    let host = req.headers().get(HOST).and_then(|h| h.to_str().ok());
    if !host.is_some_and(|h| host_allowed(h, loopback)) {
        return Ok(text(
            StatusCode::FORBIDDEN,
            if loopback {
                "this view answers only to loopback host names (localhost, 127.0.0.1, [::1])"
            } else {
                "this view answers only to its IP address (or localhost), not to DNS names"
            },
        ));
    }
    let path = req.uri().path();
    if path != "/" && !same_site(&req, loopback) {
        return Ok(text(
            StatusCode::FORBIDDEN,
            "the live view's data is for its own page only",
        ));
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(text(
            StatusCode::METHOD_NOT_ALLOWED,
            "the live view is read-only",
        ));
    }
    Ok(match path {
        "/" => {
            let mut r = respond(StatusCode::OK, "text/html; charset=utf-8", PAGE);
            r.headers_mut().insert(
                "content-security-policy",
                HeaderValue::from_static(
                    "default-src 'none'; script-src 'self'; style-src 'self'; \
                     connect-src 'self'; img-src 'self'; base-uri 'none'; \
                     form-action 'none'; frame-ancestors 'none'",
                ),
            );
            r
        }
        "/app.js" => respond(StatusCode::OK, "text/javascript; charset=utf-8", SCRIPT),
        "/style.css" => respond(StatusCode::OK, "text/css; charset=utf-8", STYLE),
        "/api/ring" => match shared.hub.latest() {
            Some(json) => respond(StatusCode::OK, JSON, json),
            None => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the first walk of the ring has not finished yet",
            ),
        },
        "/api/lookup" => lookup(&shared, req.uri().query().unwrap_or("")).await,
        "/events" => events(&shared),
        _ => text(StatusCode::NOT_FOUND, "no such page"),
    })
}

/// May a request name this `Host` (port aside)? On a loopback address, only a loopback
/// name or address; elsewhere any IP address or `localhost`, never a DNS name: a web
/// site's name rebound to our address (DNS rebinding) is thus refused either way.
fn host_allowed(host: &str, loopback_only: bool) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((ip, port)) if port.is_empty() || port.starts_with(':') => ip,
            _ => return false,
        },
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match name.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback() || !loopback_only,
        Err(_) => false,
    }
}

/// Is the request from the view's own page (or from no page at all, as from curl)? A
/// browser says where a request comes from (`Sec-Fetch-Site`, `Origin`); the data, the
/// lookups and the event stream are refused to other sites' pages, which could otherwise
/// read the ring or keep the view busy from a visitor's browser.
fn same_site(req: &Request<Incoming>, loopback_only: bool) -> bool {
    let h = req.headers();
    if let Some(site) = h.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if site != "same-origin" && site != "none" {
            return false;
        }
    }
    match h.get(hyper::header::ORIGIN).map(|v| v.to_str()) {
        None => true,
        Some(Ok(origin)) => origin
            .strip_prefix("http://")
            .is_some_and(|host| host_allowed(host, loopback_only)),
        Some(Err(_)) => false,
    }
}

async fn lookup(shared: &Shared, query: &str) -> Response<Body> {
    let Some(name) = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "key")
        .map(|(_, v)| v.into_owned())
    else {
        return text(
            StatusCode::BAD_REQUEST,
            "say which key: /api/lookup?key=NAME",
        );
    };
    if name.len() > MAX_KEY {
        return text(
            StatusCode::BAD_REQUEST,
            &format!("a key of at most {MAX_KEY} bytes"),
        );
    }
    // One traced lookup at a time; the next waits its turn a while.
    let turn = timeout(LOOKUP_WAIT, shared.tracing.recv()).await;
    if !matches!(turn, Some(Ok(()))) {
        return text(
            StatusCode::TOO_MANY_REQUESTS,
            "busy with other lookups; try again",
        );
    }
    // Given back however the trace ends (a page that goes away drops it half-way).
    let _turn = Turn(&shared.tracing_done);
    let mut walker = super::ring::Walker::new(shared.node, shared.key.clone());
    // Boxed: the trace's future is large, and moved by value into `timeout` it overflowed
    // the view thread's stack in debug builds.
    let traced = timeout(TRACE_DEADLINE, Box::pin(trace::trace(&mut walker, &name))).await;
    let Some(t) = traced else {
        return text(
            StatusCode::GATEWAY_TIMEOUT,
            &format!(
                "the traced lookup took longer than {} s (nodes on the way do not answer)",
                TRACE_DEADLINE.as_secs()
            ),
        );
    };
    respond(
        StatusCode::OK,
        JSON,
        serde_json::to_string(&t).unwrap_or_default(),
    )
}

/// Gives the lookup turn back when dropped.
struct Turn<'a>(&'a async_channel::Sender<()>);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        // The channel holds one turn, which is ours: there is room.
        let _ = self.0.try_send(());
    }
}

fn events(shared: &Shared) -> Response<Body> {
    let Some(rx) = shared.hub.follow() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many pages follow this view",
        );
    };
    let stream = rx.map(|m| Ok::<_, Infallible>(Frame::data(m)));
    respond_with(
        StatusCode::OK,
        "text/event-stream",
        BodyExt::boxed(StreamBody::new(stream)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_host_names_are_served_on_loopback() {
        for ok in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:8080",
            "127.1.2.3",
            "[::1]:80",
            "[::1]",
            "LOCALHOST:1",
        ] {
            assert!(host_allowed(ok, true), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "localhost.evil.example",
            "10.0.0.1:80",
            "[::2]:80",
            "[::1]x",
            "",
        ] {
            assert!(!host_allowed(bad, true), "{bad}");
        }
    }

    #[test]
    fn elsewhere_ip_addresses_but_never_dns_names() {
        for ok in [
            "10.0.0.1:8080",
            "[2001:db8::1]:80",
            "192.168.1.5",
            "localhost",
        ] {
            assert!(host_allowed(ok, false), "{ok}");
        }
        for bad in ["evil.example", "evil.example:8080", "my-laptop:8080", ""] {
            assert!(!host_allowed(bad, false), "{bad}");
        }
    }
}
