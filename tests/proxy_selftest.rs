//! The test proxy (tests/common/proxy.rs) checked on its own: byte-level framing against a raw
//! upstream, then the real `b2m` binary through it to the S3 server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;

fn count(seen: &[Seen], method: &str, path_suffix: &str, query_part: &str) -> usize {
    seen.iter().filter(|s| s.method == method && s.path.ends_with(path_suffix) && s.query.contains(query_part)).count()
}

fn s3_project(proxy: &Proxy) -> Project {
    Project::with_remote(&format!("s3://{BUCKET}/{PREFIX}"), Some(proxy.endpoint.clone()))
}

/// A raw upstream: one request per connection; each request's bytes as received are kept, and
/// answered in a way chosen by its path (by default, echoed back as a chunked body with trailers).
struct RawUpstream {
    endpoint: String,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl RawUpstream {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let received = Arc::new(Mutex::new(Vec::new()));
        let keep = Arc::clone(&received);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let keep = Arc::clone(&keep);
                std::thread::spawn(move || answer(stream, &keep));
            }
        });
        RawUpstream { endpoint, received }
    }

    fn received(&self) -> Vec<Vec<u8>> {
        self.received.lock().expect("received").clone()
    }
}

fn answer(stream: TcpStream, keep: &Mutex<Vec<Vec<u8>>>) {
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    let mut raw = Vec::new();
    loop {
        let before = raw.len();
        reader.read_until(b'\n', &mut raw).expect("head line");
        if raw.len() == before {
            return;
        }
        if raw[before..] == *b"\r\n" {
            break;
        }
    }
    let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    if head.contains("transfer-encoding: chunked\r\n") {
        // The test bodies have no trailers: the body ends at the last chunk.
        while !raw.ends_with(b"\r\n0\r\n\r\n") {
            let mut byte = [0u8];
            reader.read_exact(&mut byte).expect("chunked body");
            raw.push(byte[0]);
        }
    } else if let Some(n) = head.lines().find_map(|l| l.strip_prefix("content-length:")) {
        let n: usize = n.trim().parse().expect("length");
        let mut body = vec![0; n];
        reader.read_exact(&mut body).expect("body");
        raw.extend_from_slice(&body);
    }
    keep.lock().expect("keep").push(raw.clone());
    let first = head.lines().next().unwrap_or("").to_string();
    let reply: Vec<u8> = if first.starts_with("head ") {
        b"HTTP/1.1 200 OK\r\nContent-Length: 12345\r\nETag: \"abc\"\r\n\r\n".to_vec()
    } else if first.contains(" /not-modified ") {
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 999\r\n\r\n".to_vec()
    } else if first.contains(" /no-content ") {
        b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n".to_vec()
    } else if first.contains(" /continue ") {
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec()
    } else if first.contains(" /until-eof ") {
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbody to the end".to_vec()
    } else {
        let mut out = b"HTTP/1.1 200 OK\r\nX-Echo: yes\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        let (a, b) = raw.split_at(raw.len() / 2);
        for (i, chunk) in [a, b].iter().enumerate() {
            out.extend_from_slice(format!("{:x}{}\r\n", chunk.len(), if i == 0 { ";note=1" } else { "" }).as_bytes());
            out.extend_from_slice(chunk);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\nX-Trailer: dropped\r\n\r\n");
        out
    };
    let _ = writer.write_all(&reply);
}

/// Reads one answer: (status line and headers, body framed by Content-Length unless `no_body`).
fn read_answer(r: &mut BufReader<TcpStream>, no_body: bool) -> (String, Vec<u8>) {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let n = r.read_line(&mut line).expect("answer line");
        assert!(n > 0, "connection closed; head so far: {head:?}");
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    assert!(!head.to_ascii_lowercase().contains("transfer-encoding"), "{head}");
    let length = head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()));
    let mut body = Vec::new();
    if !no_body {
        let n: usize = length.expect("every answer with a body carries Content-Length").parse().expect("length");
        body.resize(n, 0);
        r.read_exact(&mut body).expect("body");
    }
    (head, body)
}

fn connect(proxy: &Proxy) -> (TcpStream, BufReader<TcpStream>) {
    let stream = TcpStream::connect(proxy.endpoint.trim_start_matches("http://")).expect("connect to the proxy");
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let reader = BufReader::new(stream.try_clone().expect("clone"));
    (stream, reader)
}

#[test]
fn framing_keep_alive_and_host_hold_on_one_connection() {
    let upstream = RawUpstream::start();
    let proxy = Proxy::start(&upstream.endpoint);
    let (mut s, mut r) = connect(&proxy);

    // A GET: forwarded with its Host and headers as sent, `Connection: close` upstream; the
    // chunked echo comes back de-chunked with a Content-Length.
    s.write_all(b"GET /bucket/a/b.txt?x-id=GetObject&partNumber=2 HTTP/1.1\r\nHost: 127.0.0.1:9\r\nX-Amz-Date: 20250101T000000Z\r\nConnection: keep-alive\r\n\r\n")
        .expect("send");
    let (head, body) = read_answer(&mut r, false);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.contains("X-Echo: yes\r\n"), "{head}");
    assert!(!head.contains("X-Trailer"), "{head}");
    let forwarded = String::from_utf8(body).expect("utf8");
    assert!(forwarded.starts_with("GET /bucket/a/b.txt?x-id=GetObject&partNumber=2 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n"), "{forwarded}");
    assert!(forwarded.contains("X-Amz-Date: 20250101T000000Z\r\n") && forwarded.ends_with("Connection: close\r\n\r\n"), "{forwarded}");
    assert!(!forwarded.contains("keep-alive"), "{forwarded}");

    // A chunked PUT on the same connection: its body goes upstream byte for byte.
    let chunked = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n";
    let mut put = b"PUT /bucket/k HTTP/1.1\r\nHost: 127.0.0.1:9\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    put.extend_from_slice(chunked);
    s.write_all(&put).expect("send");
    let (_, body) = read_answer(&mut r, false);
    assert!(body.ends_with(&[b"Connection: close\r\n\r\n".as_slice(), chunked].concat()), "{}", String::from_utf8_lossy(&body));

    // A PUT framed by Content-Length, asking for 100-continue.
    s.write_all(b"PUT /bucket/cl HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello").expect("send");
    let (head, body) = read_answer(&mut r, true);
    assert!(head.starts_with("HTTP/1.1 100 Continue"), "{head}");
    let (head, _) = read_answer(&mut r, true);
    let n: usize = head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).expect("length").parse().expect("n");
    let mut echoed = vec![0; n];
    r.read_exact(&mut echoed).expect("body");
    assert!(body.is_empty() && echoed.ends_with(b"\r\n\r\nhello"), "{}", String::from_utf8_lossy(&echoed));

    // Bodiless answers keep their Content-Length and send nothing after the head.
    s.write_all(b"HEAD /bucket/k HTTP/1.1\r\nHost: h\r\n\r\n").expect("send");
    let (head, _) = read_answer(&mut r, true);
    assert!(head.contains("Content-Length: 12345\r\n") && head.contains("ETag: \"abc\""), "{head}");
    s.write_all(b"GET /not-modified HTTP/1.1\r\nHost: h\r\n\r\n").expect("send");
    let (head, _) = read_answer(&mut r, true);
    assert!(head.starts_with("HTTP/1.1 304 ") && head.contains("Content-Length: 999\r\n"), "{head}");
    s.write_all(b"DELETE /no-content HTTP/1.1\r\nHost: h\r\n\r\n").expect("send");
    let (head, _) = read_answer(&mut r, true);
    assert!(head.starts_with("HTTP/1.1 204 "), "{head}");

    // An interim 100 upstream is skipped; a body that runs to EOF gets a Content-Length.
    s.write_all(b"GET /continue HTTP/1.1\r\nHost: h\r\n\r\n").expect("send");
    let (head, body) = read_answer(&mut r, false);
    assert!(head.starts_with("HTTP/1.1 200 OK") && body == b"ok", "{head}");
    s.write_all(b"GET /until-eof HTTP/1.1\r\nHost: h\r\n\r\n").expect("send");
    let (head, body) = read_answer(&mut r, false);
    assert!(!head.contains("Connection"), "the client's connection stays open: {head}");
    assert_eq!(body, b"body to the end");

    // The client closing: the answer says so, then EOF.
    s.write_all(b"GET /last HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").expect("send");
    let (head, _) = read_answer(&mut r, false);
    assert!(head.contains("Connection: close\r\n"), "{head}");
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).expect("EOF");
    assert!(rest.is_empty());

    let seen: Vec<(String, String, String)> = proxy.requests().into_iter().map(|s| (s.method, s.path, s.query)).collect();
    let expected = [
        ("GET", "/bucket/a/b.txt", "x-id=GetObject&partNumber=2"),
        ("PUT", "/bucket/k", ""),
        ("PUT", "/bucket/cl", ""),
        ("HEAD", "/bucket/k", ""),
        ("GET", "/not-modified", ""),
        ("DELETE", "/no-content", ""),
        ("GET", "/continue", ""),
        ("GET", "/until-eof", ""),
        ("GET", "/last", ""),
    ];
    let expected: Vec<(String, String, String)> = expected.iter().map(|(m, p, q)| (m.to_string(), p.to_string(), q.to_string())).collect();
    assert_eq!(seen, expected);
    assert_eq!(upstream.received().len(), expected.len(), "one upstream connection per request");
    proxy.reset();
    assert!(proxy.requests().is_empty());
}

#[test]
fn a_lost_answer_is_written_upstream_but_never_reaches_the_client_and_applies_once() {
    let upstream = RawUpstream::start();
    let proxy = Proxy::start(&upstream.endpoint);
    proxy.lose_answer_of_next("PUT", "/k.toml", "part=1");
    let (mut s, mut r) = connect(&proxy);
    // Not matching (query): answered.
    s.write_all(b"PUT /b/k.toml?part=2 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc").expect("send");
    read_answer(&mut r, false);
    // Matching: the upstream gets it whole, the client gets a closed connection.
    s.write_all(b"PUT /b/k.toml?part=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz").expect("send");
    let mut got = Vec::new();
    let _ = r.read_to_end(&mut got);
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    let received = upstream.received();
    assert_eq!(received.len(), 2);
    assert!(received[1].starts_with(b"PUT /b/k.toml?part=1 ") && received[1].ends_with(b"\r\n\r\nxyz"));
    // Once only.
    let (mut s, mut r) = connect(&proxy);
    s.write_all(b"PUT /b/k.toml?part=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz").expect("send");
    let (head, _) = read_answer(&mut r, false);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(count(&proxy.requests(), "PUT", "/k.toml", "part=1"), 2);
}

#[test]
fn a_cut_answer_sends_its_head_and_first_body_bytes_then_closes_and_applies_once() {
    let upstream = RawUpstream::start();
    let proxy = Proxy::start(&upstream.endpoint);
    let then_ran = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&then_ran);
    proxy.cut_answer_of_next_then("GET", "/obj.db", "x-id=GetObject", 10, move || flag.store(true, Ordering::SeqCst));
    assert_eq!(proxy.pending(), 1);
    let (mut s, mut r) = connect(&proxy);
    // Not matching (query): answered whole, the connection stays open.
    s.write_all(b"GET /b/obj.db?x-id=Other HTTP/1.1\r\nHost: h\r\n\r\n").expect("send");
    let (_, body) = read_answer(&mut r, false);
    assert!(body.starts_with(b"GET /b/obj.db?x-id=Other "), "{}", String::from_utf8_lossy(&body));
    assert_eq!(proxy.pending(), 1);
    // Matching: forwarded; the head says the whole length, 10 body bytes follow, then EOF.
    s.write_all(b"GET /b/obj.db?x-id=GetObject HTTP/1.1\r\nHost: h\r\n\r\n").expect("send");
    let (head, _) = read_answer(&mut r, true);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.contains("X-Echo: yes\r\n"), "{head}");
    let length: usize = head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).expect("a Content-Length").parse().expect("n");
    let mut got = Vec::new();
    r.read_to_end(&mut got).expect("the cut answer, then EOF");
    assert!(then_ran.load(Ordering::SeqCst), "`then` ran before the connection was closed");
    let received = upstream.received();
    assert_eq!(received.len(), 2, "the cut request was forwarded");
    assert_eq!(length, received[1].len(), "the head carries the whole body's length (the echo of the request)");
    assert_eq!(got, received[1][..10], "only the first 10 body bytes came: {}", String::from_utf8_lossy(&got));
    assert_eq!(proxy.pending(), 0);
    // Once only.
    let (mut s, mut r) = connect(&proxy);
    s.write_all(b"GET /b/obj.db?x-id=GetObject HTTP/1.1\r\nHost: h\r\n\r\n").expect("send");
    let (_, body) = read_answer(&mut r, false);
    assert_eq!(body, upstream.received()[2], "answered whole");
    // A body no longer than the cut goes whole, then the connection closes.
    proxy.cut_answer_of_next("GET", "/until-eof", "", 100);
    s.write_all(b"GET /until-eof HTTP/1.1\r\nHost: h\r\n\r\n").expect("send");
    let (head, body) = read_answer(&mut r, false);
    assert!(head.contains("Content-Length: 15\r\n") && body == b"body to the end", "{head}");
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).expect("EOF");
    assert!(rest.is_empty());
    assert_eq!(count(&proxy.requests(), "GET", "/obj.db", "x-id=GetObject"), 2);
}

#[test]
fn a_refused_request_is_answered_by_the_proxy_never_reaches_the_upstream_and_applies_once() {
    let upstream = RawUpstream::start();
    let proxy = Proxy::start(&upstream.endpoint);
    let xml = "<?xml version=\"1.0\"?><Error><Code>InvalidPart</Code></Error>";
    proxy.refuse_next("POST", "/big.db", "uploadId=", 400, xml);
    proxy.refuse_next("PUT", "/plain", "", 503, "slow down");
    assert_eq!(proxy.pending(), 2);
    let (mut s, mut r) = connect(&proxy);
    // Not matching (method): forwarded.
    s.write_all(b"PUT /b/big.db?uploadId=7&partNumber=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc").expect("send");
    let (head, _) = read_answer(&mut r, false);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Matching: its body is read, the proxy answers, and the connection stays open.
    s.write_all(b"POST /b/big.db?uploadId=7 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n<x/>\n").expect("send");
    let (head, body) = read_answer(&mut r, false);
    assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n") && head.contains("Content-Type: application/xml\r\n"), "{head}");
    assert!(!head.contains("Connection"), "{head}");
    assert_eq!(body, xml.as_bytes());
    s.write_all(b"PUT /b/plain HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nConnection: close\r\n\r\nz").expect("send");
    let (head, body) = read_answer(&mut r, false);
    assert!(head.starts_with("HTTP/1.1 503 ") && head.contains("Content-Type: text/plain\r\n"), "{head}");
    assert!(head.contains("Connection: close\r\n") && body == b"slow down", "{head}");
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).expect("EOF: the client asked to close");
    assert!(rest.is_empty());
    assert_eq!(proxy.pending(), 0);
    let received = upstream.received();
    assert_eq!(received.len(), 1, "only the unmatched request went upstream");
    assert!(received[0].starts_with(b"PUT /b/big.db?uploadId=7&partNumber=1 "));
    // Once only: the same request is now forwarded.
    let (mut s, mut r) = connect(&proxy);
    s.write_all(b"POST /b/big.db?uploadId=7 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n<x/>\n").expect("send");
    let (head, body) = read_answer(&mut r, false);
    assert!(head.starts_with("HTTP/1.1 200") && body.ends_with(b"\r\n\r\n<x/>\n"), "{head}");
    assert_eq!(upstream.received().len(), 2);
    assert_eq!(count(&proxy.requests(), "POST", "/big.db", "uploadId="), 2, "refused requests are seen too");
}

#[test]
fn latency_delays_each_request_and_zero_turns_it_off() {
    let upstream = RawUpstream::start();
    let proxy = Proxy::start(&upstream.endpoint);
    let (mut s, mut r) = connect(&proxy);
    let mut five = || {
        let started = Instant::now();
        for _ in 0..5 {
            s.write_all(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n").expect("send");
            read_answer(&mut r, false);
        }
        started.elapsed()
    };
    let fast = five();
    proxy.set_latency(Duration::from_millis(40));
    let slow = five();
    proxy.set_latency(Duration::ZERO);
    let fast_again = five();
    assert!(slow >= Duration::from_millis(200), "5 requests at 40 ms took {slow:?}");
    assert!(slow < fast + Duration::from_millis(200 + 1000), "5 requests at 40 ms took {slow:?} (without: {fast:?})");
    assert!(fast_again < Duration::from_millis(200), "latency off, 5 requests took {fast_again:?}");
}

/// The one version object (`.db` or `.recipe` under `dbs/`) of `stem` in the bucket, whatever
/// the layout.
fn version_object(bucket: &Bucket, stem: &str) -> String {
    let found: Vec<String> =
        bucket.keys().into_iter().filter(|k| k.starts_with("dbs/") && is_version_object(k) && k.contains(stem)).collect();
    assert_eq!(found.len(), 1, "one version of {stem}: {:?}", bucket.keys());
    found[0].clone()
}

#[test]
fn upload_and_status_through_the_proxy_are_seen_counted_and_signed_for_its_host() {
    let bucket = Bucket::new(Backend::S3);
    let proxy = Proxy::start(&bucket.endpoint().expect("an S3 server"));
    let p = s3_project(&proxy);
    p.create_db("ipmdb", "ipm-db-v1.db", 3);
    p.b2m(&["upload", "ipm-db"]).ok();
    let seen = proxy.requests();
    eprintln!("upload: {} requests: {seen:#?}", seen.len());
    let object = version_object(&bucket, "ipm-db");
    assert!(count(&seen, "PUT", "/db.toml", "") >= 1, "{seen:#?}");
    assert_eq!(count(&seen, "PUT", &format!("/{BUCKET}/{PREFIX}/{object}"), ""), 1, "{seen:#?}");
    assert!(seen.iter().all(|s| s.path.starts_with(&format!("/{BUCKET}/"))), "path-style: {seen:#?}");
    assert!(bucket.read("db.toml").is_some());

    proxy.reset();
    assert!(proxy.requests().is_empty());
    let run = p.b2m(&["status", "--json"]);
    run.ok();
    let status: serde_json::Value = serde_json::from_str(&run.stdout).expect("status JSON");
    let row = status["dbs"].as_array().expect("dbs").iter().find(|d| d["name"] == "ipm-db").cloned().unwrap_or_default();
    assert_eq!(row["status"], "up_to_date", "{status}");
    let seen = proxy.requests();
    eprintln!("status: {} requests: {seen:#?}", seen.len());
    assert!((1..=20).contains(&seen.len()), "{seen:#?}");

    // s3s checks every signature (signed for the proxy's host:port): a wrong secret is refused.
    proxy.reset();
    let run = p.b2m_env(&["status", "--json"], &[("B2M_SECRET_ACCESS_KEY", "not-the-secret")]);
    assert_ne!(run.code, 0, "a bad signature went through: {}", run.stdout);
    assert!(!proxy.requests().is_empty());
}

#[test]
fn a_large_db_goes_up_in_parallel_parts_through_the_proxy_and_comes_back_identical() {
    let bucket = Bucket::new(Backend::S3);
    let proxy = Proxy::start(&bucket.endpoint().expect("an S3 server"));
    let mut dev = s3_project(&proxy);
    // Stored whole (as a bucket from before pages keeps it), so that the object is the file.
    dev.env.push(("B2M_PAGES".into(), "0".into()));
    // ~70 MiB: above the 32 MiB part size, so three parts.
    dev.create_big_db("bigdb", "big-db-v1.db", 18000);
    dev.b2m(&["upload", "big-db"]).ok();
    let key = version_object(&bucket, "big-db");
    let object = bucket.read(&key).expect("object upstream");
    assert!(object.len() > 64 << 20, "{} bytes", object.len());
    let seen = proxy.requests();
    let path = format!("/{BUCKET}/{PREFIX}/{key}");
    let creates = seen
        .iter()
        .filter(|s| s.method == "POST" && s.path == path && s.query.contains("uploads") && !s.query.contains("uploadId="))
        .count();
    assert_eq!(creates, 1, "create: {seen:#?}");
    assert!(count(&seen, "PUT", &path, "partNumber=") >= 3, "parts: {seen:#?}");
    assert_eq!(count(&seen, "POST", &path, "uploadId="), 1, "complete: {seen:#?}");
    assert!(proxy.max_concurrent() >= 2, "parts went one at a time: {}", proxy.max_concurrent());
    eprintln!("most requests at once: {}", proxy.max_concurrent());

    proxy.reset();
    let server_side = s3_project(&proxy);
    server_side.b2m(&["fetch-db-toml"]).ok();
    server_side.b2m(&["download", "big-db"]).ok();
    // In 16 MiB stretches, several at once.
    assert_eq!(count(&proxy.requests(), "GET", &path, ""), object.len().div_ceil(16 << 20), "{:#?}", proxy.requests());
    assert!(proxy.max_concurrent() >= 2, "stretches went one at a time: {}", proxy.max_concurrent());
    let local: Vec<String> = server_side.files().into_iter().filter(|f| f.starts_with("big-db") && f.ends_with(".db")).collect();
    assert_eq!(local.len(), 1, "{:?}", server_side.files());
    assert!(std::fs::read(server_side.db(&local[0])).expect("downloaded") == object, "the download differs from the object");
}

#[test]
fn a_lost_put_of_db_toml_reaches_the_bucket_and_the_client_tries_again() {
    // The same upload without a loss, for the number of db.toml PUTs it makes.
    let baseline = {
        let server = S3Server::start();
        let proxy = Proxy::start(&server.endpoint);
        let p = s3_project(&proxy);
        p.create_db("ipmdb", "ipm-db-v1.db", 3);
        p.b2m(&["upload", "ipm-db"]).ok();
        count(&proxy.requests(), "PUT", "/db.toml", "")
    };
    assert!(baseline >= 1);

    let bucket = Bucket::new(Backend::S3);
    let proxy = Proxy::start(&bucket.endpoint().expect("an S3 server"));
    let p = s3_project(&proxy);
    p.create_db("ipmdb", "ipm-db-v1.db", 3);
    proxy.lose_answer_of_next("PUT", "/db.toml", "");
    let run = p.b2m(&["upload", "ipm-db"]);
    eprintln!("upload with a lost answer: exit {}\nstdout: {}\nstderr: {}", run.code, run.stdout, run.stderr);
    let puts = count(&proxy.requests(), "PUT", "/db.toml", "");
    eprintln!("PUTs of db.toml: {puts} with the loss, {baseline} without");
    assert!(puts > baseline, "{puts} PUTs of db.toml, {baseline} without a loss: {:#?}", proxy.requests());
    let text = String::from_utf8(bucket.read("db.toml").expect("db.toml upstream")).expect("utf8");
    assert!(text.contains("ipm-db"), "{text}");
}

#[test]
fn a_status_run_takes_about_the_latency_longer_per_request() {
    let server = S3Server::start();
    let proxy = Proxy::start(&server.endpoint);
    let p = s3_project(&proxy);
    p.create_db("ipmdb", "ipm-db-v1.db", 3);
    p.b2m(&["upload", "ipm-db"]).ok();
    let run = |latency: Duration| {
        proxy.set_latency(latency);
        proxy.reset();
        let started = Instant::now();
        p.b2m(&["status", "--json"]).ok();
        (started.elapsed(), proxy.requests().len())
    };
    // The quickest of five runs each way, taken in turns, to be steady on a busy machine.
    let (mut fast, mut slow, mut n) = (Duration::MAX, Duration::MAX, 0);
    for _ in 0..5 {
        fast = fast.min(run(Duration::ZERO).0);
        let (took, requests) = run(Duration::from_millis(40));
        slow = slow.min(took);
        n = n.max(requests);
    }
    proxy.set_latency(Duration::ZERO);
    let added = slow.saturating_sub(fast);
    eprintln!("status: {fast:?} without latency, {slow:?} with 40 ms on each of {n} requests (+{added:?})");
    assert!(n >= 1);
    // status makes its requests one after the other, so their delays add up (the bound is loose:
    // on a loaded machine two process runs differ by tens of milliseconds).
    assert!(added >= Duration::from_millis(40 * n as u64 / 2), "{n} requests at 40 ms added only {added:?}");
    assert!(added <= Duration::from_millis(40 * n as u64 + 1500), "{n} requests at 40 ms added {added:?}");
}
