//! `--symbols FILE`: types for a stripped target from an unstripped build of
//! the same source. Official kube-apiserver binaries are `-s -w` builds with
//! no DWARF; a build of the same source without `-s -w` has the same code
//! at the same addresses (the linker flags drop tables, not code), and its
//! DWARF gives each function's arguments and results.
//!
//! Nothing from FILE is trusted until checked against the target: every
//! probed function must exist in FILE at the same entry, under the same
//! name, with identical bytes. Addresses and probe sites always come from
//! the target itself; only DWARF types come from FILE.

use std::path::Path;

use super::{Binary, Dwarf, Function, Param, ResolveError};
use crate::spec::strip_type_args;

/// An unstripped companion of a stripped target.
pub struct SymbolsFile {
    binary: Binary,
    dwarf: Dwarf,
    functions: Vec<Function>,
}

impl SymbolsFile {
    /// Opens FILE and reads its functions and DWARF. A file without DWARF
    /// is refused: it has nothing to give.
    pub fn open(path: &Path) -> Result<SymbolsFile, ResolveError> {
        let binary = Binary::open(path)?;
        binary.check_go()?;
        let dwarf = binary.dwarf()?.ok_or_else(|| ResolveError::SymbolsMismatch {
            path: path.to_path_buf(),
            reason: "it has no DWARF (built with -w?)".into(),
        })?;
        let functions = binary.functions()?;
        Ok(SymbolsFile { binary, dwarf, functions })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        self.binary.path()
    }

    /// Checks that FILE holds the same code as `target` for every function
    /// in `probed`: same entry, same name (a stripped pclntab writes generic
    /// type arguments as `[...]`), same bytes. Fails with the first
    /// difference and both Go build IDs.
    pub fn verify(&self, target: &Binary, probed: &[&Function]) -> Result<(), ResolveError> {
        for f in probed {
            let i = self.functions.partition_point(|g| g.entry < f.entry);
            let Some(mine) = self.functions.get(i).filter(|g| g.entry == f.entry) else {
                return Err(
                    self.mismatch(target, format!("no function at {:#x}, where the target has {}", f.entry, f.name))
                );
            };
            if !same_name(&mine.name, &f.name) {
                return Err(
                    self.mismatch(target, format!("{:#x} is {} in the target but {} here", f.entry, f.name, mine.name))
                );
            }
            let len = f.end.saturating_sub(f.entry);
            let theirs = target.text_at(f.entry, len)?;
            if self.binary.text_at(f.entry, len).ok() != Some(theirs) {
                return Err(self.mismatch(target, format!("the code of {} differs", f.name)));
            }
        }
        Ok(())
    }

    fn mismatch(&self, target: &Binary, what: String) -> ResolveError {
        let id = |b: &Binary| b.go_build_id().unwrap_or("none").to_string();
        ResolveError::SymbolsMismatch {
            path: self.path().to_path_buf(),
            reason: format!(
                "not a build of {} ({what}; Go build IDs {} and {})",
                target.path().display(),
                id(target),
                id(&self.binary)
            ),
        }
    }

    /// FILE's DWARF, which describes the target's types too (the files were
    /// checked to hold the same code).
    pub fn dwarf(&self) -> &Dwarf {
        &self.dwarf
    }

    /// Parameters then results of the target function `f`, from FILE's
    /// DWARF for the subprogram at the same entry.
    pub fn params(&self, f: &Function) -> Option<&[Param]> {
        self.dwarf.params(&self.dwarf.function_name_at(f.entry)?)
    }
}

/// Whether two tables name the same function: equal, or equal once the
/// generic type arguments are dropped (`.symtab` and DWARF keep them, a
/// stripped binary's pclntab writes `[...]`).
fn same_name(a: &str, b: &str) -> bool {
    a == b || strip_type_args(a).is_some_and(|a| strip_type_args(b).is_some_and(|b| a == b))
}

#[cfg(test)]
mod tests {
    use super::same_name;

    #[test]
    fn names_agree_modulo_elided_type_arguments() {
        assert!(same_name("p.(*T).M", "p.(*T).M"));
        assert!(same_name("p.(*T[go.shape.int]).M", "p.(*T[...]).M"));
        assert!(!same_name("p.(*T[go.shape.int]).M", "p.(*U[...]).M"));
        assert!(!same_name("p.(*T).M", "p.(*T).N"));
    }
}
