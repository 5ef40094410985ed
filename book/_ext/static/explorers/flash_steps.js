/* Chapter 16: FlashAttention one tile at a time. Left, the 8 x 8 scores with the current
 * tile outlined and the tiles already done shaded; right, for one query row, its running max
 * m, the rescale factor exp(m_old - m), the running sum l after each of its tiles, and its
 * unnormalised and normalised output, next to SDPA's. Data: book/explorers/16_flash_steps.json
 * (explorers/ch16_flash_steps.py). */
CourseExplorers.register("flash-steps", function (root, data, ui) {
  "use strict";
  const n = data.n, bq = data.block_q, bk = data.block_k, steps = data.steps;
  const nkb = data.schedule[0].length;
  const figure = root.closest("figure.explorer");
  const state = {step: 0, row: 0};

  const bar = ui.controls(root);
  const prev = ui.button(bar, {label: "◀ previous tile", name: "prev"},
                         () => go(state.step - 1));
  const next = ui.button(bar, {label: "next tile ▶", name: "next"}, () => go(state.step + 1));
  const slider = ui.slider(bar, {label: "tile", name: "step", min: 1, max: steps.length,
                                 value: 1, format: v => `${v} of ${steps.length}`},
                           v => { state.step = v - 1; draw(); });
  const sliderOut = slider.parentNode.querySelector("output");
  ui.select(bar, {label: "query row", name: "row", value: 0,
                  options: [...Array(n).keys()].map(i => [i, `q${i}`])},
            v => { state.row = +v; draw(); });
  const where = ui.readout(root, "flash-where");
  const panels = ui.el("div", {class: "explorer-panels"}, root);
  const left = ui.el("div", {class: "flash-scores"}, panels);
  const right = ui.el("div", {class: "flash-row"}, panels);
  const out = ui.readout(root, "flash-story");

  /* ArrowLeft / ArrowRight step through the tiles when the figure itself has the focus. */
  figure.setAttribute("tabindex", "0");
  figure.addEventListener("keydown", ev => {
    if (ev.target !== figure || (ev.key !== "ArrowLeft" && ev.key !== "ArrowRight")) return;
    ev.preventDefault();
    go(state.step + (ev.key === "ArrowRight" ? 1 : -1));
  });

  function go(t) {
    state.step = Math.max(0, Math.min(steps.length - 1, t));
    slider.value = state.step + 1;
    sliderOut.textContent = `${state.step + 1} of ${steps.length}`;
    draw();
  }

  /* Scores: fixed numbers; only the tile overlays and the chosen row's outline change. */
  const cell = 36, x0 = 34, y0 = 46;
  const sw = x0 + n * cell + 6, sh = y0 + n * cell + 30;
  const svgS = ui.svg(left, sw, sh, "scores S = QKᵀ/√d, tile by tile");
  ui.heatmap(svgS, data.scores, {x: x0, y: y0, cell, role: "score", digits: 2, kind: "scores",
                                 title: "scores S = QKᵀ/√d",
                                 rowLabels: [...Array(n).keys()].map(i => `q${i}`),
                                 colLabels: [...Array(n).keys()].map(j => `k${j}`)});
  const tiles = ui.svgEl("g", {class: "flash-tiles"}, svgS);
  const tileRects = steps.map((s, t) => ui.svgEl("rect", {
    x: x0 + s.k0 * cell, y: y0 + s.q0 * cell, width: (s.k1 - s.k0) * cell,
    height: (s.q1 - s.q0) * cell, class: "flash-tile", "data-step": t, "data-qb": s.qb,
    "data-kb": s.kb}, tiles));
  const rowMark = ui.svgEl("rect", {x: x0 - 1, width: n * cell + 2, height: cell,
                                    class: "flash-row-mark"}, svgS);
  const legendY = y0 + n * cell + 18;
  ui.svgEl("rect", {x: x0, y: legendY - 10, width: 12, height: 12, class: "flash-tile done"},
           svgS);
  ui.svgEl("text", {x: x0 + 17, y: legendY, class: "explorer-label"}, svgS, "done");
  ui.svgEl("rect", {x: x0 + 62, y: legendY - 10, width: 12, height: 12,
                    class: "flash-tile current"}, svgS);
  ui.svgEl("text", {x: x0 + 79, y: legendY, class: "explorer-label"}, svgS, "current tile");
  ui.svgEl("rect", {x: x0 + 172, y: legendY - 10, width: 12, height: 12,
                    class: "flash-row-mark"}, svgS);
  ui.svgEl("text", {x: x0 + 189, y: legendY, class: "explorer-label"}, svgS, "chosen row");

  /* The chosen row's state: a table of its tiles, then its output vectors. */
  const lw = 138, cw = 58, rw = lw + nkb * cw + 4;
  const vy = 168, vcell = 44, vgap = 50;
  const rh = vy + 3 * vgap + 26;
  const svgR = ui.svg(right, rw, rh, "the chosen row's running max, sum and output");
  let vmax = 0;
  for (const hist of data.rows) {
    for (const h of hist) for (const x of h.acc.concat(h.out)) vmax = Math.max(vmax, Math.abs(x));
  }

  function text(parent, x, y, str, attrs) {
    return ui.svgEl("text", Object.assign({x, y}, attrs || {}), parent, str);
  }

  function drawRow(hist, done, current) {
    ui.clear(svgR);
    const i = state.row;
    text(svgR, 0, 14, `query q${i}: its running state`, {class: "explorer-title"});
    const fields = [["tile_max", "max of the tile", 2], ["m", "running max m", 2],
                    ["alpha", "factor e^(m_old − m)", 3], ["l", "running sum ℓ", 3]];
    const gy = 44, gh = 26;
    hist.forEach((h, c) => {
      const s = steps[h.step];
      text(svgR, lw + c * cw + cw / 2, gy - 8, `k${s.k0}–${s.k1 - 1}`,
           {class: "explorer-label", "text-anchor": "middle"});
    });
    fields.forEach(([key, label, digits], r) => {
      const y = gy + r * gh;
      text(svgR, lw - 6, y + 17, label, {class: "explorer-label", "text-anchor": "end"});
      hist.forEach((h, c) => {
        const x = lw + c * cw;
        const isDone = c < done, isNow = c === current;
        ui.svgEl("rect", {x: x + 1, y: y + 1, width: cw - 2, height: gh - 2,
                          class: "flash-slot" + (isNow ? " current" : isDone ? " done" : "")},
                 svgR);
        if (!isDone) return;
        const first = c === 0;
        const jumped = key === "m" && !first && h.alpha < 1;
        const shown = key === "alpha" && first ? "–" : ui.fmt(h[key], digits);
        text(svgR, x + cw / 2, y + 17, shown, {
          "text-anchor": "middle", "data-field": key, "data-col": c, "data-value": h[key],
          class: "flash-num" + (jumped ? " flash-jump" : "") +
                 (key === "alpha" && !first && h.alpha < 1 ? " flash-jump" : "")});
      });
    });
    const last = done > 0 ? hist[done - 1] : null;
    const vecs = [["acc", "Õ, unnormalised", "output", last && last.acc],
                  ["out", "O = Õ / ℓ", "output", last && last.out],
                  ["sdpa", "SDPA, float64", "value", data.sdpa[i]]];
    vecs.forEach(([kind, label, role, vec], r) => {
      const y = vy + r * vgap;
      text(svgR, lw - 6, y + vcell / 2 + 4, label, {class: "explorer-label",
                                                      "text-anchor": "end"});
      if (!vec) {
        text(svgR, lw, y + vcell / 2 + 4, "(no tile read yet)",
             {class: "explorer-label flash-muted"});
        return;
      }
      ui.heatmap(svgR, [vec], {x: lw, y, cell: vcell, role, digits: 3, kind, max: vmax});
    });
    const dy = vy + 3 * vgap + 14;
    if (done === hist.length) {
      const g = text(svgR, 0, dy, "", {class: "explorer-label"});
      g.appendChild(document.createTextNode("finished: max |O − SDPA| = "));
      ui.svgEl("tspan", {"data-field": "diff", "data-value": data.row_diff[i],
                         class: "flash-num"}, g, data.row_diff[i].toExponential(1));
    } else {
      text(svgR, 0, dy, done === 0 ? `q${i}'s query block has not started yet`
        : `${done} of ${hist.length} key blocks read`, {class: "explorer-label flash-muted"});
    }
  }

  function draw() {
    const t = state.step, s = steps[t], i = state.row;
    figure.dataset.step = t;
    figure.dataset.row = i;
    prev.disabled = t === 0;
    next.disabled = t === steps.length - 1;
    tileRects.forEach((r, u) => {
      r.setAttribute("class", "flash-tile" + (u < t ? " done" : u === t ? " current" : ""));
      r.dataset.state = u < t ? "done" : u === t ? "current" : "todo";
    });
    rowMark.setAttribute("y", y0 + i * cell);
    svgS.querySelectorAll("text.explorer-label[data-row]").forEach(
      e => e.classList.toggle("flash-chosen", +e.dataset.row === i));
    const hist = data.rows[i];
    const done = hist.filter(h => h.step <= t).length;
    const current = hist.findIndex(h => h.step === t);
    drawRow(hist, done, current);

    ui.clear(where);
    where.append(`Tile ${t + 1} of ${steps.length}: queries q${s.q0}–q${s.q1 - 1} × ` +
                 `keys k${s.k0}–k${s.k1 - 1} (query block ${s.qb}, key block ${s.kb}).`);
    ui.clear(out);
    if (current >= 0) {
      const h = hist[current];
      if (current === 0) {
        out.append(`q${i}'s first tile: m = its largest score here, `);
        ui.value(out, h.m, 2, "flash-m");
        out.append(", and ℓ = ");
        ui.value(out, h.l, 3, "flash-l");
        out.append(`, nothing to rescale yet.`);
      } else if (h.alpha < 1) {
        const old = hist[current - 1].m;
        ui.el("strong", {class: "flash-alert", "data-jump": "1"}, out, "The max jumped");
        out.append(` from ${ui.fmt(old, 2)} to `);
        ui.value(out, h.m, 2, "flash-m");
        out.append(`: the old ℓ and Õ were multiplied by e^(${ui.fmt(old, 2)} − ` +
                   `${ui.fmt(h.m, 2)}) = `);
        ui.value(out, h.alpha, 3, "flash-alpha");
        out.append(" before this tile was added; now ℓ = ");
        ui.value(out, h.l, 3, "flash-l");
        out.append(".");
      } else {
        out.append(`No score of this tile beats m = `);
        ui.value(out, h.m, 2, "flash-m");
        out.append(": the factor is 1, the tile's terms are simply added; ℓ = ");
        ui.value(out, h.l, 3, "flash-l");
        out.append(".");
      }
      if (current === hist.length - 1) {
        out.append(` Last tile of q${i}: O = Õ/ℓ is written out and equals SDPA within `);
        ui.value(out, data.row_diff[i], 1, "flash-diff").textContent =
          data.row_diff[i].toExponential(1);
        out.append(".");
      }
    } else if (done === hist.length) {
      out.append(`q${i} is finished (its block was done before this tile): ` +
                 `O = Õ/ℓ was written out once, and differs from SDPA by `);
      ui.value(out, data.row_diff[i], 1, "flash-diff").textContent =
        data.row_diff[i].toExponential(1);
      out.append(". This tile belongs to the other query block: pick a row in it.");
    } else {
      out.append(`q${i}'s query block starts at tile ${hist[0].step + 1}: ` +
                 "until then it holds no state at all.");
    }
    if (t === steps.length - 1) {
      out.append(" All tiles done: over the 8 rows, the largest difference from SDPA is ");
      ui.value(out, data.max_diff.sdpa, 1, "flash-maxdiff").textContent =
        data.max_diff.sdpa.toExponential(1);
      out.append(" (float64 rounding).");
    }
  }
  draw();
});
