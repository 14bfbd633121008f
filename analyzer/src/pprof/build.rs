//! Writes profile.proto messages: string and function interning, one
//! location per distinct frame sequence. ktrace uses it for the latency
//! export (`ktrace flame --trace T --output latency.pb.gz`); tests and the
//! benchmark use it to make profiles.

use std::{collections::HashMap, io::Write};

use prost::Message;

use super::proto;

/// Builds one profile.
#[derive(Debug, Default)]
pub struct ProfileBuilder {
    profile: proto::Profile,
    strings: HashMap<String, i64>,
    functions: HashMap<String, u64>,
    /// Location per (function id, inlined callees' function ids).
    locations: HashMap<Vec<u64>, u64>,
}

impl ProfileBuilder {
    /// A profile whose samples carry one value per `(type, unit)`.
    pub fn new(sample_types: &[(&str, &str)]) -> Self {
        let mut b = ProfileBuilder::default();
        b.profile.string_table.push(String::new());
        b.strings.insert(String::new(), 0);
        b.profile.sample_type =
            sample_types.iter().map(|(t, u)| proto::ValueType { r#type: b.string(t), unit: b.string(u) }).collect();
        b
    }

    /// Interns a string.
    pub fn string(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = self.profile.string_table.len() as i64;
        self.profile.string_table.push(s.to_string());
        self.strings.insert(s.to_string(), i);
        i
    }

    fn function(&mut self, name: &str) -> u64 {
        if let Some(&id) = self.functions.get(name) {
            return id;
        }
        let id = self.profile.function.len() as u64 + 1;
        let n = self.string(name);
        self.profile.function.push(proto::Function { id, name: n, system_name: n, filename: 0, start_line: 0 });
        self.functions.insert(name.to_string(), id);
        id
    }

    /// The location of a frame; `inlined` are functions inlined into it,
    /// innermost first (each becomes an extra line of the location).
    pub fn location(&mut self, frame: &str, inlined: &[&str]) -> u64 {
        let mut fids: Vec<u64> = inlined.iter().map(|f| self.function(f)).collect();
        fids.push(self.function(frame));
        if let Some(&id) = self.locations.get(&fids) {
            return id;
        }
        let id = self.profile.location.len() as u64 + 1;
        let line = fids.iter().map(|&function_id| proto::Line { function_id, line: 0, column: 0 }).collect();
        self.profile.location.push(proto::Location {
            id,
            mapping_id: 0,
            address: 0x40_0000 + id * 16,
            line,
            is_folded: false,
        });
        self.locations.insert(fids, id);
        id
    }

    /// Adds a sample whose stack is given leaf first, as frame names.
    pub fn sample(&mut self, stack_leaf_first: &[&str], values: &[i64]) {
        let ids: Vec<u64> = stack_leaf_first.iter().map(|f| self.location(f, &[])).collect();
        self.sample_ids(ids, values);
    }

    /// Adds a sample by location ids (from [`ProfileBuilder::location`]), leaf first.
    pub fn sample_ids(&mut self, location_id: Vec<u64>, values: &[i64]) {
        self.profile.sample.push(proto::Sample { location_id, value: values.to_vec(), label: Vec::new() });
    }

    /// Sets the collection time and window, ns.
    pub fn window(&mut self, time_nanos: i64, duration_nanos: i64) -> &mut Self {
        self.profile.time_nanos = time_nanos;
        self.profile.duration_nanos = duration_nanos;
        self
    }

    /// Sets the period type and period.
    pub fn period(&mut self, (ty, unit): (&str, &str), period: i64) -> &mut Self {
        self.profile.period_type = Some(proto::ValueType { r#type: self.string(ty), unit: self.string(unit) });
        self.profile.period = period;
        self
    }

    /// Names the sample type shown by default.
    pub fn default_sample_type(&mut self, name: &str) -> &mut Self {
        self.profile.default_sample_type = self.string(name);
        self
    }

    /// The message built so far.
    pub fn proto(&self) -> &proto::Profile {
        &self.profile
    }

    /// Encodes the profile, gzipped as /debug/pprof serves it.
    pub fn encode_gzip(&self) -> Vec<u8> {
        let raw = self.profile.encode_to_vec();
        let mut gz = flate2::write::GzEncoder::new(Vec::with_capacity(raw.len() / 4), flate2::Compression::fast());
        // Writing into a Vec cannot fail.
        let _ = gz.write_all(&raw);
        gz.finish().unwrap_or_default()
    }
}
