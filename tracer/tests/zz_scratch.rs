mod common;
use common::Trace;
use std::time::{Duration, Instant};
use testkit::{Etcd, KubeApiserver, KubeVariant, LoadSpec};

#[test]
#[ignore]
fn scratch() {
    let etcd = Etcd::start().unwrap();
    let api = KubeApiserver::start(KubeVariant::Release, &etcd).unwrap();
    let trace = Trace::start(api.pid(), "storage,authn,authz,admission", &["--max-overhead", "4"]);
    std::thread::sleep(Duration::from_secs(2));
    let t = Instant::now();
    let r = api.load(&LoadSpec { creates: 1, gets: 20000, concurrency: 8, ..Default::default() }).unwrap();
    eprintln!("load {:?} in {:?}", r, t.elapsed());
    let (s, err) = trace.finish();
    for l in err { eprintln!("ERR {l}"); }
    let mut fs: Vec<_> = s.functions.iter().filter(|f| f.calls > 1000).collect();
    fs.sort_by_key(|f| std::cmp::Reverse(f.calls));
    for f in fs { eprintln!("{:>8} {:?} {}", f.calls, f.sampled_fraction, f.symbol); }
}
