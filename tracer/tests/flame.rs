//! `ktrace flame` against the apiserver-shaped target: real /debug/pprof
//! profiles fetched over HTTPS with the bearer token and CA of the target's
//! own kubeconfig while it serves load, rendered to SVG; and the specific
//! one-line errors for a wrong CA, a wrong token, a missing profile and a
//! truncated body. Needs etcd and the Go targets (`cargo xtask
//! build-targets`), not root.

use std::{
    io::{Read, Write},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
};

use testkit::{Apiserver, Etcd, LoadSpec, Variant};

fn ktrace(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ktrace")).args(args).output().expect("run ktrace")
}

fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "ktrace failed: {stderr}");
    stderr
}

/// The one error line of a failed run; checks the exit code is 3 (bad input).
fn fails(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(out.status.code(), Some(3), "wanted exit 3: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("ktrace: error:")).collect();
    assert_eq!(errors.len(), 1, "wanted one error line: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    eprintln!("{}", errors[0]);
    errors[0].to_string()
}

/// The target under continuous load until dropped.
struct Loaded {
    api: Arc<Apiserver>,
    stop: Arc<AtomicBool>,
    worker: Option<thread::JoinHandle<()>>,
    _etcd: Etcd,
}

impl Loaded {
    fn start() -> Loaded {
        let etcd = Etcd::start().expect("start etcd");
        let api = Arc::new(Apiserver::start(Variant::Optimized, &etcd).expect("start the target"));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (api.clone(), stop.clone());
        let worker = thread::spawn(move || {
            let mut round = 0;
            while !s.load(Ordering::Relaxed) {
                round += 1;
                let spec = LoadSpec {
                    namespace: format!("flame{round}"),
                    creates: 100,
                    gets: 200,
                    updates: 50,
                    deletes: 50,
                    missing_gets: 20,
                    concurrency: 4,
                };
                a.load(&spec).expect("load");
            }
        });
        Loaded { api, stop, worker: Some(worker), _etcd: etcd }
    }

    fn kubeconfig(&self) -> &str {
        self.api.kubeconfig().to_str().unwrap()
    }

    fn url(&self, name: &str) -> String {
        format!("{}/debug/pprof/{name}", self.api.url())
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A copy of the kubeconfig with one line's value replaced.
fn edited_kubeconfig(dir: &Path, from: &Path, key: &str, value: &str) -> PathBuf {
    let text: String = read(from)
        .lines()
        .map(|l| match l.split_once(':') {
            Some((k, _)) if k.trim() == key => format!("{k}: {value}\n"),
            _ => format!("{l}\n"),
        })
        .collect();
    let path = dir.join(format!("kubeconfig-{key}"));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn profiles_over_https_with_the_kubeconfig_render_and_errors_are_specific() {
    let t = Loaded::start();
    let dir = tempfile::tempdir().unwrap();
    let out = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let kc = t.kubeconfig();

    // CPU, by URL, while the load runs: storage and filter frames show.
    let cpu_url = t.url("profile");
    let cpu_svg = out("cpu.svg");
    // A 3 s profile holds a few hundred samples; on a machine busy with
    // other work the store's short CPU bursts can miss all of them, so up
    // to three profiles are taken before calling the frames absent.
    let mut svg = String::new();
    for _ in 0..3 {
        ok(&ktrace(&["flame", "--pprof", &cpu_url, "--seconds", "3", "--kubeconfig", kc, "--output", &cpu_svg]));
        svg = read(Path::new(&cpu_svg));
        if svg.contains("etcd3.(*store)") {
            break;
        }
    }
    assert!(svg.contains("etcd3.(*store)"), "no storage frames in three CPU flamegraphs");
    assert!(svg.contains("k8s.io/apiserver/pkg/endpoints/filters."), "no filter frames in the CPU flamegraph");

    // The raw profile downloads too, and renders from the file.
    let cpu_pb = out("cpu.pb.gz");
    ok(&ktrace(&["flame", "--pprof", &cpu_url, "--seconds", "1", "--kubeconfig", kc, "--output", &cpu_pb]));
    let folded = out("cpu.folded");
    ok(&ktrace(&["flame", "--pprof", &cpu_pb, "--output", &folded]));
    assert!(
        read(Path::new(&folded)).lines().all(|l| l.rsplit_once(' ').is_some_and(|(_, n)| n.parse::<u64>().is_ok()))
    );

    // Heap (each of its four sample types) and goroutine, by name on the kubeconfig's server.
    for st in ["alloc_objects", "alloc_space", "inuse_objects", "inuse_space"] {
        let p = out(&format!("heap-{st}.svg"));
        ok(&ktrace(&["flame", "--pprof", "heap", "--sample-type", st, "--kubeconfig", kc, "--output", &p]));
        assert!(read(Path::new(&p)).contains("heap ("), "{st}");
    }
    let g = out("goroutine.svg");
    ok(&ktrace(&["flame", "--pprof", "goroutine", "--kubeconfig", kc, "--output", &g]));
    let svg = read(Path::new(&g));
    assert!(svg.contains("goroutine (") && svg.contains("net/http.(*conn).serve"), "goroutine flamegraph");

    // A sample type the profile lacks names the ones it has.
    let e =
        fails(&ktrace(&["flame", "--pprof", "goroutine", "--sample-type", "cpu", "--kubeconfig", kc, "--output", &g]));
    assert!(e.contains("no sample type \"cpu\"") && e.contains("goroutine"), "{e}");

    // A wrong CA: the system's first CA instead of the target's.
    let other_ca = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt").expect("system CA bundle");
    let first = other_ca.split_inclusive("-----END CERTIFICATE-----\n").next().unwrap();
    let b64 = base64_encode(first.as_bytes());
    let bad_ca = edited_kubeconfig(dir.path(), t.api.kubeconfig(), "certificate-authority-data", &b64);
    let e = fails(&ktrace(&["flame", "--pprof", "heap", "--kubeconfig", bad_ca.to_str().unwrap(), "--output", &g]));
    assert!(e.contains("TLS") && e.contains("not signed by the CA in certificate-authority-data"), "{e}");

    // A wrong token: 401, and the token is not printed.
    let bad_token = edited_kubeconfig(dir.path(), t.api.kubeconfig(), "token", "not-the-token-0123456789");
    let e = fails(&ktrace(&["flame", "--pprof", "heap", "--kubeconfig", bad_token.to_str().unwrap(), "--output", &g]));
    assert!(e.contains("401 Unauthorized") && e.contains("bearer token"), "{e}");
    assert!(!e.contains("not-the-token-0123456789"), "the token leaked: {e}");

    // A profile the server does not have: 404 means profiling is off.
    let run = ktrace(&["flame", "--pprof", &t.url("nosuch"), "--kubeconfig", kc, "--output", &g]);
    let e = fails(&run);
    assert!(e.contains("404") && e.contains("profiling is disabled"), "{e}");
    let real = t.api.token().unwrap();
    assert!(
        !String::from_utf8_lossy(&run.stderr).contains(&real) && !String::from_utf8_lossy(&run.stdout).contains(&real)
    );

    // A body cut short: over HTTP, and as a file.
    let cut = serve_truncated(&std::fs::read(&cpu_pb).unwrap());
    let e = fails(&ktrace(&["flame", "--pprof", &cut, "--output", &g]));
    assert!(e.contains("truncated body"), "{e}");
    let bytes = std::fs::read(&cpu_pb).unwrap();
    let cut_file = out("cut.pb.gz");
    std::fs::write(&cut_file, &bytes[..bytes.len() / 2]).unwrap();
    let e = fails(&ktrace(&["flame", "--pprof", &cut_file, "--output", &g]));
    assert!(e.contains("truncated"), "{e}");
    // And a body that is not a profile at all.
    let html = out("page.html.gz");
    std::fs::write(&html, "<html>hello</html>").unwrap();
    let e = fails(&ktrace(&["flame", "--pprof", &html, "--output", &g]));
    assert!(e.contains("not a pprof profile"), "{e}");
    assert!(t.api.is_alive());
}

/// Serves one HTTP response that announces the whole body but sends half,
/// then closes; returns its URL.
fn serve_truncated(body: &[u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/debug/pprof/profile", listener.local_addr().unwrap());
    let body = body.to_vec();
    thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut req = [0u8; 4096];
            let _ = s.read(&mut req);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body[..body.len() / 2]);
        }
    });
    url
}

fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
