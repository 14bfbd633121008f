//! Folded stacks and flamegraph SVGs. Every source (a pprof profile, a
//! trace's latencies) is first folded into [`Folded`]: `root;…;leaf` →
//! weight. Rendering is inferno's; this module only picks its options, so
//! that a deterministic mode gives byte-identical SVGs for golden tests.

use std::{
    collections::BTreeMap,
    io::{self, BufRead, Write},
};

use inferno::flamegraph::{self, Palette, color::BasicPalette};

/// Stacks, root first with `;` between frames, and their summed weights.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Folded {
    stacks: BTreeMap<String, u64>,
}

impl Folded {
    /// Adds `weight` to `stack`.
    pub fn add(&mut self, stack: &str, weight: u64) {
        if weight == 0 {
            return;
        }
        match self.stacks.get_mut(stack) {
            Some(w) => *w = w.saturating_add(weight),
            None => {
                self.stacks.insert(stack.to_string(), weight);
            }
        }
    }

    /// The stacks in sorted order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.stacks.iter().map(|(s, &w)| (s.as_str(), w))
    }

    /// Number of distinct stacks.
    pub fn len(&self) -> usize {
        self.stacks.len()
    }

    /// True when there is nothing to draw.
    pub fn is_empty(&self) -> bool {
        self.stacks.is_empty()
    }

    /// Sum of all weights.
    pub fn total(&self) -> u64 {
        self.stacks.values().fold(0u64, |a, &w| a.saturating_add(w))
    }

    /// Sum of the weights of stacks holding a frame for which `pred` is
    /// true; a stack counts once however many such frames it has.
    pub fn total_where(&self, mut pred: impl FnMut(&str) -> bool) -> u64 {
        self.iter().filter(|(s, _)| s.split(';').any(&mut pred)).fold(0u64, |a, (_, w)| a.saturating_add(w))
    }

    /// Writes the `stack weight` lines Brendan Gregg's tools and inferno read.
    pub fn write(&self, mut out: impl Write) -> io::Result<()> {
        for (s, w) in self.iter() {
            writeln!(out, "{s} {w}")?;
        }
        Ok(())
    }

    /// Reads `stack weight` lines; malformed lines are errors naming the line.
    pub fn read(input: impl BufRead) -> io::Result<Folded> {
        let mut f = Folded::default();
        for (i, line) in input.lines().enumerate() {
            let line = line?;
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let parsed = line.rsplit_once(' ').and_then(|(s, w)| Some((s, w.parse::<u64>().ok()?)));
            let (stack, w) = parsed.ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, format!("line {}: not `stack weight`", i + 1))
            })?;
            f.add(stack, w);
        }
        Ok(f)
    }
}

/// How a flamegraph looks.
#[derive(Clone, Debug)]
pub struct FlameOptions {
    /// Title at the top.
    pub title: String,
    /// Line under the title (e.g. the profile's source and window).
    pub subtitle: Option<String>,
    /// What the weights count (`samples`, `ns`, `bytes`), shown in tooltips.
    pub count_name: String,
    /// Colour scheme.
    pub palette: FlamePalette,
    /// Colours from name hashes instead of random, so equal input gives
    /// equal bytes (golden tests; also nicer for comparing two graphs).
    pub deterministic: bool,
    /// Width in pixels.
    pub width: usize,
}

/// Colour schemes ktrace uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlamePalette {
    /// Red-yellow: CPU.
    Hot,
    /// Blue: wall time, waiting.
    Io,
    /// Green-blue: memory.
    Mem,
}

impl Default for FlameOptions {
    fn default() -> Self {
        FlameOptions {
            title: "Flame Graph".into(),
            subtitle: None,
            count_name: "samples".into(),
            palette: FlamePalette::Hot,
            deterministic: false,
            width: 1200,
        }
    }
}

impl FlameOptions {
    fn inferno(&self) -> flamegraph::Options<'static> {
        let mut o = flamegraph::Options::default();
        o.title = self.title.clone();
        o.subtitle = self.subtitle.clone();
        o.count_name = self.count_name.clone();
        o.colors = Palette::Basic(match self.palette {
            FlamePalette::Hot => BasicPalette::Hot,
            FlamePalette::Io => BasicPalette::Io,
            FlamePalette::Mem => BasicPalette::Mem,
        });
        o.deterministic = self.deterministic;
        o.hash = true;
        o.image_width = Some(self.width);
        o
    }
}

fn empty(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("nothing to draw: the {what} has no samples"))
}

/// Renders a flamegraph SVG of `folded`.
pub fn render_svg(folded: &Folded, opts: &FlameOptions, out: impl Write) -> io::Result<()> {
    if folded.total() == 0 {
        return Err(empty("profile"));
    }
    let lines: Vec<String> = folded.iter().map(|(s, w)| format!("{s} {w}")).collect();
    flamegraph::from_lines(&mut opts.inferno(), lines.iter().map(String::as_str), out)
}

/// Renders a differential flamegraph: frames are drawn as in `new`, red
/// where they grew since `base` and blue where they shrank. `base` is first
/// scaled to `new`'s total, so two profiles of different lengths compare.
pub fn render_diff_svg(base: &Folded, new: &Folded, opts: &FlameOptions, out: impl Write) -> io::Result<()> {
    if new.total() == 0 {
        return Err(empty("profile"));
    }
    if base.total() == 0 {
        return Err(empty("base profile"));
    }
    let scale = new.total() as f64 / base.total() as f64;
    let mut both: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (s, w) in base.iter() {
        both.entry(s).or_default().0 = (w as f64 * scale).round() as u64;
    }
    for (s, w) in new.iter() {
        both.entry(s).or_default().1 = w;
    }
    let lines: Vec<String> = both.iter().map(|(s, (b, n))| format!("{s} {b} {n}")).collect();
    flamegraph::from_lines(&mut opts.inferno(), lines.iter().map(String::as_str), out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_round_trips_and_sums() {
        let mut f = Folded::default();
        f.add("main;a;b", 3);
        f.add("main;a", 2);
        f.add("main;a;b", 1);
        f.add("main;z", 0);
        let mut out = Vec::new();
        f.write(&mut out).unwrap();
        assert_eq!(String::from_utf8(out.clone()).unwrap(), "main;a 2\nmain;a;b 4\n");
        assert_eq!(Folded::read(&out[..]).unwrap(), f);
        assert_eq!(f.total(), 6);
        assert_eq!(f.total_where(|fr| fr == "b"), 4);
        assert!(Folded::read(&b"main;a x\n"[..]).is_err());
    }

    #[test]
    fn deterministic_svg_is_stable_and_empty_is_an_error() {
        let mut f = Folded::default();
        f.add("main;etcd3.(*store).Create", 10);
        let opts = FlameOptions { deterministic: true, ..Default::default() };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        render_svg(&f, &opts, &mut a).unwrap();
        render_svg(&f, &opts, &mut b).unwrap();
        assert_eq!(a, b);
        assert!(String::from_utf8(a).unwrap().contains("etcd3.(*store).Create"));
        assert!(render_svg(&Folded::default(), &opts, Vec::new()).is_err());
        let mut diff = Vec::new();
        render_diff_svg(&f, &f, &opts, &mut diff).unwrap();
        assert!(render_diff_svg(&Folded::default(), &f, &opts, Vec::new()).is_err());
    }
}
