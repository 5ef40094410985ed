/* Chapter 7: build a mask from padding, causal, window and a global token; see the bool
 * mask and the weights masked_softmax gives one fixed score matrix under it. Data:
 * book/explorers/07_mask_builder.json (explorers/ch07_mask_builder.py). */
CourseExplorers.register("mask-builder", function (root, data, ui) {
  "use strict";
  const n = data.n;
  const state = {length: n - 2, side: "right", causal: false, window: "-", global: false};
  const bar = ui.controls(root);
  ui.slider(bar, {label: "real tokens", name: "length", min: 1, max: n, value: state.length},
            v => { state.length = v; draw(); });
  ui.select(bar, {label: "padding on the", name: "side", value: state.side,
                  options: [["right", "right"], ["left", "left"]]},
            v => { state.side = v; draw(); });
  ui.toggle(bar, {label: "causal", name: "causal", checked: state.causal},
            v => { state.causal = v; draw(); });
  ui.select(bar, {label: "window", name: "window", value: state.window,
                  options: data.windows.map(w => [w, w === "-" ? "none" : `±${w}`])},
            v => { state.window = v; globalBox.disabled = v === "-"; draw(); });
  const globalBox = ui.toggle(bar, {label: "global first token", name: "global",
                                    checked: state.global},
                              v => { state.global = v; draw(); });
  globalBox.disabled = true;
  const panels = ui.el("div", {class: "explorer-panels"}, root);
  const left = ui.el("div", {}, panels), right = ui.el("div", {}, panels);
  const out = ui.readout(root);

  function current() {
    const g = state.window === "-" ? false : state.global;
    const k = `L${state.length}${state.side[0]}c${state.causal ? 1 : 0}w${state.window}` +
              `g${g ? 1 : 0}`;
    return [k, data.settings[k]];
  }

  function draw() {
    const [k, s] = current();
    root.closest("figure.explorer").dataset.setting = k;
    const mask = s.mask.map(r => [...r].map(c => c === "1"));
    const cell = 26, x0 = 44, y0 = 74, size = x0 + n * cell + 8, h = y0 + n * cell + 6;
    const labels = data.tokens;
    for (const [panel, title, m, opts] of [
      [left, "mask (shaded: may attend)", mask.map(r => r.map(v => (v ? 1 : 0))),
       {role: "query", max: 1.6, kind: "mask"}],
      [right, "weights = masked_softmax(S)", s.weights, {role: "score", max: 1, digits: 2,
                                                        kind: "weights"}]]) {
      ui.clear(panel);
      const svg = ui.svg(panel, size, h, title);
      ui.heatmap(svg, m, Object.assign({x: x0, y: y0, cell, masked: mask, title,
                                        rowLabels: labels, colLabels: labels}, opts));
      for (const i of s.empty_rows) {  /* a query with nothing to attend to */
        ui.svgEl("rect", {x: x0 - 2, y: y0 + i * cell, width: n * cell + 4, height: cell,
                          class: "explorer-empty-row", "data-row": i}, svg);
      }
    }
    ui.clear(out);
    const kept = mask.flat().filter(Boolean).length;
    out.append(`${kept} of ${n * n} query–key pairs may attend. `);
    if (s.empty_rows.length) {
      const a = ui.el("span", {class: "explorer-alert", "data-empty-rows": s.empty_rows.join(",")}, out,
                      `Rows ${s.empty_rows.join(", ")} have no key: their weights (and output) ` +
                      "are all zero, not NaN.");
      a.setAttribute("role", "status");
    } else {
      ui.el("span", {"data-empty-rows": ""}, out, "Every query has at least one key.");
    }
  }
  draw();
});
