//! A single-member etcd on loopback ports with its own data directory, plus
//! a minimal std-only client for its v3 JSON gateway so tests can check
//! what the target really stored.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::process::{free_port, tail, terminate};

const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Port races with other tests are possible (see `free_port`); a few fresh
/// attempts make them harmless.
const START_ATTEMPTS: usize = 3;

/// A running etcd, killed and reaped on drop.
pub struct Etcd {
    child: Child,
    client_url: String,
    client_addr: String,
    log: PathBuf,
    // Dropped after the child is gone, so etcd never writes into a
    // directory being deleted.
    _dir: TempDir,
}

impl Etcd {
    /// Starts etcd (from `$KTRACE_ETCD`, else `etcd` on `PATH`) and waits
    /// until `/health` reports healthy.
    pub fn start() -> Result<Etcd> {
        let mut last_err = None;
        for _ in 0..START_ATTEMPTS {
            match Self::try_start() {
                Ok(etcd) => return Ok(etcd),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("etcd did not start")))
    }

    fn try_start() -> Result<Etcd> {
        let dir = tempfile::Builder::new().prefix("ktrace-etcd-").tempdir().context("creating etcd tempdir")?;
        let (client_port, peer_port) = (free_port()?, free_port()?);
        let client_addr = format!("127.0.0.1:{client_port}");
        let client_url = format!("http://{client_addr}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let log = dir.path().join("etcd.log");
        let log_file = File::create(&log).context("creating etcd log")?;
        let binary = std::env::var_os("KTRACE_ETCD").unwrap_or_else(|| "etcd".into());
        let child = Command::new(&binary)
            .arg("--name=testkit")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=testkit={peer_url}"))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {:?}; install etcd (Debian: etcd-server) or set KTRACE_ETCD", binary))?;
        let mut etcd = Etcd { child, client_url, client_addr, log, _dir: dir };
        etcd.wait_healthy()?;
        Ok(etcd)
    }

    fn wait_healthy(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("etcd exited during start-up ({status}); log tail:\n{}", tail(&self.log, 20));
            }
            if let Ok((200, body)) = http_request(&self.client_addr, "GET", "/health", None)
                && body.contains("\"true\"")
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("etcd not healthy after {START_TIMEOUT:?}; log tail:\n{}", tail(&self.log, 20));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Process id of etcd (a Go program, which benchmarks trace).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The client URL, e.g. `http://127.0.0.1:40123`.
    pub fn client_url(&self) -> &str {
        &self.client_url
    }

    /// Keys (not values) starting with `prefix`, in etcd's key order.
    pub fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>> {
        let mut end = prefix.as_bytes().to_vec();
        // The range end of a prefix is the prefix with its last byte + 1.
        match end.iter().rposition(|&b| b < 0xff) {
            Some(i) => {
                end.truncate(i + 1);
                end[i] += 1;
            }
            None => end = vec![0],
        }
        let request = serde_json::json!({
            "key": base64_encode(prefix.as_bytes()),
            "range_end": base64_encode(&end),
            "keys_only": true,
        });
        let (status, body) = http_request(&self.client_addr, "POST", "/v3/kv/range", Some(&request.to_string()))?;
        if status != 200 {
            bail!("etcd range {prefix}: HTTP {status}: {body}");
        }
        let resp: serde_json::Value = serde_json::from_str(&body).context("decoding etcd range response")?;
        let Some(kvs) = resp.get("kvs").and_then(|k| k.as_array()) else {
            return Ok(Vec::new());
        };
        kvs.iter()
            .map(|kv| {
                let key = kv.get("key").and_then(|k| k.as_str()).context("etcd kv without key")?;
                String::from_utf8(base64_decode(key)?).context("etcd key is not UTF-8")
            })
            .collect()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(5));
    }
}

/// One HTTP/1.1 request with `Connection: close`; returns status and body.
/// Enough for etcd's gateway: no TLS, no redirects, chunked bodies decoded.
pub(crate) fn http_request(addr: &str, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").context("HTTP response without header end")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut payload = raw[split + 4..].to_vec();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .with_context(|| format!("bad HTTP status line: {head:?}"))?;
    if head.lines().any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.contains("chunked")) {
        payload = dechunk(&payload)?;
    }
    Ok((status, String::from_utf8_lossy(&payload).into_owned()))
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n").context("truncated chunk header")?;
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).with_context(|| format!("bad chunk size {size_text:?}"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = data.get(..size).context("truncated chunk")?;
        out.extend_from_slice(chunk);
        data = data.get(size + 2..).context("truncated chunk trailer")?;
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = B64.iter().position(|&b| b == c).with_context(|| format!("invalid base64 in {text:?}"))?;
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for s in ["", "a", "ab", "abc", "/registry/configmaps/ns/x"] {
            let enc = base64_encode(s.as_bytes());
            assert_eq!(base64_decode(&enc).unwrap(), s.as_bytes(), "{s} -> {enc}");
        }
        assert_eq!(base64_encode(b"ab"), "YWI=");
    }

    #[test]
    fn dechunks() {
        assert_eq!(dechunk(b"3\r\nabc\r\n2;x\r\nde\r\n0\r\n\r\n").unwrap(), b"abcde");
    }
}
