//! HTTP/1.1 on a shard: hyper over glommio's TCP streams. Owns what is about
//! connections, not about any protocol: admitting connections (`fairness` decides:
//! per-shard and per-address limits, the reserve), the per-shard request limit,
//! strict request framing (`framing` checks every byte read before hyper parses it),
//! header and body timeouts, the body size limit, graceful shutdown of keep-alive
//! connections, `/metrics`, and latency metrics. Every request then goes to the service
//! layer of `sluice-http`.

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::{TcpListener, TcpStream};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use sluice_http::dms::errors;
use sluice_http::service::{self, PeerAddr, ServiceConfig};
use sluice_node::Node;

use crate::fairness::{self, Refusal};
use crate::framing::{Framing, FramingError};
use crate::metrics::{
    ClusterGauges, GroupLabels, PartitionLabels, QueueGauges, QueueLabels, ReasonLabels,
    TenantLabel,
};
use crate::shard::Shard;

/// Bytes one socket read may take (per shard thread, reused).
const READ_SCRATCH_BYTES: usize = 64 * 1024;
/// hyper's read buffer per connection (its limit on a request head).
pub const READ_BUF_BYTES_MAX: usize = 64 * 1024;
const _: () = assert!(crate::framing::HEAD_BYTES_MAX < READ_BUF_BYTES_MAX);
/// How often an idle wait re-checks for shutdown.
const STOP_POLL_MS: u64 = 50;

/// hyper's I/O traits over a glommio stream, with every byte read checked for strict
/// framing (`framing`) before hyper sees it.
struct GlommioIo {
    stream: TcpStream,
    framing: Framing,
    /// Set at the first framing error: the answer still to write (and how much of it is
    /// written). hyper gets nothing more to read, and may write nothing more.
    refusal: Option<(Vec<u8>, usize)>,
}

impl GlommioIo {
    fn new(stream: TcpStream) -> GlommioIo {
        GlommioIo {
            stream,
            framing: Framing::new(),
            refusal: None,
        }
    }

    /// Writes the refusal, closes the stream, then fails hyper's read, which ends the
    /// connection without an answer of hyper's own. Bounded by hyper's header timeout,
    /// which ends the connection if the client never takes the answer.
    fn poll_refuse(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let (answer, written) = self.refusal.as_mut().expect("refusing");
        // Bounded: every pass writes at least one byte or returns.
        while *written < answer.len() {
            match Pin::new(&mut self.stream).poll_write(cx, &answer[*written..]) {
                Poll::Ready(Ok(0)) => break,
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(_)) => break,
                Poll::Pending => return Poll::Pending,
            }
        }
        if Pin::new(&mut self.stream).poll_close(cx).is_pending() {
            return Poll::Pending;
        }
        Poll::Ready(Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the request's framing was refused",
        )))
    }
}

impl hyper::rt::Read for GlommioIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.refusal.is_some() {
            return self.poll_refuse(cx);
        }
        // Read into this thread's scratch buffer, then copy what arrived: zero-filling
        // hyper's whole uninitialised buffer on every read cost more than the copy.
        thread_local! {
            static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; READ_SCRATCH_BYTES]);
        }
        let read = SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let room = buf.remaining().min(scratch.len());
            let this = &mut *self;
            match Pin::new(&mut this.stream).poll_read(cx, &mut scratch[..room]) {
                Poll::Ready(Ok(n)) => match this.framing.feed(&scratch[..n]) {
                    Ok(()) => {
                        buf.put_slice(&scratch[..n]);
                        Poll::Ready(Ok(None))
                    }
                    Err(error) => Poll::Ready(Ok(Some(error))),
                },
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        });
        match read {
            Poll::Ready(Ok(Some(error))) => {
                let answer = service::error(error.status(), errors_of(&error), error.message());
                self.refusal = Some((raw_response(&answer), 0));
                self.poll_refuse(cx)
            }
            Poll::Ready(Ok(None)) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The DMS code of a framing error.
fn errors_of(error: &FramingError) -> &'static str {
    match error.status() {
        StatusCode::BAD_REQUEST => errors::INVALID_PARAMETER,
        _ => errors::REQUEST_TOO_LARGE,
    }
}

impl hyper::rt::Write for GlommioIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.refusal.is_some() {
            return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_close(cx)
    }
}

/// A whole response as bytes, closing the connection: for answers written outside hyper
/// (refused connections, refused framing).
fn raw_response(response: &Response<Bytes>) -> Vec<u8> {
    let status = response.status();
    let mut bytes = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        response.body().len()
    )
    .into_bytes();
    bytes.extend_from_slice(response.body());
    bytes
}

/// hyper's timer (for the header read timeout) on glommio's timers. hyper asks for
/// `Send + Sync` sleeps because its timer API serves multi-threaded runtimes, and a
/// glommio timer is neither; so a sleep is only a shared flag pair, and the glommio timer
/// runs in a task of the shard that created the sleep. The task sets `fired` when the
/// time is up and wakes whoever polled the sleep; dropping the sleep (the common case: the
/// headers arrived in time) sets `dropped` and wakes the task, which ends and drops its
/// timer at once. Everything is safe code: a waker may be woken from any thread, and
/// glommio queues a wake from another thread to the task's own executor. (An async-io
/// timer, thread-safe by itself, cost a cross-thread wake-up per request: about 6% of
/// the server's CPU in the HTTP benchmark.)
#[derive(Clone)]
pub(crate) struct HyperTimer;

#[derive(Default)]
struct SleepState {
    fired: AtomicBool,
    dropped: AtomicBool,
    /// The task polling the sleep (hyper's connection).
    sleeper: Mutex<Option<Waker>>,
    /// The task running the glommio timer.
    timer: Mutex<Option<Waker>>,
}

impl SleepState {
    /// Sets `flag` and wakes the task waiting in `waker`.
    fn raise(flag: &AtomicBool, waker: &Mutex<Option<Waker>>) {
        flag.store(true, Ordering::Release);
        if let Some(waker) = waker.lock().expect("not poisoned").take() {
            waker.wake();
        }
    }

    /// Ready once `flag` is set; otherwise leaves the current task's waker in `waker`.
    fn poll_flag(flag: &AtomicBool, waker: &Mutex<Option<Waker>>, cx: &Context<'_>) -> Poll<()> {
        if flag.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        *waker.lock().expect("not poisoned") = Some(cx.waker().clone());
        // Set between the first check and storing the waker: do not sleep through it.
        if flag.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

struct HyperSleep(Arc<SleepState>);

impl HyperSleep {
    fn start(duration: Duration) -> HyperSleep {
        let state = Arc::new(SleepState::default());
        let timer_state = state.clone();
        glommio::spawn_local(async move {
            let state = timer_state;
            let dropped =
                std::future::poll_fn(|cx| SleepState::poll_flag(&state.dropped, &state.timer, cx));
            let elapsed = async {
                glommio::timer::sleep(duration).await;
                SleepState::raise(&state.fired, &state.sleeper);
            };
            futures_lite::future::or(elapsed, dropped).await;
        })
        .detach();
        HyperSleep(state)
    }
}

impl Drop for HyperSleep {
    fn drop(&mut self) {
        SleepState::raise(&self.0.dropped, &self.0.timer);
    }
}

impl Future for HyperSleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        SleepState::poll_flag(&self.0.fired, &self.0.sleeper, cx)
    }
}

impl hyper::rt::Sleep for HyperSleep {}

impl hyper::rt::Timer for HyperTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep::start(duration))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        let duration = deadline.saturating_duration_since(Instant::now());
        Box::pin(HyperSleep::start(duration))
    }
}

/// Resolves once the server is stopping.
pub async fn stopped(shard: &Shard) {
    // Polls a flag: signals arrive on another thread, and a 50 ms delay is fine for a stop.
    while !shard.shared.stopping() {
        glommio::timer::sleep(Duration::from_millis(STOP_POLL_MS)).await;
    }
}

/// What a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `http_listen`: the whole API (and `/metrics` unless it has a listener of its own).
    Api,
    /// `metrics_listen`: `/metrics` only.
    Metrics,
}

/// Accepts connections until the server stops.
pub async fn accept_loop(
    shard: Rc<Shard>,
    listener: TcpListener,
    service: Rc<ServiceConfig>,
    role: Role,
) {
    // Runs until shutdown: one accepted connection per iteration.
    while let Some(stream) = next_connection(&shard, &listener, "HTTP").await {
        let peer = stream.peer_addr().ok().map(|address| address.ip());
        let key = peer.map(fairness::client_key);
        if let Err(refusal) = admit(&shard, key) {
            let reason = ReasonLabels {
                reason: refusal.label(),
            };
            shard
                .shared
                .metrics
                .connections_refused
                .get_or_create(&reason)
                .inc();
            glommio::spawn_local(refuse_connection(stream, refusal)).detach();
            continue;
        }
        let shard = shard.clone();
        let service = service.clone();
        glommio::spawn_local(async move {
            serve_connection(&shard, stream, service, role, peer).await;
            release(&shard, key);
        })
        .detach();
    }
}

/// The listener's next connection (with `TCP_NODELAY`), or `None` once the server
/// stops. A failed accept (EMFILE and friends) is logged with `what` and retried after a
/// short pause rather than in a spin. Every listener's accept loop (HTTP, Kafka) starts
/// with this.
pub async fn next_connection(
    shard: &Shard,
    listener: &TcpListener,
    what: &str,
) -> Option<TcpStream> {
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            stopped(shard).await;
            None
        })
        .await?;
        match accepted {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Some(stream);
            }
            Err(error) => {
                eprintln!(
                    "sluice: shard {}: {what} accept failed: {error}",
                    shard.index
                );
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Admits a new connection from the client address `key` (`None`: the peer is gone
/// already, its address unknown) by the shard's and the address's limits (`fairness`),
/// and counts it open; the connection's end must call [`release`]. HTTP and Kafka
/// connections share the limits.
pub fn admit(shard: &Shard, key: Option<IpAddr>) -> Result<(), Refusal> {
    let open = shard.connections_open.get();
    match key {
        Some(key) => shard.addresses.borrow_mut().admit(key, open)?,
        // Only the shard's cap applies.
        None if open >= shard.shared.config.connections_per_shard_max => {
            return Err(Refusal::ShardFull)
        }
        None => {}
    }
    shard.connections_open.set(open + 1);
    Ok(())
}

/// Counts an admitted connection closed.
pub fn release(shard: &Shard, key: Option<IpAddr>) {
    shard.connections_open.set(shard.connections_open.get() - 1);
    if let Some(key) = key {
        shard.addresses.borrow_mut().release(key);
    }
}

/// A connection refused at accept (`fairness`): one 503 in the DMS format, then close.
async fn refuse_connection(mut stream: TcpStream, refusal: Refusal) {
    use futures_lite::AsyncWriteExt;
    let refusal = service::error(
        StatusCode::SERVICE_UNAVAILABLE,
        errors::UNAVAILABLE,
        refusal.message(),
    );
    let _ = stream.write_all(&raw_response(&refusal)).await;
    let _ = stream.close().await;
}

async fn serve_connection(
    shard: &Rc<Shard>,
    stream: TcpStream,
    service: Rc<ServiceConfig>,
    role: Role,
    peer: Option<IpAddr>,
) {
    let config = &shard.shared.config;
    let handler_shard = shard.clone();
    let handler = service_fn(move |mut request: Request<Incoming>| {
        let shard = handler_shard.clone();
        let service = service.clone();
        if let Some(peer) = peer {
            request.extensions_mut().insert(PeerAddr(peer));
        }
        async move {
            // A task of its own, which runs to its end even when hyper drops this future
            // (the client went away): a request dropped half way could abandon the flush
            // or the Ready loop it was driving for every request of its partition (that
            // poisons the log until the engine reopens), and its in-flight count.
            let task = glommio::spawn_local(handle_request(shard, service, role, request));
            let response = task.detach().await.unwrap_or_else(|| {
                service::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    errors::INTERNAL,
                    "The request's task ended without an answer.",
                )
                .map(Full::new)
            });
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(HyperTimer)
        .header_read_timeout(Duration::from_millis(config.header_timeout_ms))
        .keep_alive(true)
        .max_buf_size(READ_BUF_BYTES_MAX);
    let mut connection = pin!(builder.serve_connection(GlommioIo::new(stream), handler));
    let outcome = futures_lite::future::or(async { Some(connection.as_mut().await) }, async {
        stopped(shard).await;
        None
    })
    .await;
    if outcome.is_none() {
        // Finish the request in progress (if any), then close.
        connection.as_mut().graceful_shutdown();
        let _ = connection.await;
    }
}

async fn handle_request(
    shard: Rc<Shard>,
    service: Rc<ServiceConfig>,
    role: Role,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let service = shard.service(&service);
    let (parts, body) = request.into_parts();
    let route = service::route_label(&parts);
    let config = &shard.shared.config;
    let response = if shard.requests_inflight.get() >= config.requests_per_shard_max {
        service::error(
            StatusCode::SERVICE_UNAVAILABLE,
            errors::UNAVAILABLE,
            "The server is at its request limit; retry later.",
        )
    } else {
        shard
            .requests_inflight
            .set(shard.requests_inflight.get() + 1);
        // `/metrics` is served here when this is its listener (docs/server.md, "Metrics").
        let metrics_here = match role {
            Role::Metrics => true,
            Role::Api => config.metrics_listen.is_none(),
        };
        let response = match read_body(&shard, &parts, body).await {
            Err(response) => response,
            Ok(_) if metrics_here && parts.uri.path() == "/metrics" => {
                if parts.method == http::Method::GET {
                    metrics(&shard).await
                } else {
                    service::error(
                        StatusCode::METHOD_NOT_ALLOWED,
                        errors::METHOD_NOT_ALLOWED,
                        "/metrics answers GET only.",
                    )
                }
            }
            Ok(_) if role == Role::Api && parts.uri.path() == "/readyz" => {
                readyz(&shard, &parts.method)
            }
            Ok(_) if role == Role::Metrics => service::error(
                StatusCode::NOT_FOUND,
                errors::RESOURCE_NOT_FOUND,
                "This listener serves /metrics only.",
            ),
            Ok(body) => {
                let node = &*shard.node;
                let response = service::handle(node, &service, &parts, &body).await;
                let peer = parts.extensions.get::<PeerAddr>();
                if let Some(PeerAddr(peer)) = peer.filter(|_| authenticated(route, &response)) {
                    let key = fairness::client_key(*peer);
                    shard.addresses.borrow_mut().authenticated(key);
                }
                response
            }
        };
        shard
            .requests_inflight
            .set(shard.requests_inflight.get() - 1);
        response
    };
    // A refusal made before the SQS adapter answered speaks SQS to an SQS client.
    let response = sluice_http::sqs::as_sqs_error(&parts, response);
    let status = response.status().as_u16();
    shard
        .shared
        .metrics
        .observe_request(route, status, started.elapsed().as_secs_f64());
    response.map(Full::new)
}

/// Whether the service's answer shows that it authenticated the caller (which gives the
/// address a claim to the shard's reserved connections, `fairness`): a token issued, or
/// an answer other than 401 on the admin API or a DMS route, both of which authenticate
/// before anything else.
fn authenticated(route: &str, response: &Response<Bytes>) -> bool {
    let status = response.status();
    match route {
        "keystone_token" => status == StatusCode::CREATED,
        "healthz" | "readyz" | "metrics" | "keystone_version" | "unknown" => false,
        _ => status != StatusCode::UNAUTHORIZED,
    }
}

/// Reads the whole body within the size limit and the body timeout.
async fn read_body(
    shard: &Shard,
    parts: &http::request::Parts,
    body: Incoming,
) -> Result<Bytes, Response<Bytes>> {
    let config = &shard.shared.config;
    let limit = config.request_body_bytes_max;
    let too_large = || {
        service::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            errors::REQUEST_TOO_LARGE,
            format!("The request body is larger than {limit} bytes."),
        )
    };
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let limit_usize = usize::try_from(limit).expect("validated at start-up");
    let collect = async { Some(Limited::new(body, limit_usize).collect().await) };
    let timeout = async {
        glommio::timer::sleep(Duration::from_millis(config.body_timeout_ms)).await;
        None
    };
    match futures_lite::future::or(collect, timeout).await {
        Some(Ok(collected)) => Ok(collected.to_bytes()),
        Some(Err(error)) if error.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Some(Err(error)) => Err(service::error(
            StatusCode::BAD_REQUEST,
            errors::INVALID_PARAMETER,
            format!("The request body could not be read: {error}."),
        )),
        None => Err(service::error(
            StatusCode::REQUEST_TIMEOUT,
            errors::REQUEST_TIMEOUT,
            format!(
                "The request body did not arrive within {} ms.",
                config.body_timeout_ms
            ),
        )),
    }
}

/// `/readyz`: 200 once every partition has a leader this node knows of (on a single node,
/// once the partitions are open), 503 before and while one is unknown (an election, a
/// reopen after a storage fault). The body names each partition's leader (a node id,
/// or null). Unauthenticated, like `/healthz`.
fn readyz(shard: &Shard, method: &http::Method) -> Response<Bytes> {
    if method != http::Method::GET {
        return service::error(
            StatusCode::METHOD_NOT_ALLOWED,
            errors::METHOD_NOT_ALLOWED,
            "/readyz answers GET only.",
        );
    }
    let leaders = shard.shared.leaders();
    let ready = leaders.iter().all(Option::is_some);
    let cluster = shard.shared.cluster.is_some();
    let progress = shard.shared.progress();
    let partitions: Vec<serde_json::Value> = leaders
        .iter()
        .zip(progress)
        .enumerate()
        .map(|(partition, (leader, [term, commit, applied]))| {
            let mut view = serde_json::json!({"partition": partition, "leader": leader});
            if cluster {
                view["term"] = term.into();
                view["commit"] = commit.into();
                view["applied"] = applied.into();
            }
            view
        })
        .collect();
    let (status, word) = if ready {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    };
    let body = serde_json::json!({"status": word, "partitions": partitions});
    service::json_response(status, body.to_string())
}

/// Cluster mode's part of `/metrics`: each partition's Raft progress here, and the
/// shards' forwarding and Raft message counters as they last published them.
fn cluster_gauges(shared: &crate::shared::Shared) -> ClusterGauges {
    let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let gauges = ClusterGauges::new();
    let leaders = shared.leaders();
    for (partition, [term, commit, applied]) in shared.progress().into_iter().enumerate() {
        let labels = PartitionLabels {
            partition: u32::try_from(partition).expect("partitions fit u32"),
        };
        gauges.term.get_or_create(&labels).set(clamp(term));
        gauges.commit.get_or_create(&labels).set(clamp(commit));
        gauges.applied.get_or_create(&labels).set(clamp(applied));
        let leader = leaders.get(partition).copied().flatten().unwrap_or(0);
        gauges.leader.get_or_create(&labels).set(clamp(leader));
    }
    let totals = shared.cluster_counters();
    for ((metric, outcome), total) in crate::shared::CLUSTER_COUNTER_NAMES.iter().zip(totals) {
        gauges.count(metric, outcome, total);
    }
    gauges
}

/// `/metrics`: process metrics, the cluster's (in cluster mode), then every queue's and
/// group's counts.
async fn metrics(shard: &Rc<Shard>) -> Response<Bytes> {
    let node = &*shard.node;
    let gauges = QueueGauges::new();
    let directory = shard.shared.directories.queues.load_full();
    let tenants = node.tenants();
    let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    for view in directory.values() {
        let Ok(counts) = node.queue_counts(view.id).await else {
            continue;
        };
        // Tenant names only when the operator asked (docs/server.md, "Metrics").
        let tenant = TenantLabel {
            project_id: view.tenant.to_string(),
            name: shard
                .shared
                .config
                .metrics_tenant_names
                .then(|| tenants.by_project(&view.tenant).map(|t| t.name.clone()))
                .flatten(),
        };
        let queue = QueueLabels {
            tenant: tenant.clone(),
            queue: view.name.to_string(),
        };
        gauges
            .sent
            .get_or_create(&queue)
            .set(clamp(counts.sent_total));
        gauges
            .stored
            .get_or_create(&queue)
            .set(clamp(counts.stored));
        gauges
            .delayed
            .get_or_create(&queue)
            .set(clamp(counts.delayed));
        for (group, stats) in &counts.groups {
            let name = view
                .groups
                .iter()
                .find(|(g, _)| g == group)
                .map(|(_, n)| n.clone())
                .unwrap_or_default();
            let labels = GroupLabels {
                tenant: tenant.clone(),
                queue: view.name.to_string(),
                group: name,
            };
            gauges
                .backlog
                .get_or_create(&labels)
                .set(clamp(stats.backlog));
            gauges
                .in_flight
                .get_or_create(&labels)
                .set(clamp(stats.in_flight));
            gauges
                .dead_letters
                .get_or_create(&labels)
                .set(clamp(stats.dead_letters));
            gauges
                .delivered
                .get_or_create(&labels)
                .set(clamp(stats.delivered_total));
            gauges
                .acked
                .get_or_create(&labels)
                .set(clamp(stats.acked_total));
        }
    }
    let cluster = shard
        .shared
        .cluster
        .is_some()
        .then(|| cluster_gauges(&shard.shared));
    let text = shard.shared.metrics.render(cluster.as_ref(), &gauges);
    Response::builder()
        .status(StatusCode::OK)
        .header(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
        .body(Bytes::from(text))
        .expect("a valid response")
}
