//! A tracing session's setup, between planning and attach: one record per
//! traced function, holding its probe plan, where its arguments live (through
//! the arch seam), what the kernel records for it and what user space
//! captures from it, and the report groups it belongs to. `ktrace attach`
//! builds a [`Setup`], hands it to [`crate::attach::Session`], and reads the
//! results back through [`crate::aggregate`].

use analyzer::{
    requests,
    trace::{self, Header, TracedFunction},
};
use tracer_common::{CaptureConfig, FuncConfig};

use crate::{
    attach::{
        config::{self, Captures, FilterArg, Wants},
        filter::FilterSpec,
    },
    error::Error,
    plan::{
        Planner, ProbePlan, Target,
        abi::{self, Registers, Slot},
        arch,
        fields::{self, CaptureSpec, Resolved, Table, TypeSource},
        secrets, signatures,
    },
    resolve::{Binary, Function, Param},
    spec,
};

/// Presets reported as groups in the trace header.
pub const GROUPS: [&str; 8] = ["request", "authn", "authz", "admission", "storage", "registry", "cacher", "handlers"];

/// Where one function's arguments live, when its types are known.
pub type Layout = Option<Vec<Slot>>;

/// One traced function.
#[derive(Clone, Debug)]
pub struct Traced {
    /// Where its probes go.
    pub plan: ProbePlan,
    /// Where its arguments and results live; `None` when the types are
    /// unknown.
    pub layout: Layout,
    /// What the kernel records for it.
    pub config: FuncConfig,
    /// What user space reads back from its events.
    pub captures: Captures,
    /// Its `--capture` field paths as the kernel reads them, if any.
    pub fields: Option<CaptureConfig>,
    /// The presets of [`GROUPS`] it belongs to.
    pub groups: Vec<String>,
}

/// Everything a session traces.
#[derive(Clone, Debug)]
pub struct Setup {
    /// One record per traced function; its index is the kernel's function id.
    pub traced: Vec<Traced>,
    /// `runtime.goexit1`, where a dying goroutine's abandoned calls are
    /// dropped, when the binary has it.
    pub goexit: Option<ProbePlan>,
    /// Things the user should know about the `--filter` argument.
    pub warnings: Vec<String>,
}

/// Where to probe `runtime.goexit1`, which ends a goroutine: its calls
/// still in flight are dropped there. `None` when the binary has no such
/// function or it cannot be probed.
pub fn goexit_plan(binary: &Binary, functions: &[Function]) -> Option<ProbePlan> {
    let f = functions.iter().find(|f| f.name == crate::plan::GOEXIT)?;
    Planner::new(binary, functions).plan(f).ok()
}

/// The register ABI of `binary`'s CPU, through the arch seam.
pub fn registers(binary: &Binary) -> &'static Registers {
    arch::for_machine(binary.machine()).registers()
}

/// The argument layout of `function`: from DWARF `params` when there are
/// some, else from the table of known kube-apiserver signatures (release
/// builds are stripped); secret arguments are marked either way.
pub fn layout(function: &Function, params: Option<&[Param]>, regs: &Registers) -> Layout {
    let slots = params
        .map(|params| {
            let params = abi::with_implicit_receiver(&function.name, function.file.as_deref(), params);
            abi::layout(&params, regs)
        })
        .or_else(|| signatures::known(&function.name, regs));
    slots.map(|mut slots| {
        secrets::mark(&function.name, &mut slots);
        slots
    })
}

/// Resolves `--capture` for every plan (`layouts[i]` is `plans[i]`'s):
/// the paths each function has, with offsets from `types` (DWARF: the
/// target's own or the `--symbols` file's), else from the table of field
/// offsets for the binary's Go release. Fails, in one line, on a path that
/// does not resolve in a function that has its parameter, and on a
/// parameter no traced function has. Call it while the DWARF is loaded.
pub fn resolve_fields(
    binary: &Binary,
    spec: &CaptureSpec,
    plans: &[ProbePlan],
    layouts: &[Layout],
    types: Option<&crate::resolve::Dwarf>,
) -> Result<Vec<Vec<Resolved>>, Error> {
    let out = resolve_fields_where_present(binary, spec, plans, layouts, types)?;
    let names = plans
        .iter()
        .zip(layouts)
        .flat_map(|(plan, layout)| config::param_names(layout.as_deref().filter(|_| plan.target == Target::Function)));
    fields::check_params(spec, names).map_err(Error::Input)?;
    Ok(out)
}

/// Like [`resolve_fields`], but a path whose parameter no traced function
/// has is left out instead of refused: for captures a preset adds by
/// default (e.g. `r.Method,r.URL.Path` on a request's root handler). A
/// path that does not resolve where its parameter exists still fails.
pub fn resolve_fields_where_present(
    binary: &Binary,
    spec: &CaptureSpec,
    plans: &[ProbePlan],
    layouts: &[Layout],
    types: Option<&crate::resolve::Dwarf>,
) -> Result<Vec<Vec<Resolved>>, Error> {
    let table = binary
        .build_info()
        .and_then(|b| b.minor_version())
        .and_then(|minor| Table::for_release(binary.machine(), minor));
    let types = types.map(fields::Memo::new);
    let mut out = Vec::with_capacity(plans.len());
    for (plan, layout) in plans.iter().zip(layouts) {
        // Arguments are in their ABI places only at a function's own entry.
        let Some(slots) = layout.as_deref().filter(|_| plan.target == Target::Function) else {
            out.push(Vec::new());
            continue;
        };
        let symbol = plan.function.name.as_str();
        let resolved = match (&types, &table) {
            (Some(dwarf), _) => fields::resolve(spec, symbol, slots, dwarf),
            (None, Some(table)) => fields::resolve(spec, symbol, slots, table),
            (None, None) => resolve_without_types(spec, symbol, slots, binary),
        };
        out.push(resolved.map_err(Error::Input)?);
    }
    Ok(out)
}

/// A stripped binary of a Go release the table lacks: any path that
/// applies is an error suggesting `--symbols`.
fn resolve_without_types(
    spec: &CaptureSpec,
    symbol: &str,
    slots: &[Slot],
    binary: &Binary,
) -> Result<Vec<Resolved>, String> {
    struct Nothing;
    impl TypeSource for Nothing {
        type Id = ();
        fn named(&self, _: &str) -> Option<()> {
            None
        }
        fn name_of(&self, _: &()) -> String {
            String::new()
        }
        fn shape(&self, _: &()) -> fields::Shape<()> {
            fields::Shape::Opaque("unknown")
        }
        fn complete(&self) -> bool {
            false
        }
    }
    fields::resolve(spec, symbol, slots, &Nothing).map_err(|e| {
        let go = binary.build_info().map_or("an unknown Go release".to_string(), |b| b.go_version.clone());
        format!("{e}; ktrace has no field offsets for {go}")
    })
}

impl Setup {
    /// One record per plan (`layouts[i]` is `plans[i]`'s), with the kernel
    /// config and captures `wants` and `filter` call for, and the
    /// `--capture` paths `fields[i]` (from [`resolve_fields`]; empty when
    /// none), and the probe on `runtime.goexit1` ([`goexit_plan`]). A
    /// `--filter` argument no traced function has is an error.
    pub fn new(
        goexit: Option<ProbePlan>,
        plans: Vec<ProbePlan>,
        layouts: Vec<Layout>,
        wants: Wants,
        filter: Option<&FilterSpec>,
        fields: Vec<Vec<Resolved>>,
    ) -> Result<Self, Error> {
        let mut warnings = Vec::new();
        if let Some(f) = filter {
            let found: Vec<FilterArg> = plans
                .iter()
                .zip(&layouts)
                .map(|(p, l)| match p.target {
                    Target::Function => config::filter_arg(l.as_deref(), &f.arg),
                    _ => FilterArg::Absent,
                })
                .collect();
            let labels: Vec<String> = plans.iter().map(ProbePlan::label).collect();
            warnings = f.check(labels.iter().map(String::as_str).zip(&found)).map_err(Error::Input)?;
        }
        let groups = groups_of(&plans);
        let mut fields = fields.into_iter();
        let traced = plans
            .into_iter()
            .zip(layouts)
            .zip(groups)
            .map(|((plan, layout), groups)| {
                let (mut config, mut captures) =
                    config::build(&plan, layout.as_deref(), wants, filter.map(|f| f.arg.as_str()));
                let paths = fields.next().unwrap_or_default();
                let fields = config::add_fields(&mut config, &mut captures, &paths, wants.unredacted_args);
                Traced { plan, layout, config, captures, fields, groups }
            })
            .collect();
        Ok(Self { traced, goexit, warnings })
    }

    /// The `--capture` configs, in function-id order.
    pub fn field_configs(&self) -> Vec<Option<CaptureConfig>> {
        self.traced.iter().map(|t| t.fields).collect()
    }

    /// The plans and kernel configs, in function-id order.
    pub fn sites(&self) -> Vec<(&ProbePlan, FuncConfig)> {
        self.traced.iter().map(|t| (&t.plan, t.config)).collect()
    }

    /// The captures, in function-id order.
    pub fn captures(&self) -> Vec<Captures> {
        self.traced.iter().map(|t| t.captures.clone()).collect()
    }

    /// What the trace header says about the traced functions.
    pub fn header_functions(&self) -> Vec<TracedFunction> {
        self.traced
            .iter()
            .enumerate()
            .map(|(id, t)| TracedFunction {
                id: id as u32,
                symbol: t.plan.label(),
                file: t.plan.function.file.as_deref().map(str::to_owned),
                line: t.plan.function.line,
                groups: t.groups.clone(),
                phase: phase_of(&t.plan.function, &t.groups).map(str::to_owned),
            })
            .collect()
    }

    /// The trace file's header for this session.
    pub fn header(&self, binary: &Binary, latency: bool, pid: Option<u32>, start_unix_ns: u64) -> Header {
        Header {
            format: trace::FORMAT.into(),
            version: trace::VERSION,
            mode: if latency { analyzer::summary::Mode::Latency } else { analyzer::summary::Mode::CountOnly },
            pid,
            binary: binary.path().display().to_string(),
            build_id: binary.build_id(),
            go_version: binary.build_info().map(|b| b.go_version.clone()),
            start_unix_ns,
            unredacted_args: None,
            filter: None,
            functions: self.header_functions(),
        }
    }

    /// One line per notice about secrets and `--filter`: names only, never
    /// a value.
    pub fn notices(&self, args: bool, unredacted: bool, to_file: bool, filter: Option<&FilterSpec>) -> Vec<String> {
        let mut out = Vec::new();
        if unredacted {
            out.push(format!(
                "warning: --unredacted-args: secret arguments (tokens, passwords, keys) are captured in the clear{}",
                if to_file { " and written to the trace file" } else { "" }
            ));
        } else if args || self.traced.iter().any(|t| !t.captures.fields.is_empty()) {
            let secrets: Vec<String> = self
                .traced
                .iter()
                .filter_map(|t| t.captures.secret.as_ref().map(|s| format!("{s} of {}", t.plan.label())))
                .collect();
            let redacted: Vec<String> = self
                .traced
                .iter()
                .flat_map(|t| {
                    t.captures
                        .fields
                        .iter()
                        .filter(|f| f.redacted)
                        .map(move |f| format!("{} of {}", f.key, t.plan.label()))
                })
                .collect();
            let secrets: Vec<String> = secrets.into_iter().chain(redacted).collect();
            if !secrets.is_empty() {
                out.push(format!(
                    "{} secret argument{} recorded as <redacted N bytes>, never read: {}",
                    secrets.len(),
                    if secrets.len() == 1 { "" } else { "s" },
                    secrets.join(", ")
                ));
            }
        }
        if let Some(f) = filter {
            let with = self.traced.iter().filter(|t| t.captures.filter).count();
            out.push(format!(
                "--filter {}: {with} of {} functions have `{}` and keep a call when it matches; the others keep \
                 calls nested inside a kept call on the same goroutine",
                f.text(),
                self.traced.len(),
                f.arg
            ));
        }
        out
    }
}

/// The request phase a function's own time counts toward (see
/// `analyzer::requests`): `request` for a request root, none for a filter
/// closure that wraps the rest of the chain, else the first phase among its
/// groups.
fn phase_of(f: &Function, groups: &[String]) -> Option<&'static str> {
    use spec::presets::{ENVELOPES, REQUEST_ROOTS, any_matches};
    let file = f.file.as_deref();
    if any_matches(REQUEST_ROOTS, &f.name, file) {
        Some(requests::ROOT_PHASE)
    } else if any_matches(ENVELOPES, &f.name, file) {
        None
    } else {
        requests::phase_from_groups(groups)
    }
}

/// The presets of [`GROUPS`] each plan's function belongs to.
fn groups_of(plans: &[ProbePlan]) -> Vec<Vec<String>> {
    let traced: Vec<Function> = plans.iter().map(|p| p.function.clone()).collect();
    let mut groups = vec![Vec::new(); plans.len()];
    for group in GROUPS {
        let Ok(items) = spec::parse(group) else { continue };
        let Ok(members) = spec::select(&items, &traced) else { continue };
        for m in members {
            if let Some(i) = traced.iter().position(|f| std::ptr::eq(f, m)) {
                groups[i].push(group.to_string());
            }
        }
    }
    groups
}
