// The comparison view of gemimg_jupyter (an anywidget ES module; no dependencies, no network).
// The offline report runs this same module over a small stand-in for the model (static/report.js).
//
// Model state (from Python): `header` {title, axes:[{name, labels}], shape:[nx, ny, nz]},
// `cells` [{index, x, y, z, repeat, labels, params, state, progress, cost, task_id, id, path,
// error, has_image, picked}], `progress` (text). Pictures come on request over custom messages:
// {type: "thumbs", indexes} -> {type: "thumbs", items: {index: dataURL}}, {type: "full", index} ->
// {type: "full", index, url}; {type: "pick", index} toggles a pick (the cells then come back).
// `read_only` (the report) shows the stars without pick buttons; a cell's `href`, when given, is its file link.

const CACHES = new WeakMap(); // model -> {thumbs: Map, fulls: Map}

function caches(model) {
  let c = CACHES.get(model);
  if (!c) {
    c = { thumbs: new Map(), fulls: new Map(), asked: new Set(), askedFull: new Set() };
    CACHES.set(model, c);
  }
  return c;
}

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat()) if (child) node.append(child);
  return node;
}

function aspectOf(cell) {
  const m = /^(\d+(?:\.\d+)?):(\d+(?:\.\d+)?)$/.exec((cell.params && cell.params.size) || "");
  return m ? Number(m[1]) / Number(m[2]) : 1;
}

function paramsText(cell) {
  const lines = Object.entries(cell.params || {}).map(([k, v]) => `${k}: ${v}`);
  lines.push(`state: ${cell.state}${cell.progress && !cell.has_image ? ` ${cell.progress}%` : ""}`, `cost: ${cell.cost}`);
  if (cell.task_id) lines.push(`task: ${cell.task_id}`);
  if (cell.error) lines.push(`error: ${cell.error}`);
  return lines.join("\n");
}

// "name=value", which a narrow column breaks after the "=" rather than inside the value
function axisLabel(cls, axis, at) {
  return axis ? h("div", { class: cls }, `${axis.name}=`, h("wbr"), axis.labels[at]) : h("div", { class: cls });
}

function cellLabel(cell) {
  return Object.entries(cell.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ") || cell.id;
}

// A Jupyter `files/` URL for a path relative to the notebook's folder, when the page tells us where that is.
function fileHref(path) {
  if (!path || path.startsWith("/") || path.startsWith("..")) return null;
  let base = "/";
  const cfg = document.getElementById("jupyter-config-data");
  try { if (cfg) base = JSON.parse(cfg.textContent).baseUrl || "/"; } catch (e) { /* keep "/" */ }
  const m = /\/(?:lab\/tree|notebooks|tree)\/(.*)$/.exec(decodeURIComponent(location.pathname));
  if (!m) return null;
  const dir = m[1].split("/").slice(0, -1).join("/");
  const rel = (dir ? dir + "/" : "") + path;
  return `${base.replace(/\/?$/, "/")}files/${rel.split("/").map(encodeURIComponent).join("/")}`;
}

function render({ model, el }) {
  const cache = caches(model);
  const readOnly = Boolean(model.get("read_only"));
  const st = { z: 0, current: 0, selected: [], mode: "swipe", open: null, zoom: { s: 1, tx: 0, ty: 0 }, swipe: 50, fade: 50, flicker: null };
  const root = h("div", { class: "gemimg-compare", tabindex: "0", role: "application", "aria-label": "comparison view" });
  el.append(root);
  const head = h("div", { class: "gc-head" });
  const tabs = h("div", { class: "gc-ztabs", role: "tablist" });
  const gridBox = h("div", { class: "gc-gridbox" });
  const hint = h("div", { class: "gc-hint", text: "click: full size · ○: select two to compare · arrows move · Enter opens · Space selects · z: next Z value · s: swap A/B · +/−/0: zoom" });
  const comparePane = h("div", { class: "gc-compare", hidden: true });
  const lightbox = h("div", { class: "gc-lightbox", hidden: true });
  const tip = h("div", { class: "gc-tip", role: "tooltip", hidden: true });
  root.append(head, tabs, gridBox, hint, comparePane, lightbox, tip);

  const cells = () => model.get("cells") || [];
  const header = () => model.get("header") || { axes: [], shape: [1, 1, 1] };
  const cellAt = (x, y, z, repeat = 0) => cells().find((c) => c.x === x && c.y === y && c.z === z && c.repeat === repeat);

  // ---- pictures on request
  let pending = new Set();
  let pendingTimer = null;
  function askThumb(index) {
    if (cache.thumbs.has(index) || cache.asked.has(index)) return;
    cache.asked.add(index);
    pending.add(index);
    if (!pendingTimer) pendingTimer = setTimeout(() => {
      pendingTimer = null;
      const indexes = [...pending];
      pending = new Set();
      if (indexes.length) model.send({ type: "thumbs", indexes });
    }, 30);
  }
  function askFull(index) {
    if (cache.fulls.has(index) || cache.askedFull.has(index)) return;
    cache.askedFull.add(index);
    model.send({ type: "full", index });
  }
  const observer = new IntersectionObserver((entries) => {
    for (const e of entries) if (e.isIntersecting) {
      const i = Number(e.target.dataset.index);
      const c = cells()[i];
      if (c && c.has_image) askThumb(i);
    }
  }, { rootMargin: "200px" });

  function onMessage(msg) {
    if (!msg || typeof msg !== "object") return;
    if (msg.type === "thumbs") {
      for (const [i, url] of Object.entries(msg.items || {})) {
        if (url) cache.thumbs.set(Number(i), url); else cache.asked.delete(Number(i));
        for (const img of root.querySelectorAll(`.gc-tile[data-index="${i}"] img.gc-thumb`)) if (url) img.src = url;
      }
    } else if (msg.type === "full") {
      if (msg.url) cache.fulls.set(msg.index, msg.url); else cache.askedFull.delete(msg.index);
      for (const img of root.querySelectorAll(`img[data-full="${msg.index}"]`)) if (msg.url) img.src = msg.url;
      if (st.open === msg.index) renderLightbox();
    }
  }
  model.on("msg:custom", onMessage);

  // ---- the grid
  function tile(c) {
    const sel = st.selected.indexOf(c.index);
    const node = h("div", {
      class: `gc-tile gc-state-${c.state}${c.index === st.current ? " gc-current" : ""}${sel >= 0 ? " gc-selected" : ""}`,
      "data-index": c.index, "data-state": c.state, role: "gridcell", "aria-label": `${cellLabel(c)}: ${c.state}`,
      "aria-selected": sel >= 0 ? "true" : "false",
    });
    const box = h("div", { class: "gc-frame" });
    box.style.aspectRatio = String(aspectOf(c));
    if (c.has_image) {
      box.append(h("img", { class: "gc-thumb", alt: `${cellLabel(c)} (${c.id})`, src: cache.thumbs.get(c.index) || null, draggable: "false" }));
      observer.observe(node);
    } else {
      box.append(h("div", { class: "gc-placeholder", text: c.error ? `${c.state}: ${c.error}` : `${c.state}${c.progress ? ` ${c.progress}%` : ""}` }));
    }
    const star = readOnly
      ? h("span", { class: `gc-star${c.picked ? " gc-picked" : ""}`, title: c.picked ? "picked" : null, text: c.picked ? "★" : "" })
      : h("button", { class: `gc-star${c.picked ? " gc-picked" : ""}`, title: c.picked ? "picked (click to unpick)" : "pick", "aria-pressed": c.picked ? "true" : "false", disabled: !c.has_image, text: c.picked ? "★" : "☆" });
    if (!readOnly) star.addEventListener("click", (e) => { e.stopPropagation(); model.send({ type: "pick", index: c.index }); });
    const pick = h("button", { class: "gc-select", title: "select to compare", "aria-pressed": sel >= 0 ? "true" : "false", disabled: !c.has_image, text: sel === 0 ? "A" : sel === 1 ? "B" : "○" });
    pick.addEventListener("click", (e) => { e.stopPropagation(); toggleSelect(c.index); });
    const bar = h("div", { class: "gc-bar" }, h("span", { class: "gc-badge", text: c.has_image ? c.state : `${c.state}${c.progress ? ` ${c.progress}%` : ""}` }), h("span", { class: "gc-cost", text: c.cost }), star, pick);
    node.append(box, bar);
    node.addEventListener("click", (e) => {
      st.current = c.index;
      if (e.shiftKey || e.ctrlKey || e.metaKey) toggleSelect(c.index);
      else if (c.has_image) openLightbox(c.index);
      else renderGrid();
      root.focus({ preventScroll: true });
    });
    node.addEventListener("mouseenter", () => showTip(node, c));
    node.addEventListener("mouseleave", hideTip);
    return node;
  }

  function showTip(node, c) {
    tip.textContent = paramsText(c);
    tip.hidden = false;
    const r = node.getBoundingClientRect();
    const rr = root.getBoundingClientRect();
    tip.style.left = `${Math.max(0, Math.min(r.left - rr.left, rr.width - tip.offsetWidth))}px`; // inside the view
    tip.style.top = `${r.bottom - rr.top + 4}px`;
  }
  function hideTip() { tip.hidden = true; }
  root.addEventListener("mouseleave", hideTip);

  function slice(z) {
    const hd = header();
    const [nx, ny] = hd.shape;
    const xAxis = hd.axes[0], yAxis = hd.axes[1];
    const grid = h("div", { class: "gc-grid", role: "grid" });
    grid.style.gridTemplateColumns = `${yAxis ? "fit-content(30%) " : ""}repeat(${nx}, minmax(var(--gc-tile-min), var(--gc-tile-max, 1fr)))`;
    if (yAxis) grid.append(h("div", { class: "gc-corner", text: `${yAxis.name} ↓ · ${xAxis ? xAxis.name : ""} →` }));
    for (let x = 0; x < nx; x++) grid.append(axisLabel("gc-xlabel", xAxis, x));
    for (let y = 0; y < ny; y++) {
      if (yAxis) grid.append(axisLabel("gc-ylabel", yAxis, y));
      for (let x = 0; x < nx; x++) {
        const group = cells().filter((c) => c.x === x && c.y === y && c.z === z);
        grid.append(h("div", { class: "gc-cell" }, group.map(tile)));
      }
    }
    return grid;
  }

  function renderHead() {
    const hd = header();
    const all = cells();
    const done = all.filter((c) => c.has_image).length;
    head.replaceChildren(
      h("span", { class: "gc-title", text: hd.title || "comparison" }),
      h("span", { class: "gc-progress", text: `${done}/${all.length} done` + (model.get("progress") ? ` · ${model.get("progress")}` : "") }),
    );
    const zAxis = hd.axes[2];
    tabs.hidden = !zAxis;
    if (!zAxis) return;
    const buttons = zAxis.labels.map((label, z) => h("button", { class: "gc-ztab", role: "tab", "aria-selected": st.z === z ? "true" : "false", text: `${zAxis.name}=${label}`, onclick: () => { st.z = z; renderGrid(); } }));
    buttons.push(h("button", { class: "gc-ztab gc-zall", role: "tab", "aria-selected": st.z === -1 ? "true" : "false", text: "all side by side", onclick: () => { st.z = -1; renderGrid(); } }));
    tabs.replaceChildren(...buttons);
  }

  function renderGrid() {
    observer.disconnect();
    hideTip(); // its tile is about to be replaced (and would never see the mouse leave)
    renderHead();
    const hd = header();
    if (st.z === -1) {
      const zAxis = hd.axes[2];
      gridBox.replaceChildren(h("div", { class: "gc-zrow" }, zAxis.labels.map((label, z) => h("div", { class: "gc-zslice" }, h("div", { class: "gc-zlabel", text: `${zAxis.name}=${label}` }), slice(z)))));
    } else {
      gridBox.replaceChildren(slice(st.z));
    }
    renderCompare();
  }

  // ---- selection and comparison
  function toggleSelect(index) {
    const at = st.selected.indexOf(index);
    if (at >= 0) st.selected.splice(at, 1);
    else {
      st.selected.push(index);
      if (st.selected.length > 2) st.selected.shift();
    }
    renderGrid();
  }

  function applyZoom() {
    const { s, tx, ty } = st.zoom;
    for (const img of comparePane.querySelectorAll("img.gc-layer")) img.style.transform = `translate(${tx}px, ${ty}px) scale(${s})`;
  }
  function zoomBy(f, cx = null, cy = null) {
    const z = st.zoom;
    const ns = Math.min(16, Math.max(1, z.s * f));
    if (cx !== null) { z.tx = cx - (cx - z.tx) * (ns / z.s); z.ty = cy - (cy - z.ty) * (ns / z.s); }
    else { z.tx *= ns / z.s; z.ty *= ns / z.s; }
    z.s = ns;
    if (ns === 1) { z.tx = 0; z.ty = 0; }
    applyZoom();
  }

  function layer(index, cls) {
    const url = cache.fulls.get(index) || cache.thumbs.get(index) || null;
    askFull(index);
    return h("img", { class: `gc-layer ${cls}`, "data-full": index, src: url, alt: cellLabel(cells()[index] || {}), draggable: "false" });
  }

  function stage(children) {
    const node = h("div", { class: "gc-stage" }, children);
    node.addEventListener("wheel", (e) => {
      e.preventDefault();
      const r = e.currentTarget.getBoundingClientRect();
      const pane = e.target.closest(".gc-pane") || e.currentTarget;
      const pr = pane.getBoundingClientRect();
      zoomBy(e.deltaY < 0 ? 1.25 : 0.8, e.clientX - pr.left - pr.width / 2, e.clientY - pr.top - pr.height / 2);
      void r;
    }, { passive: false });
    let drag = null;
    node.addEventListener("pointerdown", (e) => { if (e.target.closest("input")) return; drag = { x: e.clientX, y: e.clientY, tx: st.zoom.tx, ty: st.zoom.ty }; node.setPointerCapture(e.pointerId); });
    node.addEventListener("pointermove", (e) => { if (!drag) return; st.zoom.tx = drag.tx + e.clientX - drag.x; st.zoom.ty = drag.ty + e.clientY - drag.y; applyZoom(); });
    node.addEventListener("pointerup", () => { drag = null; });
    return node;
  }

  function renderCompare() {
    if (st.flicker) { clearInterval(st.flicker); st.flicker = null; }
    const [a, b] = st.selected;
    if (st.selected.length < 2) { comparePane.hidden = true; comparePane.replaceChildren(); return; }
    const ca = cells()[a], cb = cells()[b];
    const modes = [["side", "Side by side"], ["swipe", "Swipe"], ["fade", "Fade / flicker"], ["diff", "Difference"]];
    const bar = h("div", { class: "gc-modes", role: "toolbar" },
      modes.map(([m, label]) => h("button", { class: `gc-mode${st.mode === m ? " gc-on" : ""}`, "data-mode": m, "aria-pressed": st.mode === m ? "true" : "false", text: label, onclick: () => { st.mode = m; renderCompare(); } })),
      h("span", { class: "gc-sep" }),
      h("button", { class: "gc-zoom-out", title: "zoom out (−)", text: "−", onclick: () => zoomBy(0.8) }),
      h("button", { class: "gc-zoom-in", title: "zoom in (+)", text: "+", onclick: () => zoomBy(1.25) }),
      h("button", { class: "gc-zoom-fit", title: "fit (0)", text: "fit", onclick: () => { st.zoom = { s: 1, tx: 0, ty: 0 }; applyZoom(); } }),
      h("button", { class: "gc-swap", title: "swap A and B (s)", text: "swap A/B", onclick: swap }),
      h("button", { class: "gc-close-compare", title: "clear the selection", text: "×", onclick: () => { st.selected = []; renderGrid(); } }),
    );
    const names = h("div", { class: "gc-names" }, h("span", { class: "gc-name-a", text: `A: ${cellLabel(ca)}` }), h("span", { class: "gc-name-b", text: `B: ${cellLabel(cb)}` }));
    let body;
    if (st.mode === "side") {
      body = stage([h("div", { class: "gc-pane gc-pane-a" }, layer(a, "gc-a")), h("div", { class: "gc-pane gc-pane-b" }, layer(b, "gc-b"))]);
      body.classList.add("gc-side");
    } else {
      const top = layer(b, "gc-b gc-top");
      const pane = h("div", { class: "gc-pane" }, layer(a, "gc-a"), top);
      const controls = [];
      if (st.mode === "swipe") {
        const divider = h("div", { class: "gc-divider" });
        pane.append(divider);
        const set = (v) => { st.swipe = Number(v); top.style.clipPath = `inset(0 0 0 ${st.swipe}%)`; divider.style.left = `${st.swipe}%`; };
        const slider = h("input", { class: "gc-swipe", type: "range", min: "0", max: "100", step: "0.5", value: st.swipe, "aria-label": "swipe: A on the left, B on the right" });
        slider.addEventListener("input", () => set(slider.value));
        controls.push(slider);
        set(st.swipe);
      } else if (st.mode === "fade") {
        const set = (v) => { st.fade = Number(v); top.style.opacity = String(st.fade / 100); };
        const slider = h("input", { class: "gc-fade", type: "range", min: "0", max: "100", value: st.fade, "aria-label": "fade from A to B" });
        slider.addEventListener("input", () => set(slider.value));
        const flick = h("button", { class: "gc-flicker", text: "flicker", "aria-pressed": "false" });
        flick.addEventListener("click", () => {
          if (st.flicker) { clearInterval(st.flicker); st.flicker = null; flick.setAttribute("aria-pressed", "false"); return; }
          flick.setAttribute("aria-pressed", "true");
          st.flicker = setInterval(() => set(st.fade >= 50 ? 0 : 100), 450);
        });
        controls.push(slider, flick);
        set(st.fade);
      } else {
        top.style.mixBlendMode = "difference";
      }
      body = stage([pane]);
      if (controls.length) body = h("div", {}, body, h("div", { class: "gc-controls" }, controls));
    }
    comparePane.replaceChildren(bar, names, body);
    comparePane.hidden = false;
    applyZoom();
  }

  function swap() {
    if (st.selected.length === 2) { st.selected.reverse(); renderGrid(); }
  }

  // ---- the full-size image
  function openLightbox(index) {
    st.open = index;
    askFull(index);
    renderLightbox();
  }
  function closeLightbox() {
    st.open = null;
    lightbox.hidden = true;
    gridBox.hidden = false;
    root.focus({ preventScroll: true });
  }
  function renderLightbox() {
    const c = cells()[st.open];
    if (!c) return closeLightbox();
    const url = cache.fulls.get(c.index) || cache.thumbs.get(c.index) || null;
    const rows = Object.entries(c.params || {}).map(([k, v]) => h("tr", {}, h("th", { text: k }), h("td", { text: String(v) })));
    rows.push(h("tr", {}, h("th", { text: "state" }), h("td", { text: c.state })), h("tr", {}, h("th", { text: "cost" }), h("td", { text: c.cost })));
    if (c.task_id) rows.push(h("tr", {}, h("th", { text: "task id" }), h("td", { text: c.task_id })));
    const href = c.href || fileHref(c.path) || cache.fulls.get(c.index) || null;
    if (c.path) rows.push(h("tr", {}, h("th", { text: "file" }), h("td", {}, h("a", { class: "gc-file", href, target: "_blank", rel: "noopener", text: c.path }))));
    const pick = readOnly
      ? (c.picked ? h("span", { class: "gc-lb-pick gc-picked", text: "★ picked" }) : null)
      : h("button", { class: "gc-lb-pick", text: c.picked ? "★ picked" : "☆ pick", "aria-pressed": c.picked ? "true" : "false", onclick: () => model.send({ type: "pick", index: c.index }) });
    const sel = h("button", { class: "gc-lb-select", text: st.selected.includes(c.index) ? "selected for compare" : "select to compare", onclick: () => { toggleSelect(c.index); closeLightbox(); } });
    const close = h("button", { class: "gc-lb-close", text: "close (Esc)", onclick: closeLightbox });
    lightbox.replaceChildren(
      h("div", { class: "gc-lb-bar" }, h("span", { class: "gc-lb-title", text: cellLabel(c) }), pick, sel, close),
      h("div", { class: "gc-lb-body" },
        h("img", { class: "gc-full", "data-full": c.index, src: url, alt: `${cellLabel(c)}: ${(c.params || {}).prompt || ""}` }),
        h("table", { class: "gc-caption" }, h("tbody", {}, rows))),
    );
    lightbox.hidden = false;
    gridBox.hidden = true;
  }

  // ---- keyboard
  function move(dx, dy) {
    const c = cells()[st.current] || cells()[0];
    if (!c) return;
    const [nx, ny] = header().shape;
    const x = Math.min(nx - 1, Math.max(0, c.x + dx)), y = Math.min(ny - 1, Math.max(0, c.y + dy));
    const next = cellAt(x, y, c.z, c.repeat) || cellAt(x, y, c.z);
    if (next) st.current = next.index;
    if (st.open !== null && next && next.has_image) openLightbox(next.index);
    else renderGrid();
  }
  function flipZ() {
    const nz = header().shape[2];
    if (nz < 2) return;
    const step = (c) => (c ? cellAt(c.x, c.y, (c.z + 1) % nz, c.repeat) : null);
    const cur = step(cells()[st.current]);
    if (cur) { st.current = cur.index; st.z = st.z === -1 ? -1 : cur.z; }
    st.selected = st.selected.map((i) => (step(cells()[i]) || {}).index).filter((i) => i !== undefined);
    renderGrid();
  }
  function onKey(e) {
    if (e.target.closest("input") || e.ctrlKey || e.metaKey || e.altKey) return; // Ctrl+S still saves
    if (e.key === "Escape" && st.open === null) return; // Jupyter's own Escape (command mode)
    const keys = { ArrowLeft: () => move(-1, 0), ArrowRight: () => move(1, 0), ArrowUp: () => move(0, -1), ArrowDown: () => move(0, 1),
      Enter: () => { const c = cells()[st.current]; if (c && c.has_image) openLightbox(c.index); },
      " ": () => toggleSelect(st.current), Escape: closeLightbox,
      z: flipZ, s: swap, "+": () => zoomBy(1.25), "=": () => zoomBy(1.25), "-": () => zoomBy(0.8), 0: () => { st.zoom = { s: 1, tx: 0, ty: 0 }; applyZoom(); } };
    const act = keys[e.key];
    if (!act) return;
    e.preventDefault();
    e.stopPropagation(); // keep Jupyter's own shortcuts (z undoes, s saves …) out of the view
    act();
  }
  // Listen before the front end does: Notebook 7 runs its shortcuts in the capture phase on the document,
  // so only a window-level capture listener sees the arrows first (keys with Ctrl/Alt/Meta pass through).
  const onWindowKey = (e) => { if (root.contains(e.target)) onKey(e); };
  window.addEventListener("keydown", onWindowKey, true);
  // the notebook takes focus back on a click in its outputs (Notebook 7 does); the view keeps it for its keys
  root.addEventListener("click", (e) => { if (!e.target.closest("input, a")) setTimeout(() => root.focus({ preventScroll: true }), 0); });

  const onCells = () => { if (st.open !== null) renderLightbox(); renderGrid(); };
  model.on("change:cells", onCells);
  model.on("change:header", onCells);
  model.on("change:progress", renderHead);
  renderGrid();
  return () => {
    observer.disconnect();
    window.removeEventListener("keydown", onWindowKey, true);
    if (st.flicker) clearInterval(st.flicker);
    model.off("msg:custom", onMessage);
    model.off("change:cells", onCells);
    model.off("change:header", onCells);
    model.off("change:progress", renderHead);
  };
}

export default { render };
