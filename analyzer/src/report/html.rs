//! The report as one self-contained HTML page: the table and the
//! flamegraphs inline as `<svg>` elements. The page loads nothing: no
//! scripts, fonts or images from anywhere. inferno's SVGs carry a script
//! for zooming; inside the page it is removed (two copies would share
//! globals and element ids), so the inline graphs are static with native
//! tooltips, and the interactive SVG files are written beside the page.

use std::fmt::Write as _;

use super::{Report, RequestsSection, table};

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
tr.group td{font-weight:bold;border-top:1px solid #aaa}tr.func td:first-child{padding-left:2em;font-family:monospace;\
max-width:48em;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}\
.flame svg{width:100%;height:auto;border:1px solid #ddd}.notes{color:#a50}\
.waterfall{margin:1em 0 2em}.waterfall h3{font-size:15px;margin:.2em 0}\
.wf-row{display:flex;align-items:center;font-size:12px;height:18px}\
.wf-label{flex:none;box-sizing:border-box;width:34em;overflow:hidden;white-space:nowrap;text-overflow:ellipsis;font-family:monospace}\
#phases,#kinds{margin-bottom:1.2em}\
.wf-track{position:relative;flex:1;height:14px;background:#f4f4f4}\
.wf-bar{position:absolute;top:1px;height:12px;min-width:1px}\
.wf-dur{flex:none;width:6em;text-align:right;font-family:monospace}\
.cat-request{background:#888}.cat-call{background:#7a9cc6}.cat-phase{background:#e0a040}\
.ph-authn{background:#c0504d}.ph-authz{background:#9bbb59}.ph-admission{background:#8064a2}\
.ph-registry{background:#4bacc6}.ph-storage{background:#f79646}.ph-other{background:#aaa}.err{outline:2px solid #d00}";

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
        match (t.pid, t.pids.as_slice()) {
            (Some(p), _) => p.to_string(),
            (None, []) => "-".into(),
            (None, pids) => pids.iter().map(u32::to_string).collect::<Vec<_>>().join(", "),
        },
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
    // Requests first: they answer where a request's wall time goes; the
    // per-function table below is the detail.
    if let Some(r) = &report.requests {
        requests_html(&mut h, r);
        let _ = writeln!(h, "<h2>Phases and functions</h2>");
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

/// The requests part: phase and kind tables, then each slow request as a
/// waterfall of nested spans on its own time axis (bars are positioned in
/// percent of the request's wall time).
fn requests_html(h: &mut String, r: &RequestsSection) {
    let _ = writeln!(
        h,
        "<section id=\"requests\"><h2>Requests</h2><p>{} requests; {} traced calls outside any request.</p>",
        r.count, r.calls_outside
    );
    let table = |h: &mut String, id: &str, head: &[String], rows: Vec<Vec<String>>| {
        let _ = write!(h, "<table id=\"{id}\"><thead><tr>");
        for c in head {
            let _ = write!(h, "<th>{}</th>", escape(c));
        }
        h.push_str("</tr></thead><tbody>\n");
        for row in rows {
            h.push_str("<tr>");
            for c in row {
                let _ = write!(h, "<td>{}</td>", escape(&c));
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</tbody></table>\n");
    };
    table(h, "phases", &table::phase_header(), r.phases.iter().map(table::phase_cells).collect());
    table(h, "kinds", &table::kind_header(), r.kinds.iter().map(table::kind_cells).collect());
    let _ = writeln!(h, "<h2>Slowest requests</h2>");
    for w in &r.slowest {
        let _ = writeln!(
            h,
            "<div class=\"waterfall\" data-dur-ns=\"{}\"><h3>{} <small>{} &middot; {}</small></h3>",
            w.dur_ns,
            escape(&w.title),
            escape(&w.kind),
            table::duration(w.dur_ns)
        );
        for s in &w.spans {
            let pct = |ns: u64| if w.dur_ns == 0 { 0.0 } else { ns as f64 * 100.0 / w.dur_ns as f64 };
            let class = match s.cat {
                "phase" => format!("cat-phase ph-{}", s.label),
                other => format!("cat-{other}"),
            };
            let label = &s.label;
            let _ = writeln!(
                h,
                "<div class=\"wf-row\" data-cat=\"{}\"><span class=\"wf-label\" style=\"padding-left:{}em\" title=\"{}\">{}</span>\
                 <span class=\"wf-track\"><span class=\"wf-bar {class}{}\" style=\"left:{:.3}%;width:{:.3}%\" \
                 data-offset-ns=\"{}\" data-dur-ns=\"{}\"></span></span><span class=\"wf-dur\">{}</span></div>",
                s.cat,
                s.depth,
                escape(&s.label),
                escape(label),
                if s.error { " err" } else { "" },
                pct(s.offset_ns),
                pct(s.dur_ns),
                s.offset_ns,
                s.dur_ns,
                table::duration(s.dur_ns)
            );
        }
        h.push_str("</div>\n");
    }
    h.push_str("</section>\n");
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
