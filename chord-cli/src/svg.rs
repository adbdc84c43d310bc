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

/// A label placed on the drawing.
#[derive(Debug)]
struct Label {
    x: f64,
    y: f64,
    anchor: &'static str,
    text: String,
    /// A line from the dot to a label that had to move outwards.
    leader: Option<((f64, f64), (f64, f64))>,
}

/// Width of one character of a 12 px sans-serif label, a little over the real average
/// (so that estimated boxes are never smaller than drawn ones), and a line's height.
const CHAR_W: f64 = 7.2;
const LINE_H: f64 = 15.0;
/// Places tried for a label: beside its dot, then this many minus one steps outwards.
const LABEL_STEPS: usize = 4;

impl Label {
    /// The box the label covers: (left, top, right, bottom); `y` is its baseline.
    fn bounds(&self) -> (f64, f64, f64, f64) {
        let w = self.text.chars().count() as f64 * CHAR_W;
        let (x0, x1) = match self.anchor {
            "end" => (self.x - w, self.x),
            "start" => (self.x, self.x + w),
            _ => (self.x - w / 2.0, self.x + w / 2.0),
        };
        (x0, self.y - LINE_H * 0.8, x1, self.y + LINE_H * 0.2)
    }

    fn overlaps(&self, other: &Label) -> bool {
        let (a, b) = (self.bounds(), other.bounds());
        a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3
    }
}

/// Labels for the nodes that have room, on a circle of radius `r` around `(cx, cy)`
/// beside their dots, inside a `w` by `h` drawing: the focus node first, then the nodes
/// that store the most, then in id order; a label that would touch one already placed,
/// or leave the drawing, is left out (its node keeps its hover title).
fn place_labels(
    nodes: &[RingNode],
    focus: Option<Id>,
    (cx, cy, r): (f64, f64, f64),
    (w, h): (f64, f64),
) -> Vec<Label> {
    let mut order: Vec<&RingNode> = nodes.iter().collect();
    order.sort_by_key(|n| {
        (
            Some(n.id) != focus,
            std::cmp::Reverse(n.stored.unwrap_or(0)),
            n.id,
        )
    });
    // The "id 0" mark at the top is in the way too (drawn by `ring`).
    let mut placed: Vec<Label> = vec![id_zero_mark(cx, cy, r - 28.0)];
    for n in order {
        let stored = n
            .stored
            .map(|b| format!(" · {}", human(b)))
            .unwrap_or_default();
        let text = format!("{} {}{}", &n.id.to_string()[..8], n.label, stored);
        // Beside the dot, else further out along its radius with a leader line.
        for step in 0..LABEL_STEPS {
            let out = step as f64 * LINE_H * 1.2;
            let at = |rad: f64| (cx + rad * angle(n.id).cos(), cy + rad * angle(n.id).sin());
            let (x, y) = at(r + out);
            let anchor = if x < cx - 5.0 {
                "end"
            } else if x > cx + 5.0 {
                "start"
            } else {
                "middle"
            };
            let label = Label {
                x,
                // The baseline a third of a line below the point: the text centred on it.
                y: y + LINE_H / 3.0,
                anchor,
                text: text.clone(),
                leader: (step > 0).then(|| (at(r - 14.0), at(r + out - 4.0))),
            };
            let (x0, y0, x1, y1) = label.bounds();
            let inside = x0 >= 0.0 && x1 <= w && y0 >= 40.0 && y1 <= h - 55.0;
            if inside && !placed.iter().any(|p| p.overlaps(&label)) {
                placed.push(label);
                break;
            }
        }
    }
    placed.remove(0);
    placed
}

/// The "id 0" mark above the top of a circle of radius `r`.
fn id_zero_mark(cx: f64, cy: f64, r: f64) -> Label {
    Label {
        x: cx,
        y: cy - r - 12.0,
        anchor: "middle",
        text: "id 0".into(),
        leader: None,
    }
}

/// The ring as an SVG document. `fingers` are the distinct fingers of the node `of`.
pub fn ring(nodes: &[RingNode], fingers: Option<(Id, &[Id])>, title: &str) -> String {
    // Wide enough for labels of the form "01585afc 127.0.0.2:5000 · 1.0 MiB" on both sides.
    let (w, h) = (1200.0, 900.0);
    let (cx, cy, r) = (w / 2.0, h / 2.0 + 10.0, 320.0);
    // Dots shrink as the ring fills so that 1,000 nodes stay 1,000 dots, not a band.
    let dot = (std::f64::consts::TAU * r / nodes.len().max(1) as f64 * 0.35).clamp(1.2, 9.0);
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
    let mark = id_zero_mark(cx, cy, r);
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#888">{}</text>"##,
        mark.x, mark.y, mark.text
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
    // Nodes, sized by what they store; every node has its id and address on hover.
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
    }
    // Labels where they fit: never over one another (the rest are on hover).
    let labels = place_labels(nodes, fingers.map(|(of, _)| of), (cx, cy, r + 28.0), (w, h));
    for l in &labels {
        if let Some(((x1, y1), (x2, y2))) = l.leader {
            let _ = writeln!(
                s,
                r##"<line class="leader" x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="#999" stroke-width="0.7"/>"##
            );
        }
        let _ = writeln!(
            s,
            r#"<text class="label" x="{:.1}" y="{:.1}" text-anchor="{}">{}</text>"#,
            l.x,
            l.y,
            l.anchor,
            escape(&l.text)
        );
    }
    let legend_y = h - 40.0;
    let _ = writeln!(
        s,
        r##"<g transform="translate(30 {legend_y})"><line x1="0" y1="0" x2="24" y2="0" stroke="#2b7bb9" stroke-width="2"/><text x="30" y="4">successor</text><line x1="110" y1="0" x2="134" y2="0" stroke="#d62728" stroke-width="1.5" stroke-dasharray="5 3"/><text x="140" y="4">fingers</text><text x="220" y="4">{} nodes{}{}</text></g>"##,
        nodes.len(),
        if nodes.iter().any(|n| n.stored.is_some()) {
            "; dot size: bytes stored"
        } else {
            ""
        },
        if labels.len() < nodes.len() {
            format!(
                "; {} labelled where they fit, hover a dot for the others",
                labels.len()
            )
        } else {
            String::new()
        }
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring_of(n: usize) -> Vec<RingNode> {
        (0..n)
            .map(|i| {
                let addr = format!("127.0.{}.{}:{}", i / 250, i % 250 + 1, 5000 + i);
                RingNode {
                    id: Id::for_key(&addr),
                    label: addr,
                    successor: None,
                    stored: Some((i as u64 * 7919) % 5000),
                }
            })
            .collect()
    }

    /// Issue 15: labels of nearby nodes printed over each other (40 nodes: two ids at the
    /// top unreadable), and 100+ nodes were a ring of overlapping text.
    #[test]
    fn labels_never_overlap_and_every_node_is_drawn_once() {
        for n in [3, 12, 40, 100, 1000] {
            let nodes = ring_of(n);
            let focus = nodes[n / 2].id;
            let labels = place_labels(&nodes, Some(focus), (600.0, 460.0, 348.0), (1200.0, 900.0));
            for (i, a) in labels.iter().enumerate() {
                for b in &labels[i + 1..] {
                    assert!(!a.overlaps(b), "{n} nodes: {a:?} over {b:?}");
                }
            }
            assert!(!labels.is_empty());
            assert!(
                labels[0].text.starts_with(&focus.to_string()[..8]),
                "the focus node is labelled first"
            );
            if n <= 12 {
                assert_eq!(labels.len(), n, "a small ring is labelled whole");
            }
            let svg = ring(&nodes, Some((focus, &[])), "t");
            assert_eq!(svg.matches(r#"<circle class="node""#).count(), n);
            assert_eq!(svg.matches(r#"<text class="label""#).count(), labels.len());
        }
    }
}
