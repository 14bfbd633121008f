//! A minimal HTTP/1.1 server for `/metrics` on std threads: one request per
//! connection (answered with `Connection: close`), GET and HEAD only, every
//! other path a 404, gzip when the client accepts it (Prometheus does). Scrapes are rare (seconds apart) and small, so a thread
//! per connection, a bounded number of them, costs less than a runtime and
//! keeps the watch loop's tokio runtime out of it.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use super::{Shared, exposition::CONTENT_TYPE, scrape};

/// Connections served at once; more are closed unanswered.
const MAX_CONNECTIONS: usize = 16;
/// A request head larger than this is refused (431).
const MAX_HEAD: usize = 8 * 1024;
/// A client silent for this long is dropped.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `listener` from a thread of its own until the process exits.
pub(super) fn spawn(listener: TcpListener, shared: Arc<Shared>) -> std::io::Result<()> {
    let open = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new().name("ktrace-metrics".into()).spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            if open.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                open.fetch_sub(1, Ordering::AcqRel);
                continue;
            }
            let (shared, done) = (Arc::clone(&shared), Arc::clone(&open));
            let spawned = std::thread::Builder::new().name("ktrace-scrape".into()).spawn(move || {
                // A client that goes away mid-answer is not ktrace's problem.
                let _ = serve(stream, &shared);
                done.fetch_sub(1, Ordering::AcqRel);
            });
            if spawned.is_err() {
                open.fetch_sub(1, Ordering::AcqRel);
            }
        }
    })?;
    Ok(())
}

/// Reads the request head: up to the blank line, at most [`MAX_HEAD`] bytes.
fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        if head.len() > MAX_HEAD {
            return Ok(None);
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(Some(head))
}

/// What to answer: status, reason, content type and body.
type Answer = (u16, &'static str, &'static str, Vec<u8>);

fn text(status: u16, reason: &'static str, body: &str) -> Answer {
    (status, reason, "text/plain; charset=utf-8", format!("{body}\n").into_bytes())
}

/// The answer to a request line `METHOD TARGET VERSION`.
fn route(line: &str, shared: &Shared) -> Answer {
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
        return text(400, "Bad Request", "bad request line");
    };
    if parts.next().is_some() || !version.starts_with("HTTP/1.") {
        return text(400, "Bad Request", "bad request line");
    }
    let path = target.split(['?', '#']).next().unwrap_or(target);
    if path != "/metrics" {
        return text(404, "Not Found", "not found: ktrace serves /metrics only");
    }
    if method != "GET" && method != "HEAD" {
        return text(405, "Method Not Allowed", "use GET or HEAD");
    }
    match scrape(shared) {
        Some(body) => (200, "OK", CONTENT_TYPE, body),
        None => text(503, "Service Unavailable", "ktrace is placing its probes"),
    }
}

fn serve(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let (line, gzip, (status, reason, content_type, mut body)) = match read_head(&mut stream)? {
        None => (String::new(), false, text(431, "Request Header Fields Too Large", "request head too large")),
        Some(head) => {
            let head = String::from_utf8_lossy(&head);
            let line = head.lines().next().unwrap_or("").trim_end_matches('\r').to_string();
            let answer = route(&line, shared);
            (line, accepts_gzip(&head), answer)
        }
    };
    // Prometheus asks for gzip; the bucket lines repeat their labels, so a
    // scrape shrinks about twentyfold.
    let gzip = gzip && status == 200 && compress(&mut body).is_ok();
    let mut answer = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if gzip {
        answer.push_str("Content-Encoding: gzip\r\n");
    }
    if status == 405 {
        answer.push_str("Allow: GET, HEAD\r\n");
    }
    answer.push_str("\r\n");
    stream.write_all(answer.as_bytes())?;
    // HEAD gets the GET's headers without its body.
    if !line.starts_with("HEAD ") {
        stream.write_all(&body)?;
    }
    stream.flush()
}

/// True when the request head has `Accept-Encoding` naming gzip (without
/// `q=0`).
fn accepts_gzip(head: &str) -> bool {
    head.lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .filter(|(name, _)| name.trim().eq_ignore_ascii_case("accept-encoding"))
        .flat_map(|(_, value)| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let gzip = parts.next().is_some_and(|e| e.eq_ignore_ascii_case("gzip"));
            let refused = parts.any(|p| p.strip_prefix("q=").and_then(|q| q.trim().parse::<f64>().ok()) == Some(0.0));
            gzip && !refused
        })
}

/// Replaces `body` with its gzip; on failure `body` is untouched.
fn compress(body: &mut Vec<u8>) -> std::io::Result<()> {
    let mut gz = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 8), flate2::Compression::fast());
    gz.write_all(body)?;
    *body = gz.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Function, Reading, TargetInfo};

    fn described() -> Shared {
        let shared = Shared::default();
        let f = Function { name: "main.f".into(), group: String::new(), errors: false, timed: false };
        let mut state = shared.lock();
        state.described = Some((TargetInfo::default(), vec![f]));
        state.latest = Some(vec![Reading { counts: vec![Default::default()], ..Reading::default() }].into());
        drop(state);
        shared
    }

    #[test]
    fn routes() {
        let shared = described();
        assert_eq!(route("GET /metrics HTTP/1.1", &shared).0, 200);
        assert_eq!(route("GET /metrics?x=1 HTTP/1.0", &shared).0, 200);
        assert_eq!(route("HEAD /metrics HTTP/1.1", &shared).0, 200);
        assert_eq!(route("GET / HTTP/1.1", &shared).0, 404);
        assert_eq!(route("GET /metricsx HTTP/1.1", &shared).0, 404);
        assert_eq!(route("POST /metrics HTTP/1.1", &shared).0, 405);
        assert_eq!(route("GET /metrics", &shared).0, 400);
        assert_eq!(route("", &shared).0, 400);
        assert_eq!(route("GET /metrics HTTP/1.1", &Shared::default()).0, 503, "before the probes are placed");
        let unread = described();
        unread.lock().latest = None;
        assert_eq!(route("GET /metrics HTTP/1.1", &unread).0, 503, "before the first reading");
        let body = String::from_utf8(route("GET /metrics HTTP/1.1", &shared).3).unwrap();
        assert!(body.contains("ktrace_calls_total{function=\"main.f\",group=\"\",pid=\"\"} 0"), "{body}");
    }

    #[test]
    fn gzip_when_asked() {
        let h = |e: &str| accepts_gzip(&format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{e}\r\n\r\n"));
        assert!(h("Accept-Encoding: gzip"));
        assert!(h("accept-encoding: deflate, GZIP;q=0.5"));
        assert!(!h("Accept-Encoding: gzip;q=0"));
        assert!(!h("Accept-Encoding: identity"));
        assert!(!h(""));
    }

    /// The whole server over a socket: plain and gzip bodies agree, HEAD
    /// has no body, other paths are 404s.
    #[test]
    fn over_a_socket() {
        use std::io::Read;

        use crate::metrics::Metrics;
        let m = Metrics::serve("127.0.0.1:0".parse().unwrap()).unwrap();
        let f = Function { name: "main.f".into(), group: "storage".into(), errors: false, timed: true };
        m.describe(TargetInfo::default(), vec![f]);
        let mut counts = crate::attach::FunctionCounts::default();
        counts.counters.calls = 5;
        m.publish(vec![Reading { counts: vec![counts], ..Reading::default() }]);
        let ask = |request: &str| {
            let mut s = TcpStream::connect(m.addr).unwrap();
            s.write_all(request.as_bytes()).unwrap();
            let mut raw = Vec::new();
            s.read_to_end(&mut raw).unwrap();
            let at = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
            (String::from_utf8_lossy(&raw[..at]).into_owned(), raw[at + 4..].to_vec())
        };
        let (head, plain) = ask("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && !head.contains("gzip"), "{head}");
        let plain = String::from_utf8(plain).unwrap();
        assert!(plain.contains("ktrace_calls_total{function=\"main.f\",group=\"storage\",pid=\"\"} 5"), "{plain}");
        let (head, zipped) = ask("GET /metrics HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n");
        assert!(head.contains("Content-Encoding: gzip"), "{head}");
        let mut unzipped = String::new();
        flate2::read::GzDecoder::new(&zipped[..]).read_to_string(&mut unzipped).unwrap();
        assert_eq!(unzipped, plain);
        let (head, body) = ask("HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(head.contains(&format!("Content-Length: {}", plain.len())) && body.is_empty(), "{head}");
        assert!(ask("GET /favicon.ico HTTP/1.1\r\n\r\n").0.starts_with("HTTP/1.1 404 "));
    }
}
