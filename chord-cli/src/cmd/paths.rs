//! `chord paths`: path length against ring size, the Chord paper's figure 10.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::experiment::{self, Experiment, Report};

pub const EXAMPLES: &str = "Examples:
  chord paths --from 3 --to 10
  chord paths --from 3 --to 14 --svg docs/path_length.svg --json";

/// Options of `chord paths`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Smallest ring: 2^FROM nodes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    from: u32,
    /// Largest ring: 2^TO nodes.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=20))]
    to: u32,
    /// Lookups per ring size.
    #[arg(long, default_value_t = 10_000)]
    lookups: usize,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the plot (SVG) here.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Print one JSON array of reports instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(a: &Args) -> crate::common::Result<()> {
    if a.from > a.to {
        return Err(format!("--from {} is larger than --to {}", a.from, a.to).into());
    }
    let mut reports = Vec::new();
    if !a.json {
        out!(
            "{:>7}  {:>6}  {:>5}  {:>4}  {:>4}  {:>12}",
            "nodes",
            "mean",
            "p1",
            "p99",
            "max",
            "½·log2 N"
        );
    }
    for k in a.from..=a.to {
        let r = experiment::run(&Experiment {
            nodes: 1 << k,
            keys: 0,
            lookups: a.lookups,
            seed: a.seed,
            ..Experiment::default()
        });
        if !a.json {
            out!(
                "{:>7}  {:>6.2}  {:>5}  {:>4}  {:>4}  {:>12.1}",
                r.nodes,
                r.path_length.mean,
                r.path_length.p1,
                r.path_length.p99,
                r.path_length.max,
                k as f64 / 2.0
            );
        }
        reports.push(r);
    }
    if a.json {
        out!("{}", serde_json::to_string(&reports)?);
    }
    if let Some(path) = &a.svg {
        std::fs::write(path, plot(&reports))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// A line plot: mean path length with the 1st-99th percentile band, against log2 N, beside
/// the paper's ½·log2 N.
fn plot(reports: &[Report]) -> String {
    let (w, h) = (640.0, 420.0);
    let (left, right, top, bottom) = (60.0, 20.0, 40.0, 50.0);
    let kmin = reports.first().map_or(1.0, |r| (r.nodes as f64).log2());
    let kmax = reports
        .last()
        .map_or(2.0, |r| (r.nodes as f64).log2())
        .max(kmin + 1.0);
    let ymax = reports
        .iter()
        .map(|r| r.path_length.p99.max(r.path_length.max))
        .fold(kmax / 2.0, f64::max)
        .ceil()
        + 1.0;
    let x = |k: f64| left + (k - kmin) / (kmax - kmin) * (w - left - right);
    let y = |v: f64| h - bottom - v / ymax * (h - top - bottom);
    let mut s = crate::svg::document(w, h, "Lookup path length vs ring size (chord sim)");
    // Axes, ticks and grid.
    let _ = writeln!(
        s,
        r##"<path d="M{left} {top} V{} H{}" stroke="#000" fill="none"/>"##,
        h - bottom,
        w - right
    );
    for k in (kmin as u32)..=(kmax as u32) {
        let xx = x(k as f64);
        let _ = writeln!(
            s,
            r##"<line x1="{xx}" y1="{}" x2="{xx}" y2="{}" stroke="#000"/><text x="{xx}" y="{}" text-anchor="middle">2^{k}</text>"##,
            h - bottom,
            h - bottom + 5.0,
            h - bottom + 18.0
        );
    }
    for v in 0..=(ymax as u32) {
        let yy = y(v as f64);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{yy}" x2="{}" y2="{yy}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{v}</text>"##,
            w - right,
            left - 6.0,
            yy + 4.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">number of nodes N</text>"#,
        (left + w - right) / 2.0,
        h - 12.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(16 {}) rotate(-90)" text-anchor="middle">hops</text>"#,
        (top + h - bottom) / 2.0
    );
    // Percentile band.
    let mut band = String::new();
    for r in reports {
        let k = (r.nodes as f64).log2();
        let _ = write!(band, "{},{} ", x(k), y(r.path_length.p99));
    }
    for r in reports.iter().rev() {
        let k = (r.nodes as f64).log2();
        let _ = write!(band, "{},{} ", x(k), y(r.path_length.p1));
    }
    let _ = writeln!(
        s,
        r##"<polygon points="{band}" fill="#9ecae1" fill-opacity="0.5" stroke="none"/>"##
    );
    // Paper curve and measured mean.
    let paper: Vec<String> = reports
        .iter()
        .map(|r| {
            let k = (r.nodes as f64).log2();
            format!("{},{}", x(k), y(k / 2.0))
        })
        .collect();
    let _ = writeln!(
        s,
        r##"<polyline points="{}" fill="none" stroke="#d62728" stroke-width="2" stroke-dasharray="6 4"/>"##,
        paper.join(" ")
    );
    let mean: Vec<String> = reports
        .iter()
        .map(|r| format!("{},{}", x((r.nodes as f64).log2()), y(r.path_length.mean)))
        .collect();
    let _ = writeln!(
        s,
        r##"<polyline points="{}" fill="none" stroke="#08519c" stroke-width="2"/>"##,
        mean.join(" ")
    );
    for r in reports {
        let _ = writeln!(
            s,
            r##"<circle cx="{}" cy="{}" r="3" fill="#08519c"/>"##,
            x((r.nodes as f64).log2()),
            y(r.path_length.mean)
        );
    }
    // Legend.
    let lx = left + 15.0;
    let _ = writeln!(
        s,
        r##"<g transform="translate({lx} {})"><line x1="0" y1="0" x2="24" y2="0" stroke="#08519c" stroke-width="2"/><text x="30" y="4">measured mean</text><rect x="0" y="12" width="24" height="10" fill="#9ecae1" fill-opacity="0.5"/><text x="30" y="21">1st–99th percentile</text><line x1="0" y1="36" x2="24" y2="36" stroke="#d62728" stroke-width="2" stroke-dasharray="6 4"/><text x="30" y="40">Chord paper: ½·log2 N</text></g>"##,
        top + 10.0
    );
    s.push_str("</svg>\n");
    s
}
