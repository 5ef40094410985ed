/* Chapters 4 and 5: for one test sentence, the teacher-forced attention of the Bahdanau and
 * the Luong model beside the gold alignment, each model's output, its sentence BLEU and its
 * sentence AER. Pointing at, tapping or focusing a French word shows where each model reads
 * it from. Data: book/explorers/04_alignment.json (explorers/ch04_alignment.py). */
CourseExplorers.register("alignment", function (root, data, ui) {
  "use strict";
  const figure = root.closest("figure.explorer");
  const MODELS = [["bahdanau", "Bahdanau", "additive score, query s\u209c\u208b\u2081"],
                  ["luong", "Luong", "general score, query s\u209c"]];
  const PANEL = 336;  /* largest panel width, in SVG units (= px on a phone) */
  const CHAR = 6.4;   /* width of one character of an 11 px label */
  const state = {budget: "benchmark", sentence: data.first, row: -1};
  const sentences = data.sentences;

  /* ------------------------------------------------------------------ controls */
  const bar = ui.controls(root);
  ui.select(bar, {label: "training", name: "budget", value: state.budget,
                  options: Object.entries(data.budgets).map(
                    ([k, b]) => [k, `${b.steps} steps (${k === "quick" ? "quick" : "benchmark"}` +
                                    " runs)"])},
            v => { state.budget = v; draw(); });
  const short = s => (s.length > 34 ? `${s.slice(0, 33)}\u2026` : s);
  const sel = ui.select(bar, {label: "sentence", name: "sentence", value: state.sentence,
                              options: sentences.map((s, k) => [k,
                                `${s.src.split(" ").length} words: ${short(s.src)}` +
                                (s.note ? ` (${s.note})` : "")])},
                        v => { state.sentence = +v; state.row = -1; draw(); });
  sel.classList.add("ex-al-sentence");
  const nav = ui.el("div", {class: "explorer-control"}, bar);
  const prev = ui.button(nav, {label: "\u2190 previous", name: "prev"}, () => go(-1));
  const next = ui.button(nav, {label: "next \u2192", name: "next"}, () => go(1));
  function go(step) {
    const k = state.sentence + step;
    if (k < 0 || k >= sentences.length) return;
    state.sentence = k;
    state.row = -1;
    sel.value = String(k);
    draw();
  }

  /* ------------------------------------------------------------------ layout */
  const lines = ui.el("div", {class: "ex-al-lines"}, root);
  const srcLine = ui.el("p", {class: "ex-al-line"}, lines);
  const tgtLine = ui.el("p", {class: "ex-al-line"}, lines);
  const word = ui.readout(root, "ex-al-word");
  const panels = ui.el("div", {class: "explorer-panels ex-al-panels"}, root);
  const legend = ui.el("p", {class: "ex-al-legend"}, root);
  ui.el("span", {class: "ex-al-key ex-al-key-gold"}, legend);
  legend.append(" gold link   ");
  ui.el("span", {class: "ex-al-key ex-al-key-hit"}, legend);
  legend.append(" largest weight of the row, on a gold link   ");
  ui.el("span", {class: "ex-al-key ex-al-key-miss"}, legend);
  legend.append(" largest weight off the gold links (an AER error)");
  const table = ui.el("table", {class: "ex-al-table"}, root);

  /* ------------------------------------------------------------------ data */
  function dense(rows, ns) {
    return rows.map(([first, cells]) => {
      const r = new Array(ns).fill(0);
      cells.forEach((k, c) => { r[first + c] = k / data.scale; });
      return r;
    });
  }

  function current() {
    const s = sentences[state.sentence];
    const src = s.src.split(" "), tgt = s.tgt.split(" ");
    const gold = tgt.map(() => src.map(() => 0));
    const goldOf = tgt.map(() => []);
    for (const [i, j] of s.gold) { gold[j][i] = 1; goldOf[j].push(i); }
    const runs = {};
    for (const [m] of MODELS) {
      const r = s.runs[state.budget][m];
      const w = dense(r.weights, src.length);
      /* the link AER reads: the first largest weight of each row */
      const top = w.map(row => row.reduce((b, v, i) => (v > row[b] ? i : b), 0));
      runs[m] = Object.assign({}, r, {w, top});
    }
    return {s, src, tgt, gold, goldOf, runs};
  }

  /* ------------------------------------------------------------------ drawing */
  let view = null;  /* what the hover code needs: the panels' highlight layers, the spans */

  function geometry(src, tgt) {
    const longest = ws => Math.max(...ws.map(w => w.length));
    let rowW = 8 + CHAR * longest(tgt);
    let cell = Math.min(18, Math.floor((PANEL - rowW - 4) / src.length));
    const words = cell >= 12;
    if (!words) {
      rowW = 24;
      cell = Math.max(5, Math.min(18, Math.floor((PANEL - rowW - 4) / src.length)));
    }
    const colH = words ? 8 + CHAR * longest(src) : 16;
    const x0 = rowW, y0 = 22 + colH;
    return {words, cell, x0, y0, w: Math.ceil(x0 + src.length * cell + 4),
            h: Math.ceil(y0 + tgt.length * cell + 4)};
  }

  function ticks(n, cell) {  /* positions labelled when the words do not fit: 1, 5/10, ... */
    const step = cell * 5 >= 26 ? 5 : 10;
    const out = [0];
    for (let k = step; k <= n; k += step) out.push(k - 1);
    return out;
  }

  function panel(cur, g, title, m, kind, role) {
    const {src, tgt} = cur;
    const wrap = ui.el("div", {class: "ex-al-panel", "data-panel": kind}, panels);
    wrap.style.width = `${g.w}px`;
    const svg = ui.svg(wrap, g.w, g.h, `${title}: ${tgt.length} French words by ` +
                       `${src.length} English words`);
    ui.svgEl("text", {x: 0, y: 13, class: "explorer-title"}, svg, title);
    ui.heatmap(svg, m, {x: g.x0, y: g.y0, cell: g.cell, role, max: 1, kind});
    const labels = ui.svgEl("g", {class: "ex-al-labels"}, svg);
    const cols = g.words ? src.map((_, i) => i) : ticks(src.length, g.cell);
    const rows = g.words ? tgt.map((_, j) => j) : ticks(tgt.length, g.cell);
    for (const i of cols) {
      /* words upright, read from the bottom; one or two letters stand level, in the cell */
      const up = g.words && src[i].length > 2;
      const cx = g.x0 + (i + 0.5) * g.cell + (up ? 4 : 0), cy = g.y0 - 5;
      ui.svgEl("text", {x: cx, y: cy, class: "explorer-label", "data-col": i,
                        transform: up ? `rotate(-90 ${cx} ${cy})` : null,
                        "text-anchor": up ? "start" : "middle"},
               labels, g.words ? src[i] : String(i + 1));
    }
    for (const j of rows) {
      ui.svgEl("text", {x: g.x0 - 4, y: g.y0 + (j + 0.5) * g.cell + 4, "text-anchor": "end",
                        class: "explorer-label", "data-row": j},
               labels, g.words ? tgt[j] : String(j + 1));
    }
    const marks = ui.svgEl("g", {class: "ex-al-marks"}, svg);
    const hl = ui.svgEl("g", {class: "ex-al-hl"}, svg);
    const hits = ui.svgEl("g", {class: "ex-al-hits"}, svg);
    tgt.forEach((_, j) => {
      const r = ui.svgEl("rect", {x: 0, y: g.y0 + j * g.cell, width: g.w,
                                  height: g.cell, class: "ex-al-rowhit", "data-row": j}, hits);
      r.addEventListener("mouseenter", () => setRow(j));
      r.addEventListener("click", () => setRow(j));
    });
    return {svg, g, marks, hl, labels};
  }

  function marks(p, cur, run) {
    const {g} = p;
    const c = g.cell;
    for (const [i, j] of cur.s.gold) {
      ui.svgEl("rect", {x: g.x0 + i * c + 0.75, y: g.y0 + j * c + 0.75, width: c - 1.5,
                        height: c - 1.5, class: "ex-al-gold", "data-row": j, "data-col": i},
               p.marks);
    }
    run.top.forEach((i, j) => {
      const hit = cur.gold[j][i] === 1;
      const r = hit ? Math.max(1.4, c * 0.18) : Math.max(2, c * 0.26);
      ui.svgEl("circle", {cx: g.x0 + (i + 0.5) * c, cy: g.y0 + (j + 0.5) * c, r,
                          "data-row": j, "data-col": i,
                          class: hit ? "ex-al-top hit" : "ex-al-top miss"}, p.marks);
    });
  }

  function tokens(line, label, words, cls, focusable) {
    ui.clear(line);
    ui.el("span", {class: "ex-al-line-label"}, line, `${label} `);
    return words.map((w, k) => {
      const sp = ui.el("span", {class: `ex-al-tok ${cls}`, "data-index": k,
                                tabindex: focusable ? "0" : null,
                                role: focusable ? "button" : null}, line, w);
      line.append(" ");
      return sp;
    });
  }

  function draw() {
    const cur = current();
    const {s, src, tgt, runs} = cur;
    figure.dataset.sentence = String(state.sentence);
    figure.dataset.budget = state.budget;
    prev.disabled = state.sentence === 0;
    next.disabled = state.sentence === sentences.length - 1;
    const srcSpans = tokens(srcLine, "English (source):", src, "src", false);
    const tgtSpans = tokens(tgtLine, "French (reference):", tgt, "tgt", true);
    tgtSpans.forEach((sp, j) => {
      sp.addEventListener("mouseenter", () => setRow(j));
      sp.addEventListener("focus", () => setRow(j));
      sp.addEventListener("click", () => setRow(j));
    });
    ui.clear(panels);
    const g = geometry(src, tgt);
    const steps = data.budgets[state.budget].steps;
    const ps = {gold: panel(cur, g, "gold alignment", cur.gold, "gold", "value")};
    for (const [m, name] of MODELS) {
      ps[m] = panel(cur, g, `${name}, ${steps} steps`, runs[m].w, m, "score");
      marks(ps[m], cur, runs[m]);
    }
    /* each model: its output, BLEU against the reference, and the sentence's AER */
    ui.clear(table);
    const head = ui.el("tr", {}, ui.el("thead", {}, table));
    for (const t of ["model", "output (greedy)", "BLEU", "AER"]) ui.el("th", {}, head, t);
    const body = ui.el("tbody", {}, table);
    for (const [m, name, what] of MODELS) {
      const r = runs[m];
      const tr = ui.el("tr", {"data-model": m}, body);
      const th = ui.el("th", {scope: "row"}, tr, name);
      ui.el("span", {class: "ex-al-what"}, th, what);
      const out = ui.el("td", {class: "ex-al-out"}, tr);
      out.textContent = r.out;
      if (r.out === s.tgt) ui.el("span", {class: "ex-al-same"}, out, " (= reference)");
      ui.value(ui.el("td", {}, tr), r.bleu, 2, "ex-al-bleu");
      const a = ui.el("td", {}, tr);
      ui.value(a, r.aer, 2, "ex-al-aer");
      ui.el("span", {class: "ex-al-hitcount", "data-value": r.hits}, a,
            `${r.hits} of ${tgt.length} words on gold`);
    }
    view = {cur, ps, srcSpans, tgtSpans};
    if (state.row >= tgt.length) state.row = -1;
    highlight();
  }

  /* ------------------------------------------------------------------ one French word */
  function setRow(j) {
    if (state.row === j) return;
    state.row = j;
    highlight();
  }

  function highlight() {
    const {cur, ps, srcSpans, tgtSpans} = view;
    const j = state.row;
    figure.dataset.row = String(j);
    tgtSpans.forEach((sp, k) => sp.classList.toggle("is-active", k === j));
    srcSpans.forEach((sp, i) => sp.classList.toggle("is-gold", j >= 0 &&
                                                         cur.goldOf[j].includes(i)));
    for (const [key, p] of Object.entries(ps)) {
      ui.clear(p.hl);
      p.labels.querySelectorAll("text").forEach(t => {
        const r = t.getAttribute("data-row"), c = t.getAttribute("data-col");
        t.classList.toggle("is-active", r !== null && +r === j);
        t.classList.toggle("is-gold", c !== null && j >= 0 && cur.goldOf[j].includes(+c));
      });
      if (j < 0) continue;
      const g = p.g;
      ui.svgEl("rect", {x: g.x0 - 1, y: g.y0 + j * g.cell - 1, width: cur.src.length * g.cell + 2,
                        height: g.cell + 2, class: "ex-al-row", "data-row": j}, p.hl);
      if (key !== "gold") {
        const i = cur.runs[key].top[j];
        ui.svgEl("rect", {x: g.x0 + i * g.cell, y: g.y0 + j * g.cell, width: g.cell,
                          height: g.cell, class: "ex-al-topcell", "data-col": i}, p.hl);
      }
    }
    ui.clear(word);
    if (j < 0) {
      word.append("Point at, tap or tab to a French word: its row lights up in each panel, " +
                  "and its gold English words in the sentence above.");
      return;
    }
    ui.el("strong", {"data-row": j}, word, cur.tgt[j]);
    word.append(` (French word ${j + 1}) \u00b7 gold: ` +
                cur.goldOf[j].map(i => cur.src[i]).join(", "));
    for (const [m, name] of MODELS) {
      const i = cur.runs[m].top[j];
      const hit = cur.gold[j][i] === 1;
      word.append(` \u00b7 ${name} \u2192 `);
      ui.el("em", {"data-model": m, "data-col": i}, word, cur.src[i]);
      word.append(" (");
      ui.value(word, cur.runs[m].w[j][i], 3, `ex-al-weight ex-al-${m}`);
      word.append(")");
      ui.el("span", {class: hit ? "ex-al-ok" : "alert", "data-hit": hit ? "1" : "0"}, word,
            hit ? " \u2713" : " \u2717 not gold");
    }
  }

  draw();
});
