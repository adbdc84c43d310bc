// The live view of a Chord ring: draws what /events pushes (a walk of the ring by
// successors, and what changed between walks) and traces lookups with /api/lookup.
// Read-only: nothing here changes the ring.
'use strict';

const NS = 'http://www.w3.org/2000/svg';
const C = 400;          // centre of the 800 x 800 picture
const R = 290;          // radius of the ring
const LABELS_UP_TO = 40; // more nodes than this: labels on hover only

let ring = null;        // the latest walk: { nodes: [...], consistent, complete }
let selected = null;    // id of the clicked node
let hovered = null;     // id of the node under the mouse
let trace = null;       // the latest traced lookup, and how much of it is drawn

const $ = (id) => document.getElementById(id);

// Position of an id on the circle: its first 52 bits as a fraction of the circle,
// 0 at the top, clockwise.
function angle(hex) {
  return (parseInt(hex.slice(0, 13), 16) / 2 ** 52) * 2 * Math.PI - Math.PI / 2;
}
function at(hex, r = R) {
  const a = angle(hex);
  return [C + r * Math.cos(a), C + r * Math.sin(a)];
}

function el(name, attrs, parent) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function short(id) { return id.slice(0, 8); }
function bytes(n) {
  if (n == null) return '?';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + ' ' + u[i];
}

// What a node holds, in words. A host with virtual nodes has its items counted at the
// first of its positions walked; its other positions say so.
function held(n) {
  if (!n.answering) return 'not answering';
  if (n.items == null) {
    const first = ring.nodes.find((m) => m.addr === n.addr && m.items != null);
    return first ? `vnode of ${n.addr.replace(/^127\.0\.0\.1:/, ':')}` : 'items unknown';
  }
  return `${n.items} item${n.items === 1 ? '' : 's'} · ${bytes(n.stored)}`;
}

function byId(id) { return ring && ring.nodes.find((n) => n.id === id); }

// A successor arc: a curve from a to b bent towards the centre, its arrow ending at the
// edge of b's dot (of radius `gap`).
function arc(a, b, gap, cls, parent) {
  const [x1, y1] = at(a, R);
  let [x2, y2] = at(b, R);
  const mx = (x1 + x2) / 2, my = (y1 + y2) / 2;
  const cx = C + (mx - C) * 0.75, cy = C + (my - C) * 0.75;
  const d = Math.hypot(x2 - cx, y2 - cy) || 1;
  x2 -= ((x2 - cx) / d) * (gap + 1);
  y2 -= ((y2 - cy) / d) * (gap + 1);
  return el('path', { d: `M${x1},${y1} Q${cx},${cy} ${x2},${y2}`, class: cls, 'marker-end': 'url(#arrow)' }, parent);
}

function draw() {
  const svg = $('ring');
  svg.replaceChildren();
  const defs = el('defs', {}, svg);
  const m = el('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' }, defs);
  el('path', { d: 'M0,0 L10,5 L0,10 z', fill: '#9aa5b1' }, m);
  const mh = el('marker', { id: 'hoparrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 5, markerHeight: 5, orient: 'auto-start-reverse' }, defs);
  el('path', { d: 'M0,0 L10,5 L0,10 z', fill: '#805ad5' }, mh);
  el('circle', { cx: C, cy: C, r: R, class: 'guide' }, svg);
  el('line', { x1: C, y1: C - R - 8, x2: C, y2: C - R + 8, class: 'zero' }, svg);
  const zero = el('text', { x: C, y: C - R + 24, 'text-anchor': 'middle', class: 'small' }, svg);
  zero.textContent = 'id 0';
  if (!ring) return;
  const nodes = ring.nodes;
  const live = nodes.filter((n) => n.answering);
  svg.dataset.nodes = live.length;
  svg.dataset.silent = nodes.length - live.length;
  svg.dataset.consistent = ring.consistent;
  const radius = Math.max(3, Math.min(11, 900 / Math.max(nodes.length, 1) / 2));
  const arcs = el('g', {}, svg);
  for (const n of live) {
    if (n.successor && n.successor.id !== n.id) arc(n.id, n.successor.id, radius, 'succ', arcs);
  }
  const focus = byId(selected) || byId(hovered);
  if (focus) {
    const [x, y] = at(focus.id);
    const g = el('g', {}, svg);
    for (const f of focus.fingers) {
      if (f.peer.id === focus.id) continue;
      const [fx, fy] = at(f.peer.id);
      el('line', { x1: x, y1: y, x2: fx, y2: fy, class: 'finger' }, g);
    }
  }
  if (trace && trace.path.length) {
    const hops = trace.path.slice(0, trace.shown);
    if (trace.owner && trace.shown > trace.path.length) hops.push(trace.owner);
    const g = el('g', {}, svg);
    for (let i = 1; i < hops.length; i++) {
      const [x1, y1] = at(hops[i - 1].id, R - 4);
      const [x2, y2] = at(hops[i].id, R - 4);
      el('line', { x1, y1, x2, y2, class: 'hop', 'marker-end': 'url(#hoparrow)' }, g);
    }
    const [kx, ky] = at(trace.key, R + 14);
    el('path', { d: `M${kx - 6},${ky - 6} L${kx + 6},${ky + 6} M${kx + 6},${ky - 6} L${kx - 6},${ky + 6}`, class: 'hop' }, g);
  }
  const dots = el('g', {}, svg);
  const owner = trace && trace.shown > trace.path.length && trace.owner ? trace.owner.id : null;
  for (const n of nodes) {
    const [x, y] = at(n.id);
    if (n === nodes[0]) el('circle', { cx: x, cy: y, r: radius + 5, class: 'own' }, dots);
    const cls = ['node', n.answering ? '' : 'silent', focus && focus.id === n.id ? 'focus' : '', owner === n.id ? 'owner' : ''].join(' ');
    const c = el('circle', { cx: x, cy: y, r: radius, class: cls, 'data-id': n.id }, dots);
    const t = el('title', {}, c);
    t.textContent = `${n.addr}\nid ${n.id}\n` + held(n);
    c.addEventListener('mouseenter', () => { hovered = n.id; draw(); table(); });
    c.addEventListener('mouseleave', () => { hovered = null; draw(); table(); });
    c.addEventListener('click', () => { selected = selected === n.id ? null : n.id; draw(); table(); });
  }
  labels(svg, nodes, focus);
}

// Labels beside the nodes, outside the circle. The view's own node, the focus and the
// nodes of a traced lookup come first; a label that would overlap one already placed is
// left out (the node's title still says it). Over LABELS_UP_TO nodes only those first.
function labels(svg, nodes, focus) {
  const g = el('g', {}, svg);
  const first = new Set([nodes[0] && nodes[0].id, focus && focus.id]);
  if (trace) {
    trace.path.forEach((p) => first.add(p.id));
    if (trace.owner) first.add(trace.owner.id);
  }
  const rest = nodes.length <= LABELS_UP_TO ? nodes.filter((n) => !first.has(n.id)) : [];
  rest.sort((a, b) => angle(a.id) - angle(b.id));
  const shown = nodes.filter((n) => first.has(n.id)).concat(rest);
  const boxes = [];
  for (const n of shown) {
    const a = angle(n.id);
    const [x, y] = at(n.id, R + 22);
    const right = Math.cos(a) >= 0;
    const text = `${n.addr.replace(/^127\.0\.0\.1:/, ':')} ${short(n.id)}`;
    const w = text.length * 7.8, h = 30;
    const box = { x: right ? x : x - w, y: y - 12, w, h };
    if (boxes.some((b) => box.x < b.x + b.w && b.x < box.x + box.w && box.y < b.y + b.h && b.y < box.y + box.h)) continue;
    boxes.push(box);
    const t = el('text', { x, y, 'text-anchor': right ? 'start' : 'end' }, g);
    t.textContent = text;
    const s = el('text', { x, y: y + 14, 'text-anchor': right ? 'start' : 'end', class: 'small' }, g);
    s.textContent = (n === nodes[0] ? 'this view · ' : '') + held(n);
  }
}

function table() {
  const body = $('nodes').tBodies[0];
  body.replaceChildren();
  if (!ring) return;
  const focus = byId(selected) || byId(hovered);
  for (const n of ring.nodes) {
    const tr = document.createElement('tr');
    tr.className = (n.answering ? '' : 'silent') + (focus && focus.id === n.id ? ' focus' : '');
    const cells = [n.answering ? '●' : '✕', n.addr, short(n.id), n.items ?? '', n.items != null ? bytes(n.stored) : '', n.successor ? n.successor.addr : ''];
    cells.forEach((v, i) => {
      const td = document.createElement('td');
      td.textContent = v;
      if (i === 3 || i === 4) td.className = 'num';
      if (i === 2) td.classList.add('mono');
      tr.appendChild(td);
    });
    tr.addEventListener('click', () => { selected = selected === n.id ? null : n.id; draw(); table(); });
    body.appendChild(tr);
  }
  const f = $('focus');
  if (!focus) {
    f.className = 'muted';
    f.textContent = 'Hover or click a node to see its fingers.';
    return;
  }
  f.className = '';
  f.replaceChildren();
  const h = document.createElement('strong');
  h.textContent = `${focus.addr}  ${short(focus.id)}`;
  f.appendChild(h);
  const p = document.createElement('div');
  p.className = 'mono';
  p.textContent = `predecessor ${focus.predecessor ? focus.predecessor.addr : '(none)'} · successors ${focus.successors.map((s) => s.addr).join(', ') || '(none)'}`;
  f.appendChild(p);
  const fl = document.createElement('div');
  fl.className = 'mono';
  fl.textContent = 'fingers: ' + (focus.fingers.map((x) => `${x.index}→${x.peer.addr}`).join('  ') || '(none)');
  f.appendChild(fl);
}

function summary() {
  const s = $('summary');
  if (!ring) return;
  const live = ring.nodes.filter((n) => n.answering).length;
  const silent = ring.nodes.length - live;
  const hosts = new Set(ring.nodes.filter((n) => n.answering).map((n) => n.addr)).size;
  s.textContent = (hosts === live ? `${live} node${live === 1 ? '' : 's'}` : `${live} positions on ${hosts} hosts`) +
    (silent ? `, ${silent} not answering` : '') + (ring.complete ? '' : ' · walk cut short') +
    (ring.consistent ? ' · consistent' : ' · not consistent');
  s.className = 'pill ' + (ring.consistent ? 'ok' : 'bad');
}

function log(change) {
  const li = document.createElement('li');
  li.className = change.kind;
  const t = document.createElement('span');
  t.className = 't';
  t.textContent = new Date(change.at_ms || Date.now()).toLocaleTimeString();
  li.appendChild(t);
  li.appendChild(document.createTextNode(change.text));
  const list = $('log');
  list.insertBefore(li, list.firstChild);
  while (list.children.length > 200) list.removeChild(list.lastChild);
}

// The view is live while the server says so after every walk (twice a second).
let lastAlive = 0;

function follow() {
  const es = new EventSource('/events');
  const link = $('link');
  // On every (re)connection the server sends the latest walk and its recent log again.
  es.addEventListener('open', () => $('log').replaceChildren());
  es.addEventListener('error', () => { link.textContent = 'reconnecting…'; link.className = 'pill off'; });
  es.addEventListener('ring', (e) => { ring = JSON.parse(e.data); draw(); table(); summary(); });
  es.addEventListener('change', (e) => log(JSON.parse(e.data)));
  es.addEventListener('alive', () => { lastAlive = Date.now(); link.textContent = 'live'; link.className = 'pill ok'; });
  setInterval(() => {
    // A walk may take up to 5 s (then it is cut short), and the last question 2 s more.
    if (lastAlive && Date.now() - lastAlive > 10000 && es.readyState === EventSource.OPEN) {
      link.textContent = 'not updating';
      link.className = 'pill bad';
    }
  }, 1000);
}

async function lookup(ev) {
  ev.preventDefault();
  const name = $('key').value;
  const out = $('lookup-result');
  out.className = 'muted';
  out.textContent = 'looking up…';
  let t;
  try {
    const r = await fetch('/api/lookup?key=' + encodeURIComponent(name));
    if (!r.ok) { out.textContent = await r.text(); return; }
    t = await r.json();
  } catch (e) {
    out.textContent = 'the view does not answer';
    return;
  }
  trace = { ...t, shown: 1 };
  draw();
  const timer = setInterval(() => {
    trace.shown++;
    draw();
    if (trace.shown > trace.path.length) {
      clearInterval(timer);
      out.className = '';
      out.textContent = describe(t);
    }
  }, 600);
}

function describe(t) {
  const asked = t.path.length;
  let s = `key ${short(t.key)}: `;
  if (t.owner) {
    const last = t.path[asked - 1];
    s += `owner ${t.owner.addr} (${short(t.owner.id)}). Asked ${asked} node${asked === 1 ? '' : 's'}: ${t.path.map((p) => p.addr).join(' → ')}; ` +
      (last && last.id === t.owner.id ? 'the last is the owner itself.' : 'the last has the owner in its successor list.');
  } else {
    s += `no owner found (${t.error}).`;
  }
  if (t.node_says) {
    const same = t.owner && t.node_says.owner.id === t.owner.id;
    s += ` The node's own lookup: ${t.node_says.owner.addr} in ${t.node_says.hops} hop${t.node_says.hops === 1 ? '' : 's'}` + (same ? ' (same owner).' : ' (a different owner: the ring is changing).');
  }
  return s;
}

document.addEventListener('DOMContentLoaded', () => {
  draw();
  $('lookup').addEventListener('submit', lookup);
  follow();
});
