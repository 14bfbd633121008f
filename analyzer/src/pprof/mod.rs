//! pprof profiles (`profile.proto`, gzipped as /debug/pprof serves them):
//! decoding untrusted bytes into [`Profile`], picking a sample type, and
//! folding samples into stacks for flamegraphs ([`crate::flame::Folded`]).
//! [`build`] writes profiles (the latency export, fixtures, the benchmark).
//!
//! Decoding never panics: a truncated gzip stream, bytes that are not a
//! profile, and ids or string indices that point nowhere are all
//! [`DecodeError`]s.

pub mod build;
pub mod proto;

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
    io::{self, Read},
};

use prost::Message;

use crate::flame::Folded;

/// Largest profile accepted after decompression; /debug/pprof profiles are
/// a few MiB, so this only stops a decompression bomb.
const MAX_DECOMPRESSED: u64 = 1 << 30;

/// Why bytes are not a usable profile.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The gzip stream ends before its trailer: the body was cut short.
    #[error("truncated profile: the gzip stream ends early after {0} bytes")]
    Truncated(usize),
    /// Neither gzip nor a profile.proto message.
    #[error("not a pprof profile ({0})")]
    NotPprof(String),
    /// Decompressed, but not a valid profile.proto message.
    #[error("corrupt profile: {0}")]
    Corrupt(String),
    /// Bigger than [`MAX_DECOMPRESSED`].
    #[error("profile is larger than {} MiB uncompressed", MAX_DECOMPRESSED >> 20)]
    TooLarge,
    /// `--sample-type` names a type the profile lacks.
    #[error("no sample type {wanted:?} in this {kind} profile; it has {available}")]
    NoSampleType {
        /// What was asked for.
        wanted: String,
        /// The profile's kind.
        kind: String,
        /// Its sample types, comma-separated.
        available: String,
    },
}

fn corrupt(what: impl Into<String>) -> DecodeError {
    DecodeError::Corrupt(what.into())
}

/// Shows the first bytes of something that is not a profile, escaped so a
/// binary or HTML body prints as one harmless line.
fn preview(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "it is empty".into();
    }
    let head: String = bytes.iter().take(24).flat_map(|&b| std::ascii::escape_default(b)).map(char::from).collect();
    format!("it starts with \"{head}\"")
}

/// Decompresses a gzipped body, telling a cut-short stream apart from data
/// that was never gzip.
pub fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, DecodeError> {
    if !is_gzip(bytes) {
        return Err(DecodeError::NotPprof(preview(bytes)));
    }
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(4).min(64 << 20));
    let mut reader = flate2::read::MultiGzDecoder::new(bytes).take(MAX_DECOMPRESSED + 1);
    match reader.read_to_end(&mut out) {
        Ok(_) if out.len() as u64 > MAX_DECOMPRESSED => Err(DecodeError::TooLarge),
        Ok(_) => Ok(out),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(DecodeError::Truncated(bytes.len())),
        Err(e) => Err(corrupt(format!("bad gzip data: {e}"))),
    }
}

/// True when `bytes` start with the gzip magic.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// A decoded profile.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    /// The message as decoded.
    pub proto: proto::Profile,
}

/// One sample type, e.g. `cpu` in `nanoseconds`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SampleType {
    /// Type name.
    pub name: String,
    /// Unit.
    pub unit: String,
}

impl Profile {
    /// Decodes a profile, gzipped (as served) or not (as some tools save it).
    pub fn decode(bytes: &[u8]) -> Result<Profile, DecodeError> {
        let proto = if is_gzip(bytes) {
            let raw = gunzip(bytes)?;
            proto::Profile::decode(&raw[..]).map_err(|e| corrupt(e.to_string()))?
        } else {
            proto::Profile::decode(bytes).map_err(|_| DecodeError::NotPprof(preview(bytes)))?
        };
        // Random bytes sometimes decode as a message; a real profile always
        // has its sample types and a string table starting with "".
        let table_ok = proto.string_table.first().is_some_and(String::is_empty);
        if proto.sample_type.is_empty() || !table_ok {
            return Err(if is_gzip(bytes) {
                corrupt("no sample types or string table")
            } else {
                DecodeError::NotPprof(preview(bytes))
            });
        }
        let profile = Profile { proto };
        for vt in &profile.proto.sample_type {
            profile.string(vt.r#type)?;
            profile.string(vt.unit)?;
        }
        Ok(profile)
    }

    /// A string of the table, or an error naming the bad index.
    pub fn string(&self, index: i64) -> Result<&str, DecodeError> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.proto.string_table.get(i))
            .map(String::as_str)
            .ok_or_else(|| corrupt(format!("string index {index} is out of the table")))
    }

    fn string_or_empty(&self, index: i64) -> &str {
        self.string(index).unwrap_or("")
    }

    /// The sample types, in value order.
    pub fn sample_types(&self) -> Vec<SampleType> {
        let s = |i| self.string_or_empty(i).to_string();
        self.proto.sample_type.iter().map(|vt| SampleType { name: s(vt.r#type), unit: s(vt.unit) }).collect()
    }

    /// Which /debug/pprof endpoint the profile most likely came from, from
    /// its sample types: `profile` (CPU), `heap`, `allocs`, `goroutine`,
    /// `contention` (mutex and block look alike), `threadcreate`, or
    /// `latency` (ktrace's own export).
    pub fn kind(&self) -> &'static str {
        let names: Vec<String> = self.sample_types().into_iter().map(|t| t.name).collect();
        let has = |n: &str| names.iter().any(|x| x == n);
        let default = self.string_or_empty(self.proto.default_sample_type);
        if has("cpu") {
            "profile"
        } else if has("alloc_space") && default == "alloc_space" {
            "allocs"
        } else if has("inuse_space") {
            "heap"
        } else if has("goroutine") {
            "goroutine"
        } else if has("contentions") {
            "contention"
        } else if has("threadcreate") {
            "threadcreate"
        } else if has("wall") {
            "latency"
        } else {
            "unknown"
        }
    }

    /// The index of the sample type to show: `wanted` by name, else the
    /// profile's default, else the last one (what `go tool pprof` does).
    pub fn sample_index(&self, wanted: Option<&str>) -> Result<usize, DecodeError> {
        let types = self.sample_types();
        let find = |name: &str| types.iter().position(|t| t.name == name);
        match wanted {
            Some(w) => find(w).ok_or_else(|| DecodeError::NoSampleType {
                wanted: w.to_string(),
                kind: self.kind().to_string(),
                available: types.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", "),
            }),
            None => Ok(find(self.string_or_empty(self.proto.default_sample_type))
                .filter(|_| self.proto.default_sample_type != 0)
                .unwrap_or(types.len() - 1)),
        }
    }

    /// Sums sample `index` over identical stacks and names the frames,
    /// root first, inlined frames kept (a location with several lines gives
    /// several frames). Non-positive values are left out.
    pub fn fold(&self, index: usize) -> Result<Folded, DecodeError> {
        let names = self.location_names()?;
        let mut by_stack: HashMap<&[u64], u64, BuildHasherDefault<StackHasher>> = HashMap::default();
        for (i, s) in self.proto.sample.iter().enumerate() {
            let v = *s
                .value
                .get(index)
                .ok_or_else(|| corrupt(format!("sample {i} has {} values, wanted index {index}", s.value.len())))?;
            if s.value.len() != self.proto.sample_type.len() {
                return Err(corrupt(format!(
                    "sample {i} has {} values for {} types",
                    s.value.len(),
                    self.proto.sample_type.len()
                )));
            }
            if v > 0 {
                *by_stack.entry(&s.location_id).or_default() += v as u64;
            }
        }
        let mut folded = Folded::default();
        let mut line = String::new();
        for (ids, v) in by_stack {
            line.clear();
            for id in ids.iter().rev() {
                let name = names.get(id).ok_or_else(|| corrupt(format!("sample refers to missing location {id}")))?;
                if !line.is_empty() {
                    line.push(';');
                }
                line.push_str(name);
            }
            if line.is_empty() {
                line.push_str("[no stack]");
            }
            folded.add(&line, v);
        }
        Ok(folded)
    }

    /// Each location's frames joined root-first with `;`.
    fn location_names(&self) -> Result<HashMap<u64, String>, DecodeError> {
        let functions: HashMap<u64, &proto::Function> = self.proto.function.iter().map(|f| (f.id, f)).collect();
        let mut names = HashMap::with_capacity(self.proto.location.len());
        for loc in &self.proto.location {
            let mut frames = Vec::with_capacity(loc.line.len().max(1));
            // Lines are innermost first; a folded stack is root first.
            for line in loc.line.iter().rev() {
                let f = functions.get(&line.function_id).ok_or_else(|| {
                    corrupt(format!("location {} refers to missing function {}", loc.id, line.function_id))
                })?;
                let mut name = self.string(f.name)?;
                if name.is_empty() {
                    name = self.string(f.system_name)?;
                }
                frames.push(if name.is_empty() { format!("0x{:x}", loc.address) } else { sanitize(name) });
            }
            if frames.is_empty() {
                frames.push(format!("0x{:x}", loc.address));
            }
            names.insert(loc.id, frames.join(";"));
        }
        Ok(names)
    }

    /// Wall-clock window the profile covers: (start, duration), ns since the
    /// Unix epoch; `None` when the profile does not say.
    pub fn window(&self) -> Option<(u64, u64)> {
        let start = u64::try_from(self.proto.time_nanos).ok().filter(|&t| t > 0)?;
        Some((start, u64::try_from(self.proto.duration_nanos).unwrap_or(0)))
    }
}

/// A multiply-rotate hash for location-id slices: folding a 1M-sample
/// profile hashes a million stacks, and SipHash made that the slowest step.
/// Collisions only cost time, never correctness.
#[derive(Default)]
struct StackHasher(u64);

impl Hasher for StackHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(word));
        }
        for &b in chunks.remainder() {
            self.write_u64(b as u64);
        }
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Keeps a frame name from breaking the folded format (`;` separates
/// frames, a newline ends a line).
pub(crate) fn sanitize(name: &str) -> String {
    name.replace([';', '\n', '\r'], ":")
}

#[cfg(test)]
mod tests;
