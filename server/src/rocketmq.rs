//! The RocketMQ 5 gRPC listener on a shard: every shard listens on `rocketmq_listen`
//! (SO_REUSEPORT, like the HTTP and Kafka ports), admits connections by the same
//! per-shard and per-address limits (`fairness`; the listeners share the counts), and
//! serves each connection with hyper's HTTP/2 server over glommio (plaintext h2c, which is
//! what the RocketMQ clients use unless told to use TLS). This file owns the bytes: the
//! HTTP/2 connection, the gRPC request and response bodies (messages framed by
//! `sluice_rocketmq::grpc`, the `grpc-status` trailers), timeouts and bounds. What a call
//! means is the adapter's (`sluice_rocketmq::unary`, `sluice_rocketmq::Telemetry`).
//!
//! Bounds: [`STREAMS_PER_CONNECTION_MAX`] calls at a time per connection, a gRPC message
//! of at most `sluice_rocketmq::limits::GRPC_MESSAGE_BYTES_MAX` (a larger length prefix
//! ends the call with RESOURCE_EXHAUSTED before its body is read), headers of at most
//! [`HEADER_LIST_BYTES_MAX`], one request message per unary call arriving within
//! `body_timeout_ms`, and at most `TELEMETRY_OUTBOX_MAX` answers queued on a Telemetry
//! stream (a client that does not read them stalls only its own stream). A producer's
//! Telemetry stream looks for checks of its open transactions every
//! `TRANSACTION_CHECK_POLL_MS` and writes them on the stream. Unary calls
//! count against the shard's request limit like HTTP requests; over it they answer
//! RESOURCE_EXHAUSTED. At shutdown, Telemetry streams end with UNAVAILABLE and the
//! connection closes once its calls are answered.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncWrite, Stream};
use glommio::net::{TcpListener, TcpStream};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http2;
use hyper::service::service_fn;
use sluice_rocketmq::limits::{TELEMETRY_OUTBOX_MAX, TRANSACTION_CHECK_POLL_MS};
use sluice_rocketmq::{
    grpc, method_of, Answer, FrameDecoder, GrpcCode, Method, RocketMqConfig, Telemetry,
};

use crate::fairness;
use crate::http::{admit, next_connection, release, stopped, HyperTimer};
use crate::metrics::ReasonLabels;
use crate::shard::Shard;

/// Calls (HTTP/2 streams) one connection may have open at once.
pub const STREAMS_PER_CONNECTION_MAX: u32 = 64;
/// Bytes of a call's headers.
pub const HEADER_LIST_BYTES_MAX: u32 = 16 * 1024;
/// Between HTTP/2 pings on a connection, and how long a ping's answer may take before
/// the connection is closed (a client gone without a FIN).
const KEEP_ALIVE_INTERVAL_MS: u64 = 60_000;
const KEEP_ALIVE_TIMEOUT_MS: u64 = 20_000;

/// hyper's I/O traits over a glommio stream (HTTP/2 needs no framing checks of ours:
/// hyper's h2 enforces its own frame and header limits).
struct PlainIo(TcpStream);

impl hyper::rt::Read for PlainIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        // Safe code only: read into a zeroed scratch of the cursor's size, then copy.
        let mut scratch = [0u8; 16 * 1024];
        let room = buf.remaining().min(scratch.len());
        match Pin::new(&mut self.0).poll_read(cx, &mut scratch[..room]) {
            Poll::Ready(Ok(n)) => {
                buf.put_slice(&scratch[..n]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl hyper::rt::Write for PlainIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}

/// hyper's HTTP/2 runs each stream as a task of the connection's shard.
#[derive(Clone, Copy)]
struct LocalExecutor;

impl<F> hyper::rt::Executor<F> for LocalExecutor
where
    F: Future + 'static,
    F::Output: 'static,
{
    fn execute(&self, future: F) {
        glommio::spawn_local(future).detach();
    }
}

/// A gRPC response body: framed messages known at once, or (Telemetry) a bounded channel
/// of frames the call's task writes; then the trailers.
struct GrpcBody {
    messages: VecDeque<Bytes>,
    stream: Option<Pin<Box<async_channel::Receiver<Frame<Bytes>>>>>,
    trailers: Option<HeaderMap>,
}

impl hyper::body::Body for GrpcBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(message) = this.messages.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(message))));
        }
        if let Some(stream) = this.stream.as_mut() {
            match stream.as_mut().poll_next(cx) {
                Poll::Ready(Some(frame)) => return Poll::Ready(Some(Ok(frame))),
                Poll::Ready(None) => this.stream = None,
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(
            this.trailers
                .take()
                .map(|trailers| Ok(Frame::trailers(trailers))),
        )
    }
}

/// The trailers that end a call.
fn trailers(code: GrpcCode, message: &str) -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static(code.as_str()));
    if !message.is_empty() {
        let encoded = grpc::encode_message(message);
        if let Ok(value) = HeaderValue::from_str(&encoded) {
            trailers.insert("grpc-message", value);
        }
    }
    trailers
}

/// A gRPC response: status 200, `application/grpc`, the body.
fn response(body: GrpcBody) -> Response<GrpcBody> {
    let mut response = Response::new(body);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    response
}

fn answer_response(answer: Answer) -> Response<GrpcBody> {
    response(GrpcBody {
        messages: answer.messages.into(),
        stream: None,
        trailers: Some(trailers(answer.code, &answer.message)),
    })
}

/// Accepts RocketMQ connections until the server stops.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, config: Arc<RocketMqConfig>) {
    // Runs until shutdown: one accepted connection per iteration.
    while let Some(stream) = next_connection(&shard, &listener, "RocketMQ").await {
        let key = stream
            .peer_addr()
            .ok()
            .map(|address| fairness::client_key(address.ip()));
        let metrics = &shard.shared.metrics;
        if let Err(refusal) = admit(&shard, key) {
            // HTTP/2 has no answer before the preface: the connection is only closed.
            let reason = ReasonLabels {
                reason: refusal.label(),
            };
            metrics
                .rocketmq_connections_refused
                .get_or_create(&reason)
                .inc();
            drop(stream);
            continue;
        }
        metrics.rocketmq_connections.inc();
        metrics.rocketmq_connections_open.inc();
        let shard = shard.clone();
        let config = config.clone();
        glommio::spawn_local(async move {
            serve_connection(&shard, stream, config).await;
            shard.shared.metrics.rocketmq_connections_open.dec();
            release(&shard, key);
        })
        .detach();
    }
}

async fn serve_connection(shard: &Rc<Shard>, stream: TcpStream, config: Arc<RocketMqConfig>) {
    let handler_shard = shard.clone();
    let handler = service_fn(move |request: Request<Incoming>| {
        let shard = handler_shard.clone();
        let config = config.clone();
        async move { Ok::<_, Infallible>(handle(shard, config, request).await) }
    });
    let mut builder = http2::Builder::new(LocalExecutor);
    builder
        .timer(HyperTimer)
        .max_concurrent_streams(STREAMS_PER_CONNECTION_MAX)
        .max_header_list_size(HEADER_LIST_BYTES_MAX)
        .keep_alive_interval(Some(Duration::from_millis(KEEP_ALIVE_INTERVAL_MS)))
        .keep_alive_timeout(Duration::from_millis(KEEP_ALIVE_TIMEOUT_MS));
    let mut connection = pin!(builder.serve_connection(PlainIo(stream), handler));
    let outcome = futures_lite::future::or(async { Some(connection.as_mut().await) }, async {
        stopped(shard).await;
        None
    })
    .await;
    if outcome.is_none() {
        // Finish the calls in progress (Telemetry streams end themselves), then close.
        connection.as_mut().graceful_shutdown();
        let _ = connection.await;
    }
}

/// One call.
async fn handle(
    shard: Rc<Shard>,
    config: Arc<RocketMqConfig>,
    request: Request<Incoming>,
) -> Response<GrpcBody> {
    shard.shared.metrics.rocketmq_calls.inc();
    let grpc = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"));
    if request.method() != http::Method::POST || !grpc {
        let mut refusal = response(GrpcBody {
            messages: VecDeque::new(),
            stream: None,
            trailers: None,
        });
        *refusal.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
        return refusal;
    }
    let Some(method) = method_of(request.uri().path()) else {
        let path = request.uri().path().to_string();
        return answer_response(Answer::error(
            GrpcCode::Unimplemented,
            format!("{path} is not served"),
        ));
    };
    let (parts, body) = request.into_parts();
    if method == Method::Telemetry {
        return telemetry(shard, parts.headers, body);
    }
    let message = match read_one(&shard, body).await {
        Ok(message) => message,
        Err(answer) => return answer_response(answer),
    };
    let limit = shard.shared.config.requests_per_shard_max;
    if shard.requests_inflight.get() >= limit {
        return answer_response(Answer::error(
            GrpcCode::ResourceExhausted,
            "the server is busy; retry",
        ));
    }
    shard
        .requests_inflight
        .set(shard.requests_inflight.get() + 1);
    // A task of its own, which runs to its end even when hyper drops this future (the
    // client cancelled): a node call dropped half way could abandon work other requests
    // wait on (see `http::serve_connection`).
    let task_shard = shard.clone();
    let task = glommio::spawn_local(async move {
        let shard = task_shard;
        let answer =
            sluice_rocketmq::unary(&*shard.node, &config, method, &parts.headers, message).await;
        shard
            .requests_inflight
            .set(shard.requests_inflight.get() - 1);
        answer
    });
    let answer = task.detach().await.unwrap_or_else(|| {
        Answer::error(
            GrpcCode::Internal,
            "the call's task ended without an answer",
        )
    });
    answer_response(answer)
}

/// The one message of a unary call's request, read within `body_timeout_ms`.
async fn read_one(shard: &Shard, mut body: Incoming) -> Result<Bytes, Answer> {
    let read = async {
        let mut decoder = FrameDecoder::new();
        let mut message = None;
        // Bounded: each pass takes one frame of the stream, and the decoder refuses a
        // second message or one above the size limit.
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|error| {
                Answer::error(GrpcCode::Internal, format!("reading the request: {error}"))
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            decoder.push(&data);
            while let Some(next) = decoder
                .next_message()
                .map_err(|error| Answer::error(error.code(), error.to_string()))?
            {
                if message.replace(next).is_some() {
                    return Err(Answer::error(
                        GrpcCode::InvalidArgument,
                        "a unary call carries one request message",
                    ));
                }
            }
        }
        decoder
            .finish()
            .map_err(|error| Answer::error(error.code(), error.to_string()))?;
        message.ok_or_else(|| Answer::error(GrpcCode::InvalidArgument, "no request message"))
    };
    let timeout = async {
        let ms = shard.shared.config.body_timeout_ms;
        glommio::timer::sleep(Duration::from_millis(ms)).await;
        Err(Answer::error(
            GrpcCode::InvalidArgument,
            "the request message did not arrive in time",
        ))
    };
    futures_lite::future::or(read, timeout).await
}

/// What a Telemetry stream's task waits for.
enum Event {
    /// The client's next frame (or its end, or a failed read).
    Frame(Option<Result<Frame<Bytes>, hyper::Error>>),
    /// The server is stopping.
    Stop,
    /// Time to look for transaction checks.
    Poll,
}

/// A Telemetry call: a task reads the client's commands and writes the answers into the
/// response body's bounded channel until the client ends its side, the connection goes,
/// or the server stops.
fn telemetry(shard: Rc<Shard>, headers: HeaderMap, mut body: Incoming) -> Response<GrpcBody> {
    let (sender, receiver) = async_channel::bounded::<Frame<Bytes>>(TELEMETRY_OUTBOX_MAX);
    glommio::spawn_local(async move {
        let end = |code: GrpcCode, message: &str| Frame::trailers(trailers(code, message));
        let mut session = match Telemetry::open(&*shard.node, &headers).await {
            Ok(session) => session,
            Err(refusal) => {
                let _ = sender.send(Frame::data(refusal)).await;
                let _ = sender.send(end(GrpcCode::Ok, "")).await;
                return;
            }
        };
        let mut decoder = FrameDecoder::new();
        // Runs for the life of the stream: one frame of the client, or one pass over
        // the producer's transaction checks, per iteration.
        loop {
            let frame = async { Event::Frame(body.frame().await) };
            let stop = async {
                stopped(&shard).await;
                Event::Stop
            };
            let poll = async {
                glommio::timer::sleep(Duration::from_millis(TRANSACTION_CHECK_POLL_MS)).await;
                Event::Poll
            };
            let next = futures_lite::future::or(frame, futures_lite::future::or(stop, poll)).await;
            let frame = match next {
                Event::Stop => {
                    let _ = sender
                        .send(end(GrpcCode::Unavailable, "the server is stopping"))
                        .await;
                    return;
                }
                Event::Poll => {
                    if session.wants_checks() {
                        for command in session.take_checks(&*shard.node).await {
                            if sender.send(Frame::data(command)).await.is_err() {
                                return;
                            }
                        }
                    }
                    continue;
                }
                Event::Frame(None) => break,
                Event::Frame(Some(Ok(frame))) => frame,
                // The client went away: nobody reads the answer.
                Event::Frame(Some(Err(_))) => return,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            decoder.push(&data);
            if !telemetry_commands(&shard, &mut session, &mut decoder, &sender).await {
                return;
            }
        }
        let _ = sender.send(end(GrpcCode::Ok, "")).await;
    })
    .detach();
    response(GrpcBody {
        messages: VecDeque::new(),
        stream: Some(Box::pin(receiver)),
        trailers: None,
    })
}

/// Answers every whole command the client's stream holds; false once the stream ended
/// (a bad frame or command, answered with its gRPC error, or a client gone).
async fn telemetry_commands(
    shard: &Shard,
    session: &mut Telemetry,
    decoder: &mut FrameDecoder,
    sender: &async_channel::Sender<Frame<Bytes>>,
) -> bool {
    let end = |code: GrpcCode, message: &str| Frame::trailers(trailers(code, message));
    // Bounded by the bytes pushed: every pass takes one whole message or stops.
    loop {
        let message = match decoder.next_message() {
            Ok(Some(message)) => message,
            Ok(None) => return true,
            Err(error) => {
                let _ = sender.send(end(error.code(), &error.to_string())).await;
                return false;
            }
        };
        match session.command(&*shard.node, message) {
            Ok(Some(reply)) => {
                if sender.send(Frame::data(reply)).await.is_err() {
                    return false;
                }
            }
            Ok(None) => {}
            Err(why) => {
                let _ = sender.send(end(GrpcCode::InvalidArgument, &why)).await;
                return false;
            }
        }
    }
}

/// The RocketMQ listener as the start-up banner names it.
pub fn describe(bound: SocketAddr) -> String {
    format!("rocketmq on {bound}")
}
