//! The report as one self-contained HTML page: the table and the
//! flamegraphs inline as `<svg>` elements. The page loads nothing: no
//! scripts, fonts or images from anywhere. inferno's SVGs carry a script
//! for zooming; inside the page it is removed (two copies would share
//! globals and element ids), so the inline graphs are static with native
//! tooltips, and the interactive SVG files are written beside the page.

use std::fmt::Write as _;

use super::{Report, table};

/// Escapes text for HTML content and attributes.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// An inferno SVG made fit to sit inside HTML: no XML prolog or doctype,
/// no script, no onload handler.
pub fn inline_svg(svg: &str) -> String {
    let mut s = match svg.find("<svg") {
        Some(i) => svg[i..].to_string(),
        None => return String::new(),
    };
    while let Some(start) = s.find("<script") {
        let Some(len) = s[start..].find("</script>") else {
            s.truncate(start);
            break;
        };
        s.replace_range(start..start + len + "</script>".len(), "");
    }
    s.replace(" onload=\"init(evt)\"", "")
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;font-size:14px}th,td{padding:3px 10px;text-align:right}\
th:first-child,td:first-child{text-align:left}thead th{border-bottom:2px solid #444}\
tr.group td{font-weight:bold;border-top:1px solid #aaa}tr.func td:first-child{padding-left:2em;font-family:monospace}\
.flame svg{width:100%;height:auto;border:1px solid #ddd}.notes{color:#a50}";

/// The page.
pub fn page(report: &Report, latency_svg: Option<&str>, cpu_svg: Option<&str>) -> String {
    let mut h = String::new();
    let t = &report.trace;
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>ktrace report</title><style>{STYLE}</style></head><body>\n"
    );
    let _ = writeln!(h, "<h1>ktrace: wall time vs CPU</h1>");
    let _ = writeln!(
        h,
        "<p id=\"about\">{} (PID {}), {} traced, {} call records, {} dropped.</p>",
        escape(&t.binary),
        t.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
        table::duration(t.duration_ns),
        t.call_records,
        t.dropped_events
    );
    match &report.cpu_profile {
        Some(p) => {
            let _ = writeln!(
                h,
                "<p id=\"cpu-source\">CPU profile: {} from {}.</p>",
                escape(&p.sample_type),
                escape(&p.source)
            );
        }
        None => {
            let _ = writeln!(h, "<p id=\"cpu-source\">No CPU profile was merged.</p>");
        }
    }
    let _ = writeln!(h, "<table id=\"report\"><thead><tr>");
    for c in table::COLUMNS {
        let _ = write!(h, "<th>{}</th>", escape(c));
    }
    let _ = writeln!(h, "</tr></thead><tbody>");
    let row = |h: &mut String, class: &str, cells: [String; 9], title: &str| {
        let _ = write!(h, "<tr class=\"{class}\" title=\"{}\">", escape(title));
        for c in cells {
            let _ = write!(h, "<td>{}</td>", escape(&c));
        }
        h.push_str("</tr>\n");
    };
    for g in &report.groups {
        row(&mut h, "group", table::cells(g.name.clone(), g), &g.name);
        for f in
            report.functions.iter().filter(|f| f.groups.contains(&g.name) || (g.name == "other" && f.groups.is_empty()))
        {
            row(&mut h, "func", table::cells(table::short(&f.name).to_string(), f), &f.name);
        }
    }
    let _ = writeln!(h, "</tbody></table>");
    if !report.notes.is_empty() {
        let _ = writeln!(h, "<ul class=\"notes\">");
        for n in &report.notes {
            let _ = writeln!(h, "<li>{}</li>", escape(n));
        }
        let _ = writeln!(h, "</ul>");
    }
    for (id, title, svg) in
        [("latency-flame", "Wall time of traced calls", latency_svg), ("cpu-flame", "CPU profile", cpu_svg)]
    {
        if let Some(svg) = svg {
            let _ =
                writeln!(h, "<section class=\"flame\" id=\"{id}\"><h2>{title}</h2>\n{}\n</section>", inline_svg(svg));
        }
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_svg_drops_prolog_and_script() {
        let svg = "<?xml version=\"1.0\"?><!DOCTYPE svg><svg onload=\"init(evt)\" x=\"1\"><script><![CDATA[ a<b ]]></script><g/></svg>";
        assert_eq!(inline_svg(svg), "<svg x=\"1\"><g/></svg>");
        assert_eq!(escape("<a&\"'>"), "&lt;a&amp;&quot;&#39;&gt;");
    }
}
