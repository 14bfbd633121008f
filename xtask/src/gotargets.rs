//! Builds the Go test target (`targets/apiserver`) in the four variants the
//! tracer is tested against, and checks that each binary carries the symbol
//! names the presets expect. Everything runs offline with Debian's Go: the
//! module build uses only local `replace`s, and the GOPATH build copies the
//! staging modules into `vendor/` so its names get the
//! `k8s.io/kubernetes/vendor/` prefix of pre-1.30 official builds.
//!
//! It also builds the benchmark loop (`targets/bench`) that `cargo xtask
//! bench` traces, and checks that its traced function has the stack-guard
//! prologue the benchmark is about.
//!
//! Touches only `<root>/target/gotargets/` and `<root>/target/gocache`.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, Result, bail, ensure};

/// Variant names; each is also the output directory name.
pub const VARIANTS: [&str; 4] = ["optimized", "debug", "stripped", "gopath"];

/// Path of the target sources, relative to the workspace root.
const SOURCE_DIR: &str = "targets/apiserver";
/// Staging modules that become `vendor/k8s.io/<name>` in the GOPATH build.
const STAGED: [&str; 2] = ["apiserver", "apimachinery"];

/// Symbols under `k8s.io/apiserver/pkg/` (vendored in the GOPATH build).
const APISERVER_SYMBOLS: &[&str] = &[
    "endpoints/filters.withAuthentication.func1",
    "endpoints/filters.withAuthorization.func1",
    "endpoints/filters.GetAuthorizerAttributes",
    "authentication/request/union.(*unionAuthRequestHandler).AuthenticateRequest",
    "authentication/request/bearertoken.(*Authenticator).AuthenticateRequest",
    "authentication/request/x509.(*Authenticator).AuthenticateRequest",
    "authentication/group.(*AuthenticatedGroupAdder).AuthenticateRequest",
    "authentication/token/cache.(*cachedTokenAuthenticator).AuthenticateToken",
    "authentication/token/tokenfile.(*TokenAuthenticator).AuthenticateToken",
    "authorization/union.unionAuthzHandler.Authorize",
    "authorization/union.(*unionAuthzHandler).Authorize",
    "admission.chainAdmissionHandler.Admit",
    "admission.chainAdmissionHandler.Validate",
    "admission.(*chainAdmissionHandler).Admit",
    "admission.(*chainAdmissionHandler).Validate",
    "admission/metrics.pluginHandlerWithMetrics.Admit",
    "admission/metrics.pluginHandlerWithMetrics.Validate",
    "admission/metrics.(*pluginHandlerWithMetrics).Admit",
    "admission/metrics.(*pluginHandlerWithMetrics).Validate",
    "admission/plugin/namespace/lifecycle.(*Lifecycle).Admit",
    "storage/etcd3.(*store).Create",
    "storage/etcd3.(*store).Get",
    "storage/etcd3.(*store).GetList",
    "storage/etcd3.(*store).GuaranteedUpdate",
    "storage/etcd3.(*store).Delete",
    // Not a preset: the etcd round trip inside every store method, which
    // `--filter key=…` keeps only when nested in a kept store call.
    "storage/etcd3.(*Client).call",
    "registry/generic/registry.(*Store).Create",
    "registry/generic/registry.(*Store).Get",
    "registry/generic/registry.(*Store).List",
    "registry/generic/registry.(*Store).Update",
    "registry/generic/registry.(*Store).Delete",
    "endpoints/handlers.createHandler.func1",
    "endpoints/handlers.getResourceHandler.func1",
    "endpoints/handlers.ListResource.func1",
    "endpoints/handlers.UpdateResource.func1",
    "endpoints/handlers.DeleteResource.func1",
];

/// Symbols of the main module (`k8s.io/kubernetes/`), never vendored.
const KUBERNETES_SYMBOLS: &[&str] = &[
    "plugin/pkg/auth/authorizer/rbac.(*RBACAuthorizer).Authorize",
    "plugin/pkg/admission/limitranger.(*LimitRanger).Admit",
    "plugin/pkg/admission/limitranger.(*LimitRanger).Validate",
    "pkg/ktracetest.Recurse",
    "pkg/ktracetest.Lookup",
    "pkg/ktracetest.Leaf",
];

/// Builds every variant into `<root>/target/gotargets/<variant>/kube-apiserver`,
/// skipping a variant whose binary is newer than every file under
/// `targets/apiserver` (quiet when nothing to do; one progress line per
/// variant built).
pub fn build(root: &Path) -> Result<()> {
    let src = root.join(SOURCE_DIR);
    ensure!(src.join("go.mod").is_file(), "{} has no go.mod; is {} the workspace root?", src.display(), root.display());
    let newest = newest_mtime(&src)?;
    let go = GoEnv::new(root);
    for variant in VARIANTS {
        let bin = binary_path(root, variant);
        if is_newer_than(&bin, newest) {
            continue;
        }
        eprintln!("gotargets: building {variant} -> {}", bin.display());
        let dir = bin.parent().context("binary path has no parent")?;
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        // Build to a temporary name so a failed build or symbol check never
        // leaves a binary that looks up to date.
        let tmp = dir.join("kube-apiserver.tmp");
        match variant {
            "gopath" => go.build_gopath(&src, &tmp)?,
            _ => go.build_module(&src, variant, &tmp)?,
        }
        go.check_symbols(variant, &tmp)?;
        fs::rename(&tmp, &bin).with_context(|| format!("renaming to {}", bin.display()))?;
    }
    Ok(())
}

/// Path of the benchmark loop's sources, relative to the workspace root.
const BENCH_SOURCE_DIR: &str = "targets/bench";
/// The function the benchmark loop calls and `cargo xtask bench` traces.
pub const BENCH_FUNC: &str = "main.work";

/// Builds the benchmark loop into `<root>/target/gotargets/bench/ktrace-bench`
/// (optimized, with DWARF: a plain `go build`) unless it is newer than its
/// sources, and returns its path.
pub fn build_bench(root: &Path) -> Result<PathBuf> {
    let src = root.join(BENCH_SOURCE_DIR);
    ensure!(src.join("go.mod").is_file(), "{} has no go.mod; is {} the workspace root?", src.display(), root.display());
    let bin = root.join("target/gotargets/bench/ktrace-bench");
    if is_newer_than(&bin, newest_mtime(&src)?) {
        return Ok(bin);
    }
    eprintln!("gotargets: building bench -> {}", bin.display());
    let dir = bin.parent().context("binary path has no parent")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join("ktrace-bench.tmp");
    let go = GoEnv::new(root);
    let mut cmd = go.command(&["build", "-o", tmp.to_str().context("output path is not UTF-8")?, "."]);
    cmd.current_dir(&src).env("GO111MODULE", "on").env("GOFLAGS", "-mod=mod");
    run(&mut cmd, "bench")?;
    go.check_stack_guard(&tmp, BENCH_FUNC)?;
    fs::rename(&tmp, &bin).with_context(|| format!("renaming to {}", bin.display()))?;
    Ok(bin)
}

/// Where [`build`] puts one variant's binary.
pub fn binary_path(root: &Path, variant: &str) -> PathBuf {
    root.join("target/gotargets").join(variant).join("kube-apiserver")
}

/// Debian's `golang-go` (1.19), which `cargo xtask setup` installs;
/// `$KTRACE_TARGET_GO` overrides it.
pub fn target_go() -> PathBuf {
    std::env::var_os("KTRACE_TARGET_GO").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/go"))
}

struct GoEnv {
    gocache: PathBuf,
    gopath_root: PathBuf,
}

impl GoEnv {
    fn new(root: &Path) -> Self {
        Self { gocache: root.join("target/gocache"), gopath_root: root.join("target/gotargets/gopath-tree") }
    }

    /// A `go` command with a pinned, offline environment. `GOFLAGS` is set
    /// per mode because `-mod` is an error outside module mode.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(target_go());
        cmd.args(args)
            .env("GOPROXY", "off")
            .env("GOTOOLCHAIN", "local")
            .env("CGO_ENABLED", "0")
            .env("GOWORK", "off")
            .env("GOCACHE", &self.gocache);
        cmd
    }

    fn build_module(&self, src: &Path, variant: &str, out: &Path) -> Result<()> {
        let out = out.to_str().context("output path is not UTF-8")?;
        let mut args = vec!["build", "-o", out];
        match variant {
            "optimized" => {}
            "debug" => args.push("-gcflags=all=-N -l"),
            "stripped" => args.push("-ldflags=-s -w"),
            other => bail!("unknown module variant {other}"),
        }
        args.push("./cmd/kube-apiserver");
        let mut cmd = self.command(&args);
        cmd.current_dir(src).env("GO111MODULE", "on").env("GOFLAGS", "-mod=mod");
        run(&mut cmd, variant)
    }

    /// Lays out `$GOPATH/src/k8s.io/kubernetes` with the staging modules
    /// copied (not linked: GOPATH mode resolves symlinks to their real path,
    /// which would lose the vendor prefix) into `vendor/`, then builds there.
    fn build_gopath(&self, src: &Path, out: &Path) -> Result<()> {
        if self.gopath_root.exists() {
            fs::remove_dir_all(&self.gopath_root)
                .with_context(|| format!("removing {}", self.gopath_root.display()))?;
        }
        let kube = self.gopath_root.join("src/k8s.io/kubernetes");
        copy_tree(src, &kube, &|rel| rel != Path::new("staging"))?;
        for name in STAGED {
            let from = src.join("staging/src/k8s.io").join(name);
            let to = kube.join("vendor/k8s.io").join(name);
            copy_tree(&from, &to, &|_| true)?;
        }
        let out = out.to_str().context("output path is not UTF-8")?;
        let mut cmd = self.command(&["build", "-o", out, "k8s.io/kubernetes/cmd/kube-apiserver"]);
        cmd.current_dir(&kube).env("GO111MODULE", "off").env("GOFLAGS", "").env("GOPATH", &self.gopath_root);
        run(&mut cmd, "gopath")
    }

    /// Checks the preset symbols with `go tool nm`. The stripped variant must
    /// have no symbol table at all; its names must still be in `.gopclntab`,
    /// checked as NUL-terminated strings in the file.
    fn check_symbols(&self, variant: &str, bin: &Path) -> Result<()> {
        let (apiserver, wrong) = match variant {
            "gopath" => ("k8s.io/kubernetes/vendor/k8s.io/apiserver/pkg/", "k8s.io/apiserver/"),
            _ => ("k8s.io/apiserver/pkg/", "k8s.io/kubernetes/vendor/"),
        };
        let wanted: Vec<String> = APISERVER_SYMBOLS
            .iter()
            .map(|s| format!("{apiserver}{s}"))
            .chain(KUBERNETES_SYMBOLS.iter().map(|s| format!("k8s.io/kubernetes/{s}")))
            .collect();

        let output = self.command(&["tool", "nm"]).arg(bin).output().context("running `go tool nm`")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let symbols: Vec<&str> = stdout.lines().filter_map(|l| l.split_whitespace().nth(2)).collect();

        let missing: Vec<&String> = if variant == "stripped" {
            ensure!(!output.status.success() && symbols.is_empty(), "stripped variant still has a symbol table");
            let data = fs::read(bin).with_context(|| format!("reading {}", bin.display()))?;
            wanted.iter().filter(|w| !contains_cstr(&data, w.as_bytes())).collect()
        } else {
            ensure!(
                output.status.success(),
                "`go tool nm {}` failed: {}",
                bin.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
            if let Some(s) = symbols.iter().find(|s| s.starts_with(wrong)) {
                bail!("{variant} binary has a symbol with the wrong prefix: {s}");
            }
            wanted.iter().filter(|w| !symbols.iter().any(|s| s == w)).collect()
        };
        ensure!(
            missing.is_empty(),
            "{variant} binary lacks preset symbols:\n  {}",
            missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n  ")
        );
        Ok(())
    }

    /// Checks with `go tool objdump` that `func` opens with the stack guard
    /// ktrace probes (`CMPQ 0x10(R14), SP` then `JBE` to a block that calls
    /// `runtime.morestack*`) and has a RET. Without it the benchmark would
    /// measure a different entry site than the one real Go code gets.
    fn check_stack_guard(&self, bin: &Path, func: &str) -> Result<()> {
        let output = self
            .command(&["tool", "objdump", "-s", &format!("^{}$", func.replace('.', "\\."))])
            .arg(bin)
            .output()
            .context("running `go tool objdump`")?;
        ensure!(
            output.status.success(),
            "`go tool objdump {}` failed: {}",
            bin.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        let text = String::from_utf8_lossy(&output.stdout);
        // An instruction line is `  file:line\taddr\tbytes\tinstruction`,
        // the columns separated by runs of tabs.
        let insns: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("  "))
            .filter_map(|l| l.split('\t').filter(|c| !c.is_empty()).nth(3))
            .map(str::trim)
            .collect();
        let guard = insns.first().is_some_and(|i| *i == "CMPQ 0x10(R14), SP")
            && insns.get(1).is_some_and(|i| i.starts_with("JBE "))
            && insns.iter().any(|i| i.starts_with("CALL runtime.morestack"));
        ensure!(
            guard && insns.contains(&"RET"),
            "{func} in {} lacks the stack-guard prologue (CMPQ 0x10(R14), SP; JBE to runtime.morestack) \
             or a RET; was it inlined or made a leaf?\n{text}",
            bin.display()
        );
        Ok(())
    }
}

/// True if `needle` followed by NUL occurs in `haystack`.
fn contains_cstr(haystack: &[u8], needle: &[u8]) -> bool {
    let len = needle.len() + 1;
    haystack.windows(len).any(|w| w[len - 1] == 0 && &w[..len - 1] == needle)
}

/// Runs a build, showing Go's own output only when it fails.
fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let output = cmd.output().with_context(|| format!("running `go` for the {what} variant (is Go installed?)"))?;
    if !output.status.success() {
        bail!(
            "go build of the {what} variant failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

fn is_newer_than(path: &Path, time: SystemTime) -> bool {
    fs::metadata(path).and_then(|m| m.modified()).is_ok_and(|m| m > time)
}

/// Latest modification time of any file or directory under `dir`;
/// directories count so that a deleted file also triggers a rebuild.
fn newest_mtime(dir: &Path) -> Result<SystemTime> {
    let meta = fs::metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    let mut newest = meta.modified()?;
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let ty = entry.file_type()?;
        let t = if ty.is_dir() { newest_mtime(&entry.path())? } else { entry.metadata()?.modified()? };
        newest = newest.max(t);
    }
    Ok(newest)
}

/// Copies regular files and directories; `keep` sees paths relative to the
/// source root and prunes what it rejects.
fn copy_tree(from: &Path, to: &Path, keep: &dyn Fn(&Path) -> bool) -> Result<()> {
    fn walk(base: &Path, dir: &Path, to: &Path, keep: &dyn Fn(&Path) -> bool) -> Result<()> {
        fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
        for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let entry = entry?;
            let path = entry.path();
            let rel = path.strip_prefix(base)?;
            if !keep(rel) || entry.file_name() == OsStr::new(".git") {
                continue;
            }
            let dest = to.join(entry.file_name());
            let ty = entry.file_type()?;
            if ty.is_dir() {
                walk(base, &path, &dest, keep)?;
            } else if ty.is_file() {
                fs::copy(&path, &dest).with_context(|| format!("copying {} to {}", path.display(), dest.display()))?;
            }
        }
        Ok(())
    }
    walk(from, from, to, keep)
}
