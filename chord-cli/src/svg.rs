//! Drawing a ring as people draw Chord: nodes on a circle by id, successor arcs, and the
//! fingers of one node.

use std::fmt::Write as _;

use chord_core::Id;

/// One node to draw.
pub struct RingNode {
    /// Its id (angle on the circle).
    pub id: Id,
    /// A label (its address).
    pub label: String,
    /// Its first successor, if any.
    pub successor: Option<Id>,
    /// Bytes it stores, if known.
    pub stored: Option<u64>,
}

fn angle(id: Id) -> f64 {
    // 0 at the top, clockwise, as the Chord paper draws it.
    id.as_fraction() * std::f64::consts::TAU - std::f64::consts::FRAC_PI_2
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// The start of an SVG document: size, white background, a centred title. The caller
/// appends shapes and the closing `</svg>`.
pub fn document(w: f64, h: f64, title: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="26" text-anchor="middle" font-size="15">{}</text>"#,
        w / 2.0,
        escape(title)
    );
    s
}

/// The ring as an SVG document. `fingers` are the distinct fingers of the node `of`.
pub fn ring(nodes: &[RingNode], fingers: Option<(Id, &[Id])>, title: &str) -> String {
    // Wide enough for labels of the form "01585afc 127.0.0.2:5000 · 1.0 MiB" on both sides.
    let (w, h) = (1200.0, 900.0);
    let (cx, cy, r) = (w / 2.0, h / 2.0 + 10.0, 320.0);
    let many = nodes.len() > 40;
    let dot = if many { 4.0 } else { 9.0 };
    let pos = |id: Id, rad: f64| (cx + rad * angle(id).cos(), cy + rad * angle(id).sin());
    let max_stored = nodes
        .iter()
        .filter_map(|n| n.stored)
        .max()
        .unwrap_or(0)
        .max(1);
    let mut s = document(w, h, title);
    let _ = writeln!(
        s,
        r##"<circle cx="{cx}" cy="{cy}" r="{r}" fill="none" stroke="#ccc" stroke-width="1"/>"##
    );
    let _ = writeln!(
        s,
        r##"<text x="{cx}" y="{}" text-anchor="middle" fill="#888">id 0</text>"##,
        cy - r - 12.0
    );
    // Successor arcs: along the circle, clockwise from each node to its successor.
    for n in nodes {
        let Some(succ) = n.successor else { continue };
        let (x1, y1) = pos(n.id, r);
        let (x2, y2) = pos(succ, r);
        let span = n.id.distance_to(succ).as_fraction();
        let large = i32::from(span > 0.5);
        let _ = writeln!(
            s,
            r##"<path class="successor" d="M{x1:.1} {y1:.1} A{r} {r} 0 {large} 1 {x2:.1} {y2:.1}" fill="none" stroke="#2b7bb9" stroke-width="2" stroke-opacity="0.7"/>"##
        );
    }
    // Fingers of one node: straight chords.
    if let Some((of, fs)) = fingers {
        let (x1, y1) = pos(of, r);
        for f in fs {
            let (x2, y2) = pos(*f, r);
            let _ = writeln!(
                s,
                r##"<line class="finger" x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="#d62728" stroke-width="1.5" stroke-dasharray="5 3"/>"##
            );
        }
    }
    // Nodes, sized by what they store; labels when there is room.
    for n in nodes {
        let (x, y) = pos(n.id, r);
        let size = match n.stored {
            Some(b) => dot * (0.7 + 0.9 * (b as f64 / max_stored as f64).sqrt()),
            None => dot,
        };
        let is_focus = fingers.is_some_and(|(of, _)| of == n.id);
        let fill = if is_focus { "#d62728" } else { "#08519c" };
        let _ = writeln!(
            s,
            r#"<circle class="node" cx="{x:.1}" cy="{y:.1}" r="{size:.1}" fill="{fill}"><title>{} {}</title></circle>"#,
            n.id,
            escape(&n.label)
        );
        if !many {
            let (lx, ly) = pos(n.id, r + 28.0);
            let anchor = if lx < cx - 5.0 {
                "end"
            } else if lx > cx + 5.0 {
                "start"
            } else {
                "middle"
            };
            let stored = n
                .stored
                .map(|b| format!(" · {}", human(b)))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                r#"<text x="{lx:.1}" y="{ly:.1}" text-anchor="{anchor}">{} {}{}</text>"#,
                &n.id.to_string()[..8],
                escape(&n.label),
                stored
            );
        }
    }
    let legend_y = h - 40.0;
    let _ = writeln!(
        s,
        r##"<g transform="translate(30 {legend_y})"><line x1="0" y1="0" x2="24" y2="0" stroke="#2b7bb9" stroke-width="2"/><text x="30" y="4">successor</text><line x1="110" y1="0" x2="134" y2="0" stroke="#d62728" stroke-width="1.5" stroke-dasharray="5 3"/><text x="140" y="4">fingers</text><text x="220" y="4">{} nodes{}</text></g>"##,
        nodes.len(),
        if nodes.iter().any(|n| n.stored.is_some()) {
            "; dot size: bytes stored"
        } else {
            ""
        }
    );
    s.push_str("</svg>\n");
    s
}
