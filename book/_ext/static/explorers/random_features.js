/* Chapter 15: trigonometric, positive and orthogonal positive random features of the softmax
 * kernel exp(x . y), as the number of frequencies m and the length r = |x| = |y| grow.
 * Three panels: (a) one draw's estimates of twelve kernel values against the exact ones
 * (log-log, |estimate|; hollow = negative), (b) the relative error of Performer attention
 * over 25 draws, (c) the MSE of the highlighted pair against m: Lemma 2's closed form (lines)
 * and the MSE measured over 512 draws (points). Data: book/explorers/15_random_features.json
 * (explorers/ch15_random_features.py). */
CourseExplorers.register("random-features", function (root, data, ui) {
  "use strict";
  const TYPES = data.types;  /* trig, positive, orthogonal */
  const NAMES = {trig: "trigonometric", positive: "positive", orthogonal: "positive, orth."};
  const state = {mi: 2, ri: 2, pair: 9};
  const fig = root.closest("figure.explorer");

  const bar = ui.controls(root);
  ui.slider(bar, {label: "frequencies m", name: "m", min: 0, max: data.ms.length - 1,
                  value: state.mi, format: i => String(data.ms[i])},
            v => { state.mi = v; draw(); });
  ui.slider(bar, {label: "length |x| = |y|", name: "radius", min: 0,
                  max: data.radii.length - 1, value: state.ri,
                  format: i => data.radii[i].toFixed(1)},
            v => { state.ri = v; draw(); });
  ui.slider(bar, {label: "pair angle", name: "pair", min: 0,
                  max: data.n_angles - 1, value: state.pair,
                  format: i => `${data.angles_over_pi[i].toFixed(2)}π`},
            v => { state.pair = v; draw(); });

  const top = ui.el("div", {class: "rf-panel"}, root);
  const panels = ui.el("div", {class: "explorer-panels"}, root);
  const mid = ui.el("div", {class: "rf-panel"}, panels);
  const right = ui.el("div", {class: "rf-panel"}, panels);
  const out = ui.readout(root);

  /* A number in a few significant digits, exponent form when very large or small. */
  function sig(v) {
    const a = Math.abs(v);
    if (a === 0) return "0";
    if (a >= 1e4 || a < 1e-3) return v.toExponential(1).replace("e+", "e");
    if (a >= 100) return String(Math.round(v));
    return v.toPrecision(3).replace(/\.?0+$/, "");
  }
  function tick(e) { return e === 0 ? "1" : e === 1 ? "10" : `1e${e}`; }

  function decades(values, pad) {
    const pos = values.filter(v => v > 0);
    let lo = Math.floor(Math.log10(Math.min(...pos)) - (pad || 0));
    let hi = Math.ceil(Math.log10(Math.max(...pos)) + (pad || 0));
    if (hi - lo < 2) { lo -= 1; hi += 1; }
    return [lo, hi];
  }
  function ticks(lo, hi, maxTicks) {
    const step = Math.max(1, Math.ceil((hi - lo) / maxTicks));
    const out = [];
    for (let e = hi; e >= lo; e -= step) out.push(e);
    return out.reverse();
  }

  function setting() { return data.settings[`${state.ri}_${state.mi}`]; }

  /* (a) estimate vs exact, one panel per feature type, shared log axes for this length. */
  function drawKernel() {
    ui.clear(top);
    const rad = data.radius[String(state.ri)], exact = rad.exact;
    const all = [...exact];
    for (let mi = 0; mi < data.ms.length; mi++) {
      const s = data.settings[`${state.ri}_${mi}`];
      for (const t of TYPES) for (const v of s.estimate[t]) all.push(Math.abs(v));
    }
    const [lo, hi] = decades(all, 0);
    const W = 420, H = 180, left = 36, size = 116, gap = 12, y0 = 32;
    const svg = ui.svg(top, W, H, "random-feature estimates of exp(x·y) against the exact value");
    svg.style.maxWidth = "560px";  /* the main panel: larger where the column allows */
    ui.svgEl("text", {x: 0, y: 12, class: "explorer-title"}, svg,
             "(a) one draw: |estimate| vs exact exp(x·y)");
    const s = setting();
    TYPES.forEach((t, k) => {
      const x0 = left + k * (size + gap);
      const sx = ui.logScale(10 ** lo, 10 ** hi, x0, x0 + size);
      const sy = ui.logScale(10 ** lo, 10 ** hi, y0 + size, y0);
      const g = ui.svgEl("g", {class: `rf-scatter rf-${t}`, "data-type": t}, svg);
      ui.svgEl("rect", {x: x0, y: y0, width: size, height: size, class: "rf-frame"}, g);
      ui.svgEl("text", {x: x0 + size / 2, y: y0 - 6, "text-anchor": "middle",
                        class: "explorer-label"}, g, NAMES[t]);
      for (const e of ticks(lo, hi, 4)) {
        ui.svgEl("line", {x1: sx(10 ** e), x2: sx(10 ** e), y1: y0, y2: y0 + size,
                          class: "rf-grid"}, g);
        ui.svgEl("line", {x1: x0, x2: x0 + size, y1: sy(10 ** e), y2: sy(10 ** e),
                          class: "rf-grid"}, g);
        if (e < hi || k === TYPES.length - 1) {  /* the last label would meet the next panel's */
          ui.svgEl("text", {x: sx(10 ** e), y: y0 + size + 12, "text-anchor": "middle",
                            class: "explorer-label rf-tick"}, g, tick(e));
        }
        if (k === 0) {
          ui.svgEl("text", {x: x0 - 3, y: sy(10 ** e) + 3, "text-anchor": "end",
                            class: "explorer-label rf-tick"}, g, tick(e));
        }
      }
      ui.svgEl("line", {x1: x0, y1: y0 + size, x2: x0 + size, y2: y0, class: "rf-diagonal"}, g);
      s.estimate[t].forEach((v, i) => {
        const hl = i === state.pair;
        ui.svgEl("circle", {cx: sx(exact[i]), cy: sy(Math.abs(v)), r: hl ? 4.5 : 3,
                            class: "rf-point" + (v <= 0 ? " rf-negative" : "") +
                              (hl ? " rf-highlight" : ""),
                            "data-pair": i, "data-value": v, "data-exact": exact[i]}, g);
      });
    });
    ui.svgEl("text", {x: left + (3 * size + 2 * gap) / 2, y: H - 2, "text-anchor": "middle",
                      class: "explorer-label"}, svg,
             "exact exp(x·y); hollow: negative estimate (drawn at |estimate|)");
  }

  /* (b) relative error of the attention output, 25 draws and their median, per type. */
  function drawAttention() {
    ui.clear(mid);
    const s = setting();
    const W = 340, H = 150, x0 = 100, x1 = 300, y0 = 38, row = 30;
    const svg = ui.svg(mid, W, H, "relative error of Performer attention");
    ui.svgEl("text", {x: 0, y: 12, class: "explorer-title"}, svg,
             "(b) attention: relative error");
    ui.svgEl("text", {x: 0, y: 26, class: "explorer-label"}, svg,
             `${data.n} queries and keys, ${data.attention_draws} draws; bar: median`);
    const lo = -2, hi = 3, sx = ui.logScale(10 ** lo, 10 ** hi, x0, x1);
    for (let e = lo; e <= hi; e++) {
      ui.svgEl("line", {x1: sx(10 ** e), x2: sx(10 ** e), y1: y0 - 4,
                        y2: y0 + TYPES.length * row - 6, class: "rf-grid"}, svg);
      ui.svgEl("text", {x: sx(10 ** e), y: y0 + TYPES.length * row + 6, "text-anchor": "middle",
                        class: "explorer-label rf-tick"}, svg, tick(e));
    }
    TYPES.forEach((t, k) => {
      const cy = y0 + k * row + 8;
      const g = ui.svgEl("g", {class: `rf-attention rf-${t}`, "data-type": t}, svg);
      ui.svgEl("text", {x: x0 - 6, y: cy + 4, "text-anchor": "end", class: "explorer-label"}, g,
               NAMES[t]);
      const med = s.attention_median[t];
      ui.svgEl("rect", {x: x0, y: cy - 7, width: Math.max(1, sx(med) - x0), height: 14,
                        class: "rf-bar", "data-value": med}, g);
      for (const v of s.attention[t]) {
        ui.svgEl("circle", {cx: sx(v), cy, r: 2, class: "rf-dot", "data-value": v}, g);
      }
      ui.svgEl("text", {x: x1 + 4, y: cy + 4, class: "explorer-label rf-number",
                        "data-value": med, "data-type": t}, g, sig(med));
    });
  }

  /* (c) MSE of the highlighted pair against m: Lemma 2 (lines), measured (points). */
  function drawMse() {
    ui.clear(right);
    const W = 340, H = 252, x0 = 44, x1 = 300, y0 = 56, y1 = 218;
    const svg = ui.svg(right, W, H, "mean squared error against m");
    ui.svgEl("text", {x: 0, y: 12, class: "explorer-title"}, svg,
             "(c) MSE of the highlighted pair");
    ui.svgEl("text", {x: 0, y: 26, class: "explorer-label"}, svg,
             `lines: Lemma 2; points: measured, ${data.draws} draws`);
    const rows = data.ms.map((_, mi) => data.settings[`${state.ri}_${mi}`]);
    const vals = [];
    for (const s of rows) {
      for (const t of TYPES) vals.push(s.mse[t][state.pair]);
      for (const t of ["trig", "positive"]) vals.push(s.lemma2[t][state.pair]);
    }
    const [lo, hi] = decades(vals, 0);
    const sy = ui.logScale(10 ** lo, 10 ** hi, y1, y0);
    const sx = ui.logScale(data.ms[0], data.ms[data.ms.length - 1], x0, x1);
    ui.svgEl("rect", {x: x0, y: y0, width: x1 - x0, height: y1 - y0, class: "rf-frame"}, svg);
    for (const e of ticks(lo, hi, 6)) {
      ui.svgEl("line", {x1: x0, x2: x1, y1: sy(10 ** e), y2: sy(10 ** e), class: "rf-grid"}, svg);
      ui.svgEl("text", {x: x0 - 3, y: sy(10 ** e) + 3, "text-anchor": "end",
                        class: "explorer-label rf-tick"}, svg, tick(e));
    }
    data.ms.forEach((m, mi) => {
      ui.svgEl("text", {x: sx(m), y: y1 + 12, "text-anchor": "middle",
                        class: "explorer-label rf-tick"}, svg, String(m));
    });
    ui.svgEl("text", {x: (x0 + x1) / 2, y: H - 4, "text-anchor": "middle",
                      class: "explorer-label"}, svg, "frequencies m");
    const m = data.ms[state.mi];
    ui.svgEl("line", {x1: sx(m), x2: sx(m), y1: y0, y2: y1, class: "rf-current"}, svg);
    for (const t of ["trig", "positive"]) {
      const ys = rows.map(s => s.lemma2[t][state.pair]);
      ui.svgEl("polyline", {points: data.ms.map((mm, i) => `${sx(mm)},${sy(ys[i])}`).join(" "),
                            class: `rf-line rf-${t}`, "data-type": t,
                            "data-values": JSON.stringify(ys)}, svg);
    }
    TYPES.forEach((t, k) => {
      const g = ui.svgEl("g", {class: `rf-measured rf-${t}`, "data-type": t}, svg);
      rows.forEach((s, mi) => {
        const v = s.mse[t][state.pair], cx = sx(data.ms[mi]) + (k - 1) * 3;
        const shape = t === "orthogonal"
          ? ui.svgEl("rect", {x: cx - 3, y: sy(v) - 3, width: 6, height: 6}, g)
          : ui.svgEl("circle", {cx, cy: sy(v), r: 3}, g);
        shape.setAttribute("class", "rf-point" + (mi === state.mi ? " rf-highlight" : ""));
        shape.setAttribute("data-m", data.ms[mi]);
        shape.setAttribute("data-value", v);
      });
    });
    /* legend, above the plot */
    TYPES.forEach((t, k) => {
      const lx = 6 + k * 100, ly = 42;
      const g = ui.svgEl("g", {class: `rf-${t}`}, svg);
      if (t === "orthogonal") {
        ui.svgEl("rect", {x: lx - 3, y: ly - 6, width: 6, height: 6, class: "rf-point"}, g);
      } else {
        ui.svgEl("circle", {cx: lx, cy: ly - 3, r: 3, class: "rf-point"}, g);
      }
      ui.svgEl("text", {x: lx + 7, y: ly, class: "explorer-label"}, g, NAMES[t]);
    });
  }

  function readout() {
    ui.clear(out);
    const s = setting(), p = state.pair, m = data.ms[state.mi];
    const exact = data.radius[String(state.ri)].exact[p];
    const span = (v, cls, attrs) => {
      const e = ui.el("span", Object.assign({class: "explorer-value" + (cls ? ` ${cls}` : ""),
                                             "data-value": v}, attrs || {}), out, sig(v));
      return e;
    };
    out.append(`Pair at angle ${data.angles_over_pi[p].toFixed(2)}π: exp(x·y) = `);
    span(exact, "", {"data-field": "exact"});
    out.append("; this draw estimates ");
    TYPES.forEach((t, k) => {
      out.append(`${NAMES[t]} `);
      span(s.estimate[t][p], `rf-text-${t}`, {"data-field": "estimate", "data-type": t});
      out.append(k < TYPES.length - 1 ? ", " : ". ");
    });
    out.append(`Lemma 2's MSE at m = ${m}: trigonometric `);
    span(s.lemma2.trig[p], "rf-text-trig", {"data-field": "lemma2", "data-type": "trig"});
    out.append(", positive ");
    span(s.lemma2.positive[p], "rf-text-positive",
         {"data-field": "lemma2", "data-type": "positive"});
    out.append(". Attention normaliser ≤ 0 (trigonometric) for ");
    const neg = s.negative.trig;
    ui.el("span", {class: "explorer-value" + (neg > 0 ? " rf-alert" : ""), "data-value": neg,
                   "data-field": "negative"}, out, `${Math.round(neg * 100)}%`);
    out.append(" of the queries.");
  }

  function draw() {
    fig.dataset.setting = `${state.ri}_${state.mi}`;
    fig.dataset.pair = String(state.pair);
    drawKernel();
    drawAttention();
    drawMse();
    readout();
  }
  draw();
});
