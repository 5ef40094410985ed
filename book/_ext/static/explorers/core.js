/* The course's explorers: interactive figures drawn with plain JavaScript and SVG.
 *
 * A chapter places one with raw HTML in a markdown cell:
 *   <figure class="explorer" data-explorer="KIND" data-data="NAME">...<figcaption>...</figure>
 * KIND is registered by book/_ext/static/explorers/KIND.js (CourseExplorers.register); NAME
 * is book/explorers/NAME.json, written by `python -m explorers` from real runs of the
 * library and served next to this file as data/NAME.js (book/_ext/course_site.py), a script
 * rather than a fetch so that the site also works opened from disk. No network, no library.
 *
 * Every drawn number carries its value in a data-value attribute, so the browser tests can
 * compare what is drawn with the JSON. Colours are CSS variables (explorers.css): the roles
 * of the diagrams, and the theme's own text and background, so dark mode follows.
 */
(function () {
  "use strict";
  const SVGNS = "http://www.w3.org/2000/svg";
  const here = document.currentScript && document.currentScript.src;
  const base = here ? here.replace(/core\.js(\?.*)?$/, "") : "_static/explorers/";
  const kinds = {};
  const store = {};
  const pending = {};
  let uid = 0;

  function el(tag, attrs, parent, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : v);
    }
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }

  function svgEl(tag, attrs, parent, text) {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null) e.setAttribute(k, v);
    }
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }

  /* A number as the figure prints it: `digits` decimals, no "-0". */
  function fmt(x, digits) {
    if (x === null || x === undefined || Number.isNaN(x)) return "–";
    const d = digits === undefined ? 2 : digits;
    const s = Number(x).toFixed(d);
    return /^-0\.?0*$/.test(s) ? s.slice(1) : s;
  }

  /* An <svg> that scales with the column: `w` x `h` user units, never wider than `w` px.
   * It is drawn detached and enters the page once the current event's code has drawn it
   * (a placeholder keeps its place): a page script that watches the DOM, such as the
   * theme's icon loader, then sees one change instead of one per cell (thousands of cells
   * took seconds). */
  function svg(parent, w, h, label) {
    const s = svgEl("svg", {viewBox: `0 0 ${w} ${h}`, width: "100%", role: "img",
                            "aria-label": label || "", class: "explorer-svg"});
    s.style.maxWidth = `${w}px`;
    const spot = document.createComment("explorer svg");
    parent.appendChild(spot);
    queueMicrotask(() => { if (spot.parentNode) spot.replaceWith(s); });
    return s;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  /* One hatch pattern per svg, for masked cells (the diagrams' hatched grey). */
  function hatch(s) {
    const id = `explorer-hatch-${++uid}`;
    const defs = svgEl("defs", {}, s);
    const p = svgEl("pattern", {id, width: 5, height: 5, patternUnits: "userSpaceOnUse",
                                patternTransform: "rotate(45)"}, defs);
    svgEl("line", {x1: 0, y1: 0, x2: 0, y2: 5, class: "explorer-hatch-line"}, p);
    return `url(#${id})`;
  }

  /* A matrix drawn as cells. opts: x, y, cell (size), role (colour: a CSS role name),
   * max (value of full colour; default the largest |value|), masked (bool matrix: hatched),
   * rowLabels, colLabels, digits (print values in the cells when set), kind (data-kind),
   * title (above the matrix). Returns the <g>; every cell is a <rect class="explorer-cell">
   * with data-row, data-col and data-value. */
  function heatmap(s, m, opts) {
    const o = Object.assign({x: 0, y: 0, cell: 24, role: "score", digits: null}, opts || {});
    const g = svgEl("g", {class: "explorer-heatmap", "data-kind": o.kind || "matrix"}, s);
    let max = o.max;
    if (max === undefined) {
      max = 0;
      for (const row of m) for (const v of row) max = Math.max(max, Math.abs(v));
    }
    const pattern = o.masked ? hatch(s) : null;
    if (o.title) {
      svgEl("text", {x: o.x, y: o.y - (o.colLabels ? 38 : 8), class: "explorer-title"}, g,
            o.title);
    }
    m.forEach((row, i) => {
      row.forEach((v, j) => {
        const x = o.x + j * o.cell, y = o.y + i * o.cell;
        const off = o.masked && !o.masked[i][j];
        const r = svgEl("rect", {x, y, width: o.cell, height: o.cell,
                                 class: `explorer-cell role-${o.role}` + (off ? " masked" : ""),
                                 "data-row": i, "data-col": j, "data-value": v}, g);
        if (off) {
          r.style.fill = pattern;  /* inline: wins over the role's colour */
        } else {
          r.style.fillOpacity = max > 0 ? (0.06 + 0.94 * Math.min(Math.abs(v) / max, 1)) : 0.06;
        }
        if (o.digits !== null && !off) {
          const strong = max > 0 && Math.abs(v) / max > 0.55;
          svgEl("text", {x: x + o.cell / 2, y: y + o.cell / 2 + 4, "text-anchor": "middle",
                         class: "explorer-cell-text" + (strong ? " on-strong" : "")},
                g, fmt(v, o.digits));
        }
      });
    });
    (o.rowLabels || []).forEach((t, i) => {
      svgEl("text", {x: o.x - 5, y: o.y + i * o.cell + o.cell / 2 + 4, "text-anchor": "end",
                     class: "explorer-label", "data-row": i}, g, t);
    });
    (o.colLabels || []).forEach((t, j) => {
      const cx = o.x + j * o.cell + o.cell / 2, cy = o.y - 6;
      svgEl("text", {x: cx, y: cy, "text-anchor": "start", class: "explorer-label",
                     transform: o.colLabels.some(c => String(c).length > 2)
                       ? `rotate(-45 ${cx} ${cy})` : null, "data-col": j}, g, t);
    });
    return g;
  }

  /* Controls: a row of labelled inputs above the drawing. Each returns its input element. */
  function controls(root) {
    return el("div", {class: "explorer-controls"}, root);
  }

  function slider(parent, o, onInput) {
    const id = `explorer-input-${++uid}`;
    const wrap = el("div", {class: "explorer-control"}, parent);
    el("label", {for: id}, wrap, o.label);
    const input = el("input", {type: "range", id, min: o.min, max: o.max, step: o.step || 1,
                               value: o.value, "data-control": o.name || o.label}, wrap);
    const out = el("output", {for: id}, wrap);
    const show = () => { out.textContent = o.format ? o.format(+input.value) : input.value; };
    input.addEventListener("input", () => { show(); onInput(+input.value); });
    show();
    return input;
  }

  function select(parent, o, onChange) {
    const id = `explorer-input-${++uid}`;
    const wrap = el("div", {class: "explorer-control"}, parent);
    el("label", {for: id}, wrap, o.label);
    const sel = el("select", {id, "data-control": o.name || o.label}, wrap);
    for (const [value, text] of o.options) {
      el("option", {value, selected: String(value) === String(o.value)}, sel, text);
    }
    sel.addEventListener("change", () => onChange(sel.value));
    return sel;
  }

  function toggle(parent, o, onChange) {
    const id = `explorer-input-${++uid}`;
    const wrap = el("div", {class: "explorer-control explorer-toggle"}, parent);
    const box = el("input", {type: "checkbox", id, checked: !!o.checked,
                             "data-control": o.name || o.label}, wrap);
    el("label", {for: id}, wrap, o.label);
    box.addEventListener("change", () => onChange(box.checked));
    return box;
  }

  function button(parent, o, onClick) {
    const b = el("button", {type: "button", class: "explorer-button",
                            "data-control": o.name || o.label}, parent, o.label);
    b.addEventListener("click", onClick);
    return b;
  }

  /* A line of text whose number the tests read: <span data-value=...>. */
  function readout(parent, cls) {
    return el("p", {class: "explorer-readout" + (cls ? ` ${cls}` : ""), "aria-live": "polite"},
              parent);
  }

  /* A log scale from [lo, hi] onto [a, b] of the screen (values outside are clamped). */
  function logScale(lo, hi, a, b) {
    const l0 = Math.log10(lo), l1 = Math.log10(hi);
    return v => a + (Math.log10(Math.min(Math.max(v, lo), hi)) - l0) / (l1 - l0) * (b - a);
  }

  function value(parent, v, digits, cls) {
    return el("span", {class: "explorer-value" + (cls ? ` ${cls}` : ""), "data-value": v},
              parent, fmt(v, digits));
  }

  const ui = {el, svgEl, svg, clear, heatmap, controls, slider, select, toggle, button,
              readout, value, fmt, logScale};

  function start(root) {
    const kind = root.dataset.explorer, name = root.dataset.data;
    const body = root.querySelector(".explorer-body") || el("div", {class: "explorer-body"},
                                                            root);
    try {
      if (!kinds[kind]) throw new Error(`no explorer called ${kind}`);
      clear(body);
      kinds[kind](body, store[name], ui);
      root.dataset.ready = "true";
    } catch (err) {
      root.dataset.ready = "error";
      body.textContent = `This explorer could not start: ${err.message}`;
      console.error(err);
    }
  }

  function load(root) {
    const name = root.dataset.data;
    if (!name) return start(root);
    if (name in store) return start(root);
    if (pending[name]) { pending[name].push(root); return; }
    pending[name] = [root];
    const s = el("script", {src: `${base}data/${name}.js`});
    s.addEventListener("error", () => {
      for (const r of pending[name]) {
        r.dataset.ready = "error";
        console.error(`explorer data ${name} did not load`);
      }
    });
    document.head.appendChild(s);
  }

  window.CourseExplorers = {
    register(kind, init) { kinds[kind] = init; },
    data(name, value) {
      store[name] = value;
      for (const r of pending[name] || []) start(r);
      delete pending[name];
    },
    ui,
  };

  let booted = false;
  function boot() {
    if (booted) return;
    booted = true;
    document.querySelectorAll("figure.explorer[data-explorer]").forEach(load);
  }
  /* Deferred scripts run before DOMContentLoaded, so every KIND.js has registered by then. */
  if (document.readyState === "complete") boot();
  document.addEventListener("DOMContentLoaded", boot);
  window.addEventListener("load", boot);
})();
