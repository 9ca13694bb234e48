//! A forwarding HTTP/1.1 proxy for tests, in plain std: it sits between the `b2m` binary (the
//! aws-sdk-s3 client, path-style, plain http) and an upstream S3 server, counts the requests it
//! sees, and can add latency or, once per call, misbehave on a matching request: lose its answer,
//! cut its answer short, or refuse it.
//!
//! How it forwards:
//! - Client side: one thread per accepted connection, serving requests in a loop (keep-alive).
//!   A request body is framed by `Transfer-Encoding: chunked` (copied through byte for byte,
//!   chunk sizes, extensions and trailers included) or by `Content-Length`; none means no body.
//!   `Expect: 100-continue` is answered with `100 Continue` before the body is read.
//! - Upstream side: a fresh connection per request. The request line and header lines are sent
//!   as received (`Host` untouched, since SigV4 signs it) except `Connection`/`Keep-Alive`,
//!   which become `Connection: close`. The answer is read whole (1xx interim answers skipped;
//!   no body after HEAD, 204 or 304; chunked bodies de-chunked, trailers dropped).
//! - Back to the client: the status line and headers as received, minus `Transfer-Encoding`,
//!   `Connection` and `Keep-Alive`, with `Content-Length` set to the body's length (kept as is
//!   for bodiless answers, where it describes the object). The client connection stays open
//!   unless the client asked to close it.
//! - Misbehaving: each `lose_answer_of_next`, `cut_answer_of_next(_then)` and `refuse_next` call
//!   queues one mishap; a request takes the first queued one it matches (method, path suffix,
//!   query part), which is then used up.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// One request the client sent, as it arrived: `path` and `query` are the raw (percent-encoded)
/// parts of the request target, split at the first `?` (`query` is "" when there is none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
}

/// A forwarding proxy on 127.0.0.1. See the module documentation.
pub struct Proxy {
    /// `http://127.0.0.1:<port>`: the endpoint to give the client.
    pub endpoint: String,
    addr: SocketAddr,
    shared: Arc<Shared>,
}

struct Shared {
    /// `host:port` of the upstream server.
    upstream: String,
    seen: Mutex<Vec<Seen>>,
    mishaps: Mutex<Vec<Mishap>>,
    latency: Mutex<Duration>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    stopped: AtomicBool,
}

/// A queued misbehaviour, for the next request that matches.
struct Mishap {
    method: String,
    path_suffix: String,
    query_part: String,
    act: Act,
}

impl Mishap {
    fn matches(&self, seen: &Seen) -> bool {
        self.method.eq_ignore_ascii_case(&seen.method) && seen.path.ends_with(&self.path_suffix) && seen.query.contains(&self.query_part)
    }
}

/// What a `Mishap` does to its request.
enum Act {
    /// `pass_next`: forwarded as usual.
    Pass,
    /// `lose_answer_of_next`.
    Lose,
    /// `cut_answer_of_next` and `cut_answer_of_next_then`.
    Cut { after_body_bytes: usize, then: Box<dyn FnOnce() + Send> },
    /// `refuse_next`.
    Refuse { status: u16, body: String },
}

/// How long the proxy waits on a silent upstream or a client that stopped reading.
const IO_TIMEOUT: Duration = Duration::from_secs(300);
/// The most a request or response head (start line and headers) may take.
const MAX_HEAD: usize = 256 << 10;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Proxy {
    /// Forwards every request on 127.0.0.1:<free port> to `upstream` ("http://127.0.0.1:1234").
    pub fn start(upstream: &str) -> Proxy {
        let authority = upstream.strip_prefix("http://").unwrap_or(upstream).trim_end_matches('/');
        assert!(
            !authority.is_empty() && !authority.contains('/') && !authority.contains("://"),
            "upstream must be http://host:port, got {upstream:?}"
        );
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy on 127.0.0.1");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            upstream: authority.to_string(),
            seen: Mutex::new(Vec::new()),
            mishaps: Mutex::new(Vec::new()),
            latency: Mutex::new(Duration::ZERO),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
        });
        let accepting = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("proxy-accept".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if accepting.stopped.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let serving = Arc::clone(&accepting);
                    // A failed spawn drops the connection: the client sees it closed.
                    let _ = std::thread::Builder::new().name("proxy-conn".into()).spawn(move || serve(stream, &serving));
                }
            })
            .expect("proxy accept thread");
        Proxy { endpoint: format!("http://{addr}"), addr, shared }
    }

    /// Every request seen so far, in arrival order.
    pub fn requests(&self) -> Vec<Seen> {
        lock(&self.shared.seen).clone()
    }

    /// Forgets what was seen (to count one command's requests).
    pub fn reset(&self) {
        lock(&self.shared.seen).clear();
    }

    /// The next request matching `method` whose path ends with `path_suffix` (and whose query
    /// contains `query_part`, "" for any) is forwarded and fully answered upstream, but its answer
    /// is never sent back: the client's connection is closed instead, as when a reply is lost on
    /// the network. Returns at once; applies once (several calls queue several losses).
    pub fn lose_answer_of_next(&self, method: &str, path_suffix: &str, query_part: &str) {
        self.queue(method, path_suffix, query_part, Act::Lose);
    }

    /// The next request matching as for `lose_answer_of_next` is forwarded and fully answered
    /// upstream, and its answer goes back cut short: the status line, the headers (with the
    /// Content-Length of the whole body) and only the first `after_body_bytes` bytes of the body;
    /// then the client's connection is closed, as when a download breaks off mid-stream. A body
    /// no longer than that is sent whole before the close. Returns at once; applies once.
    pub fn cut_answer_of_next(&self, method: &str, path_suffix: &str, query_part: &str, after_body_bytes: usize) {
        self.cut_answer_of_next_then(method, path_suffix, query_part, after_body_bytes, || {});
    }

    /// `cut_answer_of_next`, running `then` on the proxy's thread once the first bytes are sent
    /// and before the connection is closed: the client, still waiting for the rest, cannot act
    /// before `then` has returned (to replace the object mid-download, say).
    pub fn cut_answer_of_next_then(
        &self,
        method: &str,
        path_suffix: &str,
        query_part: &str,
        after_body_bytes: usize,
        then: impl FnOnce() + Send + 'static,
    ) {
        self.queue(method, path_suffix, query_part, Act::Cut { after_body_bytes, then: Box::new(then) });
    }

    /// The next request matching as for `lose_answer_of_next` is forwarded as usual: queued before
    /// another mishap, it lets that one apply to a later request. Returns at once; applies once.
    pub fn pass_next(&self, method: &str, path_suffix: &str, query_part: &str) {
        self.queue(method, path_suffix, query_part, Act::Pass);
    }

    /// The next request matching as for `lose_answer_of_next` is not forwarded: the proxy reads
    /// it and answers it itself with `status` and `body` (`Content-Type: application/xml` when
    /// the body starts with `<`, as S3's error documents do, else `text/plain`). The connection
    /// stays open as for a forwarded answer. Returns at once; applies once.
    pub fn refuse_next(&self, method: &str, path_suffix: &str, query_part: &str, status: u16, body: &str) {
        self.queue(method, path_suffix, query_part, Act::Refuse { status, body: body.to_string() });
    }

    /// How many queued `lose_answer_of_next`, `cut_answer_of_next(_then)` and `refuse_next` calls
    /// no request has matched yet (a test relying on one checks it came to pass).
    pub fn pending(&self) -> usize {
        lock(&self.shared.mishaps).len()
    }

    fn queue(&self, method: &str, path_suffix: &str, query_part: &str, act: Act) {
        lock(&self.shared.mishaps).push(Mishap {
            method: method.to_string(),
            path_suffix: path_suffix.to_string(),
            query_part: query_part.to_string(),
            act,
        });
    }

    /// Adds this delay before forwarding every request (simulates a far-away bucket).
    /// `Duration::ZERO` turns it off.
    pub fn set_latency(&self, d: Duration) {
        *lock(&self.shared.latency) = d;
    }

    /// The most requests that were being forwarded at the same time, since the start.
    pub fn max_concurrent(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    /// Stops accepting; connections being served finish on their own.
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag and drops the listener.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// A start line and header lines as received (line endings removed).
struct Head {
    start: Vec<u8>,
    /// Lowercased name, value (trimmed, lossy: for the proxy's own decisions) and the raw line.
    headers: Vec<(String, String, Vec<u8>)>,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _, _)| n == name).map(|(_, v, _)| v.as_str())
    }

    /// Whether a comma-separated header (all its occurrences) lists `token`.
    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers.iter().filter(|(n, _, _)| n == name).flat_map(|(_, v, _)| v.split(',')).any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// Whether the body is chunked: `chunked` is the last transfer coding.
    fn chunked(&self) -> bool {
        self.headers
            .iter()
            .filter(|(n, _, _)| n == "transfer-encoding")
            .flat_map(|(_, v, _)| v.split(','))
            .map(str::trim)
            .rfind(|t| !t.is_empty())
            .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    }

    fn content_length(&self) -> io::Result<Option<u64>> {
        match self.get("content-length") {
            None => Ok(None),
            Some(v) => v.trim().parse().map(Some).map_err(|_| bad(format!("bad Content-Length {v:?}"))),
        }
    }
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Reads one line including its `\n` into `line` (cleared first); false at EOF before any byte.
fn read_line(r: &mut impl BufRead, line: &mut Vec<u8>, budget: &mut usize) -> io::Result<bool> {
    line.clear();
    let n = r.by_ref().take(*budget as u64 + 1).read_until(b'\n', line)?;
    if n == 0 {
        return Ok(false);
    }
    if n > *budget {
        return Err(bad("head too long"));
    }
    *budget -= n;
    if line.last() != Some(&b'\n') {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed inside a head"));
    }
    Ok(true)
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Reads a start line and headers. `Ok(None)` when the peer closed before sending anything.
fn read_head(r: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut budget = MAX_HEAD;
    let mut line = Vec::new();
    // Empty lines before a start line are ignored (RFC 9112 §2.2).
    let start = loop {
        if !read_line(r, &mut line, &mut budget)? {
            return Ok(None);
        }
        let l = trim_eol(&line);
        if !l.is_empty() {
            break l.to_vec();
        }
    };
    let mut headers = Vec::new();
    loop {
        if !read_line(r, &mut line, &mut budget)? {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed inside a head"));
        }
        let l = trim_eol(&line);
        if l.is_empty() {
            break;
        }
        let text = String::from_utf8_lossy(l);
        let (name, value) = text.split_once(':').ok_or_else(|| bad(format!("bad header line {text:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string(), l.to_vec()));
    }
    Ok(Some(Head { start, headers }))
}

/// Reads exactly `n` bytes onto the end of `out`.
fn read_n(r: &mut impl Read, n: u64, out: &mut Vec<u8>) -> io::Result<()> {
    if let Ok(n) = usize::try_from(n) {
        out.reserve(n);
    }
    let got = r.by_ref().take(n).read_to_end(out)?;
    if got as u64 != n {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("body cut short: {got} of {n} bytes")));
    }
    Ok(())
}

/// Reads a chunked body. With `raw`, appends the bytes exactly as received (sizes, extensions,
/// CRLFs, trailers); without, appends only the chunks' data (trailers dropped).
fn read_chunked(r: &mut impl BufRead, out: &mut Vec<u8>, raw: bool) -> io::Result<()> {
    let mut line = Vec::new();
    loop {
        let mut budget = MAX_HEAD;
        if !read_line(r, &mut line, &mut budget)? {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed inside a chunked body"));
        }
        let text = String::from_utf8_lossy(trim_eol(&line)).into_owned();
        let size_text = text.split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(size_text, 16).map_err(|_| bad(format!("bad chunk size line {text:?}")))?;
        if raw {
            out.extend_from_slice(&line);
        }
        if size == 0 {
            // Trailer section, up to and including the empty line.
            let mut budget = MAX_HEAD;
            loop {
                if !read_line(r, &mut line, &mut budget)? {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed inside chunked trailers"));
                }
                if raw {
                    out.extend_from_slice(&line);
                }
                if trim_eol(&line).is_empty() {
                    return Ok(());
                }
            }
        }
        read_n(r, size, out)?;
        let mut budget = 2;
        if !read_line(r, &mut line, &mut budget)? || !trim_eol(&line).is_empty() {
            return Err(bad("chunk data not followed by CRLF"));
        }
        if raw {
            out.extend_from_slice(&line);
        }
    }
}

/// Counts a request as being forwarded while alive.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn new(shared: &'a Shared) -> Self {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves one client connection until it closes, an error, or a lost or cut answer.
fn serve(client: TcpStream, shared: &Shared) {
    let _ = client.set_nodelay(true);
    let _ = client.set_write_timeout(Some(IO_TIMEOUT));
    let Ok(mut writer) = client.try_clone() else { return };
    let mut reader = BufReader::with_capacity(256 << 10, client);
    loop {
        match serve_one(&mut reader, &mut writer, shared) {
            Ok(true) => continue,
            Ok(false) | Err(_) => {
                let _ = writer.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}

/// Forwards one request and answers it. `Ok(true)` to keep the connection for the next one.
fn serve_one(reader: &mut BufReader<TcpStream>, writer: &mut TcpStream, shared: &Shared) -> io::Result<bool> {
    let Some(head) = read_head(reader)? else { return Ok(false) };
    let start = String::from_utf8_lossy(&head.start).into_owned();
    let mut parts = start.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad(format!("bad request line {start:?}")));
    };
    let method = method.to_string();
    // Origin form `/path?query`; an absolute form `http://host/path?query` is reduced to it.
    let origin = match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    let (path, query) = origin.split_once('?').unwrap_or((origin, ""));
    let seen = Seen { method: method.clone(), path: path.to_string(), query: query.to_string() };
    let act = {
        let mut mishaps = lock(&shared.mishaps);
        let hit = mishaps.iter().position(|m| m.matches(&seen));
        hit.map(|i| mishaps.remove(i).act)
    };
    lock(&shared.seen).push(seen);
    let _in_flight = InFlight::new(shared);

    let http10 = version.eq_ignore_ascii_case("HTTP/1.0");
    let client_closes = head.has_token("connection", "close") || (http10 && !head.has_token("connection", "keep-alive"));

    // The body, as received.
    let mut body = Vec::new();
    if head.chunked() {
        if head.has_token("expect", "100-continue") {
            writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        read_chunked(reader, &mut body, true)?;
    } else if let Some(n) = head.content_length()? {
        if n > 0 && head.has_token("expect", "100-continue") {
            writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        read_n(reader, n, &mut body)?;
    }

    let latency = *lock(&shared.latency);
    if !latency.is_zero() {
        std::thread::sleep(latency);
    }

    if let Some(Act::Refuse { status, body }) = &act {
        writer.write_all(&refusal(*status, body, client_closes, http10))?;
        writer.flush()?;
        return Ok(!client_closes);
    }

    let lose = matches!(act, Some(Act::Lose));
    let answer = match forward(&shared.upstream, &head, &body, method.eq_ignore_ascii_case("HEAD")) {
        Ok(answer) => answer,
        Err(e) => {
            if !lose {
                let text = format!("proxy: upstream {} failed: {e}\n", shared.upstream);
                let reply = format!(
                    "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = writer.write_all(reply.as_bytes());
            }
            return Ok(false);
        }
    };
    let encoded = answer.encode(client_closes, http10);
    match act {
        Some(Act::Lose) => {
            // The write happened upstream and its answer is in hand: drop it and the connection.
            Ok(false)
        }
        Some(Act::Cut { after_body_bytes, then }) => {
            // The body is the end of the encoded answer: keep the head and the body's first bytes.
            let body_len = answer.body.as_ref().map_or(0, Vec::len);
            let keep = encoded.len() - body_len + after_body_bytes.min(body_len);
            let _ = writer.write_all(&encoded[..keep]).and_then(|()| writer.flush());
            then();
            Ok(false)
        }
        Some(Act::Refuse { .. } | Act::Pass) | None => {
            writer.write_all(&encoded)?;
            writer.flush()?;
            Ok(!client_closes)
        }
    }
}

/// The proxy's own answer for `refuse_next`.
fn refusal(status: u16, body: &str, close: bool, http10: bool) -> Vec<u8> {
    let reason = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        412 => "Precondition Failed",
        416 => "Range Not Satisfiable",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Refused",
    };
    let content_type = if body.starts_with('<') { "application/xml" } else { "text/plain" };
    let connection = if close {
        "Connection: close\r\n"
    } else if http10 {
        "Connection: keep-alive\r\n"
    } else {
        ""
    };
    format!("HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{connection}\r\n{body}", body.len())
        .into_bytes()
}

/// An upstream answer, read whole.
struct Answer {
    head: Head,
    /// None for answers that have no body whatever their headers say (HEAD, 204, 304).
    body: Option<Vec<u8>>,
}

impl Answer {
    /// The answer as it goes back to the client, framed by Content-Length.
    fn encode(&self, close: bool, http10: bool) -> Vec<u8> {
        let body_len = self.body.as_ref().map_or(0, Vec::len);
        let mut out = Vec::with_capacity(self.head.start.len() + 64 * (self.head.headers.len() + 2) + body_len);
        out.extend_from_slice(&self.head.start);
        out.extend_from_slice(b"\r\n");
        for (name, _, raw) in &self.head.headers {
            let framing = matches!(name.as_str(), "transfer-encoding" | "connection" | "keep-alive" | "proxy-connection");
            if framing || (self.body.is_some() && name == "content-length") {
                continue;
            }
            out.extend_from_slice(raw);
            out.extend_from_slice(b"\r\n");
        }
        if self.body.is_some() {
            out.extend_from_slice(format!("Content-Length: {body_len}\r\n").as_bytes());
        }
        if close {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if http10 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if let Some(body) = &self.body {
            out.extend_from_slice(body);
        }
        out
    }
}

/// Sends the request upstream on a fresh connection and reads the whole answer.
fn forward(upstream: &str, head: &Head, body: &[u8], is_head: bool) -> io::Result<Answer> {
    let stream = TcpStream::connect(upstream)?;
    let _ = stream.set_nodelay(true);
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut request = Vec::with_capacity(head.start.len() + 64 * (head.headers.len() + 2));
    request.extend_from_slice(&head.start);
    request.extend_from_slice(b"\r\n");
    for (name, _, raw) in &head.headers {
        if matches!(name.as_str(), "connection" | "keep-alive" | "proxy-connection") {
            continue;
        }
        request.extend_from_slice(raw);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"Connection: close\r\n\r\n");
    let mut writer = stream.try_clone()?;
    let sent = writer.write_all(&request).and_then(|()| writer.write_all(body)).and_then(|()| writer.flush());
    // An upstream may answer early (say, 403) and stop reading: its answer still counts.
    let mut reader = BufReader::with_capacity(256 << 10, stream);
    let answer = read_answer(&mut reader, is_head);
    match (answer, sent) {
        (Ok(a), _) => Ok(a),
        (Err(e), Ok(())) => Err(e),
        (Err(_), Err(e)) => Err(e),
    }
}

fn read_answer(reader: &mut impl BufRead, is_head: bool) -> io::Result<Answer> {
    loop {
        let head = read_head(reader)?.ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "upstream closed without answering"))?;
        let start = String::from_utf8_lossy(&head.start).into_owned();
        let status: u16 =
            start.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad(format!("bad status line {start:?}")))?;
        if (100..200).contains(&status) && status != 101 {
            continue; // 100 Continue and other interim answers: the final one follows.
        }
        if is_head || status == 204 || status == 304 || (100..200).contains(&status) {
            return Ok(Answer { head, body: None });
        }
        let mut body = Vec::new();
        if head.chunked() {
            read_chunked(reader, &mut body, false)?;
        } else if let Some(n) = head.content_length()? {
            read_n(reader, n, &mut body)?;
        } else {
            reader.read_to_end(&mut body)?;
        }
        return Ok(Answer { head, body: Some(body) });
    }
}
