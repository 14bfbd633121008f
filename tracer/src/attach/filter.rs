//! `--filter ARG=PATTERN`: which calls the kernel keeps. The pattern is
//! compared in the eBPF program at each entry, before anything is counted,
//! so every count, error and histogram is of kept calls, and a left-out call
//! costs no ring-buffer space.
//!
//! A function with a string parameter named ARG keeps a call iff the value
//! matches: equal to PATTERN, or starting with it when PATTERN ends in `*`.
//! Its own value decides, even when it runs nested inside another kept call.
//! Any other function keeps a call iff it runs nested inside a kept call of
//! such a function on the same goroutine (so the work a kept `Create` does
//! is kept, and its callers are not).

use tracer_common::{FILTER_ON, FILTER_PREFIX, Filter, STR_CAP};

use super::config::FilterArg;

/// A parsed `--filter`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterSpec {
    /// The parameter name.
    pub arg: String,
    /// The pattern without its trailing `*`.
    pub pattern: String,
    /// True when the pattern ended in `*`.
    pub prefix: bool,
}

impl FilterSpec {
    /// Parses `ARG=PATTERN`. Only a trailing `*` is special; the pattern
    /// may be at most [`STR_CAP`] bytes, what the kernel can compare.
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some((arg, pattern)) = text.split_once('=').filter(|(a, _)| !a.trim().is_empty()) else {
            return Err(format!("--filter {text:?}: want ARG=PATTERN, e.g. 'key=/configmaps/my-ns/*'"));
        };
        let (pattern, prefix) = match pattern.strip_suffix('*') {
            Some(p) => (p, true),
            None => (pattern, false),
        };
        if pattern.contains('*') {
            return Err(format!("--filter {text}: only a trailing * is supported (a prefix match)"));
        }
        if pattern.len() > STR_CAP {
            return Err(format!(
                "--filter {text}: the pattern is {} bytes; the kernel compares at most {STR_CAP} (the capture limit)",
                pattern.len()
            ));
        }
        Ok(Self { arg: arg.trim().to_string(), pattern: pattern.to_string(), prefix })
    }

    /// What the kernel side compares.
    pub fn to_kernel(&self) -> Filter {
        let mut f = Filter { flags: FILTER_ON, len: self.pattern.len() as u32, ..Default::default() };
        if self.prefix {
            f.flags |= FILTER_PREFIX;
        }
        f.pattern[..self.pattern.len()].copy_from_slice(self.pattern.as_bytes());
        f
    }

    /// The rule the kernel applies, for a whole value.
    pub fn matches(&self, value: &str) -> bool {
        if self.prefix { value.starts_with(&self.pattern) } else { value == self.pattern }
    }

    /// The spec as the user wrote it (modulo spaces around ARG).
    pub fn text(&self) -> String {
        format!("{}={}{}", self.arg, self.pattern, if self.prefix { "*" } else { "" })
    }

    /// Checks the spec against what each traced function has under that
    /// name (`(symbol, lookup)`). Fails when ARG is a credential anywhere
    /// (ktrace does not filter on secrets) or when no function has it as a
    /// string; otherwise returns warnings for functions that have it with
    /// another type or at an unknown place (they follow the nested rule).
    pub fn check<'a>(
        &self,
        functions: impl IntoIterator<Item = (&'a str, &'a FilterArg)>,
    ) -> Result<Vec<String>, String> {
        let mut found = 0;
        let mut warnings = Vec::new();
        for (symbol, arg) in functions {
            match arg {
                FilterArg::Found(..) => found += 1,
                FilterArg::Absent => {}
                FilterArg::Secret => {
                    return Err(format!(
                        "--filter {}: `{}` of {symbol} is a credential; ktrace does not filter on secrets",
                        self.arg, self.arg
                    ));
                }
                FilterArg::NotString(ty) => warnings.push(format!(
                    "--filter {}: `{}` of {symbol} has type {ty}, not string; that function is kept only when nested in a kept call",
                    self.arg, self.arg
                )),
                FilterArg::Unplaced => warnings.push(format!(
                    "--filter {}: cannot tell where `{}` of {symbol} is; that function is kept only when nested in a kept call",
                    self.arg, self.arg
                )),
            }
        }
        if found == 0 {
            return Err(format!(
                "--filter {}: no traced function has a string parameter named `{}` (names come from DWARF, or the \
                 table of known kube-apiserver signatures for stripped builds)",
                self.arg, self.arg
            ));
        }
        Ok(warnings)
    }
}

#[cfg(test)]
mod tests {
    use tracer_common::ArgLoc;

    use super::*;

    #[test]
    fn prefix_and_exact_patterns() {
        let f = FilterSpec::parse("key=/registry/configmaps/my-ns/*").unwrap();
        assert_eq!((f.arg.as_str(), f.pattern.as_str(), f.prefix), ("key", "/registry/configmaps/my-ns/", true));
        assert!(f.matches("/registry/configmaps/my-ns/a") && f.matches("/registry/configmaps/my-ns/"));
        assert!(!f.matches("/registry/configmaps/my-ns") && !f.matches("/registry/configmaps/other/a"));
        assert_eq!(f.text(), "key=/registry/configmaps/my-ns/*");
        let k = f.to_kernel();
        assert_eq!((k.flags, k.len as usize), (FILTER_ON | FILTER_PREFIX, f.pattern.len()));
        assert_eq!(&k.pattern[..k.len as usize], f.pattern.as_bytes());

        let f = FilterSpec::parse("key=/registry/a").unwrap();
        assert!(!f.prefix && f.matches("/registry/a") && !f.matches("/registry/ab"));
        assert_eq!(f.to_kernel().flags, FILTER_ON);
        // Everything after the first `=` is the pattern.
        assert_eq!(FilterSpec::parse("key=a=b").unwrap().pattern, "a=b");
        // `*` alone keeps every call that has the argument.
        let all = FilterSpec::parse("key=*").unwrap();
        assert!(all.prefix && all.pattern.is_empty() && all.matches("anything"));
    }

    #[test]
    fn bad_specs_are_refused() {
        for bad in ["key", "=x", " =x", "key=/a*/b", "key=*a*"] {
            assert!(FilterSpec::parse(bad).is_err(), "{bad}");
        }
        let long = format!("key={}*", "k".repeat(STR_CAP + 1));
        assert!(FilterSpec::parse(&long).unwrap_err().contains("at most 128"));
        assert!(FilterSpec::parse(&format!("key={}*", "k".repeat(STR_CAP))).is_ok(), "exactly the limit is fine");
    }

    #[test]
    fn checked_against_the_traced_functions() {
        let f = FilterSpec::parse("key=/r/*").unwrap();
        let found = FilterArg::Found(ArgLoc::default(), ArgLoc::default());
        let none = FilterArg::Absent;
        assert_eq!(f.check([("a", &found), ("b", &none)]), Ok(vec![]));
        let e = f.check([("b", &none)]).unwrap_err();
        assert!(e.contains("no traced function has a string parameter named `key`"), "{e}");
        let e = f.check([("a", &found), ("auth", &FilterArg::Secret)]).unwrap_err();
        assert!(e.contains("credential") && e.contains("auth"), "{e}");
        let int = FilterArg::NotString("int".into());
        let w = f.check([("a", &found), ("c", &int)]).unwrap();
        assert!(w.len() == 1 && w[0].contains("c has type int"), "{w:?}");
        assert!(f.check([("c", &int)]).is_err(), "a non-string alone is not enough");
    }
}
