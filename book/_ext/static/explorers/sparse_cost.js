/* Chapters 11 and 17: a fixed sparse pattern's mask beside its measured cost. Choose a
 * pattern and a length N; see the mask (drawn on 64 positions, lengths divided by 32), the
 * share of the N x N pairs it keeps at that N, and the time and peak memory of the library's
 * implementation of that pattern next to torch SDPA, both measured in the same run of
 * benchmarks/sparse_patterns.py, with naive attention from another run
 * (benchmarks/efficient.py) for scale. Data: book/explorers/11_sparse_cost.json
 * (explorers/ch11_sparse_cost.py). */
CourseExplorers.register("sparse-cost", function (root, data, ui) {
  "use strict";
  const sizes = data.sizes, byId = {};
  for (const p of data.patterns) byId[p.id] = p;
  const state = {pattern: data.patterns[0].id, i: sizes.indexOf(4096)};
  if (state.i < 0) state.i = Math.floor(sizes.length / 2);
  const figure = root.closest("figure.explorer");
  const shortN = n => (n >= 1024 ? `${n / 1024}K` : String(n));

  const bar = ui.controls(root);
  ui.select(bar, {label: "pattern", name: "pattern", value: state.pattern,
                  options: data.patterns.map(p => [p.id, p.label])},
            v => { state.pattern = v; drawMask(); drawCost(); });
  ui.slider(bar, {label: "length N", name: "n", min: 0, max: sizes.length - 1,
                  value: state.i, format: i => String(sizes[i])},
            v => { state.i = v; drawCost(); });

  const panels = ui.el("div", {class: "explorer-panels sparse-cost-panels"}, root);
  const maskPanel = ui.el("div", {class: "sparse-cost-mask"}, panels);
  const charts = ui.el("div", {class: "sparse-cost-charts"}, panels);
  const timePanel = ui.el("div", {}, charts), memPanel = ui.el("div", {}, charts);
  const keptOut = ui.readout(root, "sparse-cost-kept");
  const costOut = ui.readout(root, "sparse-cost-cost");

  /* Numbers as printed: 3 significant digits, no exponent. */
  function sig(x, d) {
    if (x === 0) return "0";
    const p = Math.max(0, (d || 3) - 1 - Math.floor(Math.log10(Math.abs(x))));
    return x.toFixed(Math.min(p, 6));
  }
  const ms = s => `${sig(s * 1e3)} ms`;
  const mib = b => (b >= 2 ** 30 ? `${sig(b / 2 ** 30)} GiB` : `${sig(b / 2 ** 20)} MiB`);
  function num(parent, v, text, name) {
    return ui.el("span", {class: "explorer-value", "data-value": v, "data-name": name},
                 parent, text);
  }

  function drawMask() {
    const p = byId[state.pattern], n = data.n_draw;
    figure.dataset.pattern = p.id;
    ui.clear(maskPanel);
    const cell = 4, x0 = 30, y0 = 40, w = x0 + n * cell + 8, h = y0 + n * cell + 40;
    const svg = ui.svg(maskPanel, w, h, `mask of the ${p.name}, drawn on ${n} positions`);
    const m = p.mask.map(r => [...r].map(c => (c === "1" ? 1 : 0)));
    ui.svgEl("text", {x: 0, y: 14, class: "explorer-title"}, svg, `drawn on ${n} positions`);
    ui.svgEl("text", {x: 0, y: 30, class: "explorer-label"}, svg,
             `lengths ÷ ${data.scale}: ${p.draw_rule}`);
    ui.heatmap(svg, m, {x: x0, y: y0, cell, role: "score", max: 1, kind: "mask"});
    for (const t of [0, n / 2, n - 1]) {
      ui.svgEl("text", {x: x0 - 4, y: y0 + t * cell + cell / 2 + 4, "text-anchor": "end",
                        class: "explorer-label"}, svg, String(t));
      ui.svgEl("text", {x: x0 + t * cell + cell / 2, y: y0 + n * cell + 13,
                        "text-anchor": "middle", class: "explorer-label"}, svg, String(t));
    }
    ui.svgEl("text", {x: x0 + n * cell / 2, y: y0 + n * cell + 26, "text-anchor": "middle",
                      class: "explorer-label"}, svg, "key j → (rows: query i)");
    const kept = ui.svgEl("text", {x: x0, y: y0 + n * cell + 40, class: "explorer-label",
                                   "data-value": p.draw_kept, "data-name": "draw_kept"}, svg,
                          `${(100 * p.draw_kept).toFixed(1)}% of the drawn pairs kept`);
    kept.classList.add("explorer-value");
  }

  /* A log-log chart of one cost against N: the dense computations and, when measured,
   * the pattern; the chosen N marked. */
  function chart(panel, title, field, unit, fmtTick, series) {
    ui.clear(panel);
    const W = 350, H = 236, L = 46, R = 276, T = 30, B = 196;
    const svg = ui.svg(panel, W, H, title);
    ui.svgEl("text", {x: 0, y: 14, class: "explorer-title"}, svg, title);
    let lo = Infinity, hi = -Infinity;
    const every = Object.values(data.naive);  /* the same axes for every pattern */
    for (const m of Object.values(data.cost)) every.push(...Object.values(m));
    for (const v of every) {
      for (const y of v[field]) { lo = Math.min(lo, y); hi = Math.max(hi, y); }
    }
    const l0 = Math.floor(Math.log10(lo * unit)), l1 = Math.ceil(Math.log10(hi * unit));
    const lx0 = Math.log2(sizes[0]), lx1 = Math.log2(sizes[sizes.length - 1]);
    const px = n => L + (R - L) * (Math.log2(n) - lx0) / (lx1 - lx0);
    const toY = ui.logScale(10 ** l0, 10 ** l1, B, T), py = y => toY(y * unit);
    for (let e = l0; e <= l1; e++) {
      const y = B - (B - T) * (e - l0) / (l1 - l0);
      ui.svgEl("line", {x1: L, x2: R, y1: y, y2: y, class: "sparse-cost-grid"}, svg);
      ui.svgEl("text", {x: L - 4, y: y + 4, "text-anchor": "end", class: "explorer-label"},
               svg, fmtTick(10 ** e));
    }
    sizes.forEach(n => {
      ui.svgEl("line", {x1: px(n), x2: px(n), y1: T, y2: B, class: "sparse-cost-grid"}, svg);
      ui.svgEl("text", {x: px(n), y: B + 14, "text-anchor": "middle", class: "explorer-label"},
               svg, shortN(n));
    });
    ui.svgEl("text", {x: (L + R) / 2, y: B + 30, "text-anchor": "middle",
                      class: "explorer-label"}, svg, "sequence length N");
    const now = sizes[state.i];
    ui.svgEl("line", {x1: px(now), x2: px(now), y1: T - 6, y2: B, class: "sparse-cost-now",
                      "data-n": now}, svg);
    const ends = [];
    for (const s of series) {
      const ys = s.values[field];
      ui.svgEl("polyline", {points: sizes.map((n, i) => `${px(n)},${py(ys[i])}`).join(" "),
                            class: `sparse-cost-line ${s.cls}`}, svg);
      sizes.forEach((n, i) => {
        ui.svgEl("circle", {cx: px(n), cy: py(ys[i]), r: i === state.i ? 4.5 : 2.5,
                            class: `sparse-cost-dot ${s.cls}` + (i === state.i ? " now" : ""),
                            "data-series": s.key, "data-n": n, "data-value": ys[i]}, svg);
      });
      ends.push({y: py(ys[ys.length - 1]), s});
    }
    ends.sort((a, b) => a.y - b.y);  /* keep the end labels (one or two lines) apart */
    for (let k = 1; k < ends.length; k++) {
      ends[k].y = Math.max(ends[k].y, ends[k - 1].y + (ends[k - 1].s.sub ? 25 : 12));
    }
    for (const {y, s} of ends) {
      ui.svgEl("text", {x: R + 6, y: y + 4, class: `explorer-label sparse-cost-end ${s.cls}`},
               svg, s.name);
      if (s.sub) {
        ui.svgEl("text", {x: R + 6, y: y + 16, class: `explorer-label sparse-cost-end ${s.cls}`},
                 svg, s.sub);
      }
    }
  }

  function drawCost() {
    const p = byId[state.pattern], n = sizes[state.i], i = state.i;
    figure.dataset.n = n;
    const mode = p.measured.mode, cost = data.cost[mode], z = data.naive[mode];
    const v = cost[p.measured.variant], d = cost.sdpa;
    const series = [
      {key: "naive", name: "naive", sub: "(other run)", cls: "naive", values: z},
      {key: "sdpa", name: "SDPA", cls: "sdpa", values: d},
      {key: p.measured.variant, name: p.short, cls: "pattern", values: v}];
    const causal = p.causal ? ", causal" : "";
    const tick = x => (x >= 1e4 ? `10${"⁰¹²³⁴⁵⁶⁷⁸⁹"[Math.log10(x)]}` : String(x));
    chart(timePanel, `time per call, ms${causal}`, "time_s", 1e3, tick, series);
    chart(memPanel, `peak memory, MiB${causal}`, "peak_bytes", 2 ** -20, tick, series);

    ui.clear(keptOut);
    keptOut.append(`At N = ${n}, the ${p.name} (${p.rule}) keeps `);
    num(keptOut, p.kept[i], `${(100 * p.kept[i]).toFixed(p.kept[i] < 0.1 ? 2 : 1)}%`, "kept");
    keptOut.append(` of the ${n}² query–key pairs: `);
    num(keptOut, p.keys_per_query[i], p.keys_per_query[i].toFixed(0), "keys_per_query");
    keptOut.append(" keys per query on average.");

    ui.clear(costOut);
    const up = v.speedup_vs_sdpa[i], mem = v.memory_vs_sdpa[i];
    costOut.append(`Measured, the library's ${p.label}: `);
    num(costOut, v.time_s[i], ms(v.time_s[i]), "time");
    costOut.append(" against SDPA's ");
    num(costOut, d.time_s[i], ms(d.time_s[i]), "sdpa_time");
    costOut.append(" in the same run: ");
    num(costOut, up, up >= 1 ? `${sig(up)}× faster` : `${sig(1 / up)}× slower`, "speedup");
    costOut.append("; peak memory ");
    num(costOut, v.peak_bytes[i], mib(v.peak_bytes[i]), "memory");
    costOut.append(" against ");
    num(costOut, d.peak_bytes[i], mib(d.peak_bytes[i]), "sdpa_memory");
    costOut.append(": ");
    num(costOut, mem, mem >= 1 ? `${sig(mem)}× more` : `${sig(1 / mem)}× less`,
        "memory_ratio");
    costOut.append(". Naive attention, which stores the N × N scores (another run, " +
                   "benchmarks/efficient.py): ");
    num(costOut, z.time_s[i], ms(z.time_s[i]), "naive_time");
    costOut.append(", ");
    num(costOut, z.peak_bytes[i], mib(z.peak_bytes[i]), "naive_memory");
    costOut.append(".");
  }

  drawMask();
  drawCost();
});
