/* featvis-run report page: draws the inlined maps over the photos. Vanilla JS, no network, works from file. */
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("featvis-data").textContent);
  var BASE = D.base || "";
  var MODES = ["per_map", "per_level", "per_image", "per_run", "fixed"];

  // ---- decoding -------------------------------------------------------------------------------------------
  function bytes(b64) {
    var s = atob(b64), u = new Uint8Array(s.length);
    for (var i = 0; i < s.length; i++) u[i] = s.charCodeAt(i);
    return u;
  }
  function f32(b64) {
    var u = bytes(b64), dv = new DataView(u.buffer), n = u.length >> 2, o = new Float32Array(n);
    for (var i = 0; i < n; i++) o[i] = dv.getFloat32(4 * i, true);
    return o;
  }
  function half(h) {
    var s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
    if (e === 0) return s * f * Math.pow(2, -24);
    if (e === 31) return f ? NaN : s * Infinity;
    return s * (1 + f / 1024) * Math.pow(2, e - 15);
  }
  function f16(b64) {
    var u = bytes(b64), dv = new DataView(u.buffer), n = u.length >> 1, o = new Float32Array(n);
    for (var i = 0; i < n; i++) o[i] = half(dv.getUint16(2 * i, true));
    return o;
  }
  var CM = {};
  Object.keys(D.cmaps || {}).forEach(function (k) { CM[k] = bytes(D.cmaps[k]); });

  // ---- small helpers --------------------------------------------------------------------------------------
  function el(tag, attrs, kids) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") e.textContent = attrs[k];
      else if (k === "cls") e.className = attrs[k];
      else if (k.slice(0, 2) === "on") e.addEventListener(k.slice(2), attrs[k]);
      else e.setAttribute(k, attrs[k]);
    });
    (kids || []).forEach(function (c) { if (c) e.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return e;
  }
  function link(p) {
    return p ? BASE + String(p).split("/").map(encodeURIComponent).join("/") : null;
  }
  function fmt(v) {
    if (v === null || v === undefined || !isFinite(v)) return String(v);
    var a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(3);
    return String(Number(v.toPrecision(4)));
  }
  function key() { return Array.prototype.join.call(arguments, "\u0001"); }
  function uniq(a) { return a.filter(function (v, i) { return a.indexOf(v) === i; }); }

  // ---- data -----------------------------------------------------------------------------------------------
  var IMAGES = D.images || [], MAPS = D.maps || [];
  var IMG = {};
  IMAGES.forEach(function (im) { IMG[key(im.job || "", im.id)] = im; });
  MAPS.forEach(function (m, i) { m.uid = i; m.k = m.k || 1; });
  function vals(m) { if (!m._v && m.values) m._v = f32(m.values); return m._v; }
  function feats(m) { if (!m._f && m.features) m._f = f16(m.features.values); return m._f; }
  function imageOf(m) { return IMG[key(m.job || "", m.image)]; }
  var CKPTS = D.checkpoints ? uniq(MAPS.filter(function (m) { return m.role === "frame"; })
    .map(function (m) { return m.checkpoint; })) : [];
  if (D.checkpoints && !CKPTS.length) {
    CKPTS = (D.checkpoints.entries || []).filter(function (e) { return e.status === "ok"; })
      .map(function (e) { return e.checkpoint; });
  }

  var S = {
    alpha: typeof D.alpha === "number" ? D.alpha : 0.5,
    cmap: CM[D.colormap] ? D.colormap : "jet",
    mode: MODES.indexOf((D.scale || {}).mode) >= 0 ? D.scale.mode : "per_map",
    lo: null, hi: null,
    boxes: true, cells: false, width: 0,
    image: 0, tile: 0, ckpt: Math.max(0, CKPTS.length - 1),
    level: null, chMap: null, chSort: "max", chSize: 32, chPage: 0, chShared: false,
    jobs: null
  };

  // ---- colour scales --------------------------------------------------------------------------------------
  function sideRole(m) { return m.role === "a" || m.role === "b" ? "sides" : m.role; }
  function groupKey(m, mode) {
    var j = m.job || "", r = sideRole(m);
    if (mode === "per_map") {
      if (m.role === "frame") return key("seq", j, m.image, m.layer, m.level);
      if (r === "sides") return key("pair", j, m.image, m.level);
      return key("map", j, m.role, m.image, m.layer, m.level);
    }
    if (mode === "per_image") return key("image", r, j, m.image);
    if (mode === "per_level") return key("level", r, m.level);
    return key("run", r);
  }
  var RANGES = {};
  function rangeOf(m) {
    if (S.mode === "fixed") {
      var lo = S.lo === null ? runRange(m)[0] : S.lo, hi = S.hi === null ? runRange(m)[1] : S.hi;
      return [lo, hi];
    }
    var g = groupKey(m, S.mode);
    if (!RANGES[g]) {
      var lo2 = Infinity, hi2 = -Infinity;
      (D.outer || MAPS).forEach(function (o) {
        if (o.range && groupKey(o, S.mode) === g) { lo2 = Math.min(lo2, o.range[0]); hi2 = Math.max(hi2, o.range[1]); }
      });
      if (!(lo2 <= hi2)) { lo2 = 0; hi2 = 1; }
      if (m.role === "diff" && D.diff && D.diff.mode === "signed") { var a = Math.max(Math.abs(lo2), Math.abs(hi2)); lo2 = -a; hi2 = a; }
      RANGES[g] = [lo2, hi2];
    }
    return RANGES[g];
  }
  function runRange(m) {
    var fixed = (D.scale || {}).range;
    if (fixed && fixed.length === 2) return fixed;
    var save = S.mode; S.mode = "per_run"; var r = rangeOf(m); S.mode = save; return r;
  }

  // ---- geometry: image pixel -> map cell (FORMAT.md) ------------------------------------------------------
  function geometryOf(m) { var im = imageOf(m); return m.geometry || (im && im.geometry) || null; }
  function oriHW(m) {
    var im = imageOf(m), g = geometryOf(m);
    return (im && im.ori_hw) || (g && g.ori_hw) || [m.h, m.w];
  }
  function cellOf(m, x, y) {
    if (!m.values || !m.stride || !m.origin) return null;
    var hw = oriHW(m);
    if (!(x >= 0 && y >= 0 && x < hw[1] && y < hw[0])) return null;
    var g = geometryOf(m), xin = x, yin = y;
    if (g && g.affine) {
      var A = g.affine;
      xin = A[0][0] * x + A[0][1] * y + A[0][2];
      yin = A[1][0] * x + A[1][1] * y + A[1][2];
    } else if (g) {
      xin = x * g.img_hw[1] / g.ori_hw[1] + g.offset_hw[1];
      yin = y * g.img_hw[0] / g.ori_hw[0] + g.offset_hw[0];
    }
    var row = Math.floor(yin / m.stride[0]) - m.origin[0], col = Math.floor(xin / m.stride[1]) - m.origin[1];
    if (row < 0 || col < 0 || row >= m.h || col >= m.w) return null;
    var v = vals(m), tile = Math.min(S.tile, m.k - 1), n = m.h * m.w, all = [];
    for (var t = 0; t < m.k; t++) all.push(v[t * n + row * m.w + col]);
    return { row: row, col: col, value: all[tile], values: all, tile: tile };
  }
  // where the map's valid cells lie on the photo, as percentages of its width and height
  function placement(m) {
    var g = geometryOf(m);
    if (!g || g.affine || !m.stride || !m.origin) return [0, 0, 100, 100];
    var iw = g.img_hw[1], ih = g.img_hw[0];
    return [
      (m.origin[1] * m.stride[1] - g.offset_hw[1]) / iw * 100,
      (m.origin[0] * m.stride[0] - g.offset_hw[0]) / ih * 100,
      m.w * m.stride[1] / iw * 100,
      m.h * m.stride[0] / ih * 100
    ];
  }

  // ---- painting -------------------------------------------------------------------------------------------
  function paint(canvas, data, w, h, offset, rng) {
    canvas.width = w; canvas.height = h;
    var ctx = canvas.getContext("2d"), im = ctx.createImageData(w, h), d = im.data, lut = CM[S.cmap] || CM.jet;
    var lo = rng[0], span = rng[1] - rng[0];
    for (var i = 0; i < w * h; i++) {
      var x = data[offset + i], o = 4 * i;
      if (!isFinite(x)) { d[o] = d[o + 1] = d[o + 2] = 128; d[o + 3] = 255; continue; }
      var t = span > 0 ? Math.floor(Math.min(Math.max((x - lo) / span, 0), 1) * 255) : 0;
      d[o] = lut[3 * t]; d[o + 1] = lut[3 * t + 1]; d[o + 2] = lut[3 * t + 2]; d[o + 3] = 255;
    }
    ctx.putImageData(im, 0, 0);
  }
  function colourBar(rng) {
    var c = el("canvas", { width: 256, height: 1, "aria-label": "colour bar" }), lut = CM[S.cmap] || CM.jet;
    var ctx = c.getContext("2d"), im = ctx.createImageData(256, 1);
    for (var i = 0; i < 256; i++) { im.data.set([lut[3 * i], lut[3 * i + 1], lut[3 * i + 2], 255], 4 * i); }
    ctx.putImageData(im, 0, 0);
    var ticks = el("div", { cls: "ticks" }, [0, 0.25, 0.5, 0.75, 1].map(function (f) {
      return el("span", { text: fmt(rng[0] + f * (rng[1] - rng[0])) });
    }));
    return el("div", { cls: "cbar" }, [c, ticks]);
  }
  function drawOverlay(p) {
    var c = p.over, w = p.stack.clientWidth, h = p.stack.clientHeight, dpr = window.devicePixelRatio || 1;
    if (!w || !h) return;
    c.width = Math.round(w * dpr); c.height = Math.round(h * dpr);
    var ctx = c.getContext("2d"), hw = oriHW(p.map), sx = c.width / hw[1], sy = c.height / hw[0];
    ctx.clearRect(0, 0, c.width, c.height);
    var im = imageOf(p.map), preds = (im && im.predictions) || {};
    ctx.lineWidth = 2 * dpr; ctx.font = Math.round(12 * dpr) + "px sans-serif";
    if (S.boxes && preds.boxes) {
      preds.boxes.forEach(function (b) {
        var x = b.bbox[0] * sx, y = b.bbox[1] * sy, bw = (b.bbox[2] - b.bbox[0]) * sx, bh = (b.bbox[3] - b.bbox[1]) * sy;
        ctx.strokeStyle = "#00e676"; ctx.strokeRect(x, y, bw, bh);
        var text = b.label + " " + b.score.toFixed(2), tw = ctx.measureText(text).width + 6 * dpr;
        ctx.fillStyle = "rgba(0,0,0,0.7)"; ctx.fillRect(x, Math.max(0, y - 16 * dpr), tw, 16 * dpr);
        ctx.fillStyle = "#fff"; ctx.fillText(text, x + 3 * dpr, Math.max(0, y - 16 * dpr) + 12 * dpr);
      });
    }
    var ex = im && im.explained;
    if (S.boxes && ex && ex.detections) {
      ctx.setLineDash([6 * dpr, 4 * dpr]); ctx.strokeStyle = "#ffd600";
      ex.detections.forEach(function (d) { ctx.strokeRect(d.box[0] * sx, d.box[1] * sy, (d.box[2] - d.box[0]) * sx, (d.box[3] - d.box[1]) * sy); });
      ctx.setLineDash([]);
    }
    if (CUR && CUR.img === key(p.map.job || "", p.map.image)) {
      var cx = CUR.x * sx, cy = CUR.y * sy;
      ctx.strokeStyle = "#fff"; ctx.lineWidth = 1 * dpr;
      ctx.beginPath(); ctx.moveTo(cx - 9 * dpr, cy); ctx.lineTo(cx + 9 * dpr, cy); ctx.moveTo(cx, cy - 9 * dpr); ctx.lineTo(cx, cy + 9 * dpr); ctx.stroke();
      ctx.strokeStyle = "#000"; ctx.strokeRect(cx - 2 * dpr, cy - 2 * dpr, 4 * dpr, 4 * dpr);
    }
  }

  // ---- panels: one map on its photo -----------------------------------------------------------------------
  var PANELS = [], CUR = null;
  function panelWidth() {
    if (S.width) return S.width;
    var avail = Math.max(320, document.documentElement.clientWidth - 64);
    return Math.max(300, Math.min(560, Math.floor(avail / 3) - 24));
  }
  function Panel(m, title, sub, onClick) {
    var p = { map: m };
    var im = imageOf(m), hw = oriHW(m);
    p.stack = el("div", { cls: "stack" + (S.cells ? " cells" : "") });
    p.stack.style.aspectRatio = hw[1] + " / " + hw[0];
    if (m.values) {
      if (im && im.photo) p.stack.appendChild(el("img", { cls: "photo", src: link(im.photo), alt: "photo " + m.image }));
      p.canvas = el("canvas", { cls: "map" });
      var pl = placement(m);
      p.canvas.style.left = pl[0] + "%"; p.canvas.style.top = pl[1] + "%";
      p.canvas.style.width = pl[2] + "%"; p.canvas.style.height = pl[3] + "%";
      p.stack.appendChild(p.canvas);
    } else if (m.picture) {
      p.stack.style.aspectRatio = "";
      p.stack.appendChild(el("img", { cls: "picture", src: link(m.picture), alt: m.layer + " / " + m.level }));
    }
    p.over = el("canvas", { cls: "over" });
    p.stack.appendChild(p.over);
    p.title = el("div", { cls: "ptitle" }, [title || (m.layer + " / " + m.level), el("span", { cls: "sub", text: sub || "" })]);
    p.info = el("div", { cls: "hint" });
    p.bar = el("div");
    p.readout = el("div", { cls: "readout none", text: m.values ? "move the cursor over the map" : "values not stored: this run kept pictures only (output.pictures=maps|both or output.save_arrays=maps stores them)" });
    p.el = el("div", { cls: "panel", "data-image": m.image, "data-layer": m.layer, "data-level": m.level, "data-role": m.role }, [p.title, p.stack, p.bar, p.info, p.readout]);
    p.el.style.width = panelWidth() + "px";
    p.stack.addEventListener("mousemove", function (e) {
      var r = p.stack.getBoundingClientRect();
      CUR = { img: key(m.job || "", m.image), x: (e.clientX - r.left) / r.width * hw[1], y: (e.clientY - r.top) / r.height * hw[0] };
      PANELS.forEach(function (q) { q.cursor(); });
    });
    p.stack.addEventListener("mouseleave", function () { CUR = null; PANELS.forEach(function (q) { q.cursor(); }); });
    if (onClick) p.stack.addEventListener("click", function () { onClick(m); });
    p.update = function () {
      p.stack.classList.toggle("cells", S.cells);
      var rng = rangeOf(m);
      if (p.canvas) {
        var tile = Math.min(S.tile, m.k - 1);
        paint(p.canvas, vals(m), m.w, m.h, tile * m.w * m.h, rng);
        p.canvas.style.opacity = String(S.alpha);
      }
      p.bar.innerHTML = "";
      if (m.values) p.bar.appendChild(colourBar(rng));
      var stride = m.stride ? "stride " + fmt(m.stride[0]) + (m.stride[0] === m.stride[1] ? "" : "x" + fmt(m.stride[1])) : "stride -";
      var cells = m.values ? m.h + "x" + m.w + " cells" + (m.k > 1 ? ", tile " + (Math.min(S.tile, m.k - 1) + 1) + " of " + m.k + (m.channels && m.channels.length ? " (channel " + m.channels[Math.min(S.tile, m.k - 1)] + ")" : "") : "") : "";
      var scale = m.values ? "scale [" + fmt(rng[0]) + ", " + fmt(rng[1]) + "] " + S.mode : (m.scale ? "scale [" + fmt(m.scale[0]) + ", " + fmt(m.scale[1]) + "]" : "");
      p.info.textContent = [m.layer + " / " + m.level, stride, cells, m.reducer || "", scale].filter(Boolean).join(" · ") + (m.note ? " · note: " + m.note : "");
      drawOverlay(p);
    };
    p.cursor = function () {
      drawOverlay(p);
      if (!m.values) return;
      if (!CUR || CUR.img !== key(m.job || "", m.image)) { p.readout.className = "readout none"; p.readout.textContent = "move the cursor over the map"; return; }
      var c = cellOf(m, CUR.x, CUR.y);
      p.readout.className = "readout" + (c ? "" : " none");
      p.readout.textContent = c
        ? "value " + fmt(c.value) + " at cell (row " + c.row + ", col " + c.col + ") · stride " + fmt(m.stride[0]) + " · pixel (" + Math.floor(CUR.x) + ", " + Math.floor(CUR.y) + ")"
        : "outside the map's valid cells · pixel (" + Math.floor(CUR.x) + ", " + Math.floor(CUR.y) + ")";
    };
    PANELS.push(p);
    return p;
  }
  function refreshPanels() { PANELS.forEach(function (p) { p.update(); }); }

  // ---- controls -------------------------------------------------------------------------------------------
  function select(label, options, value, onchange, id) {
    var s = el("select", { id: id || "", onchange: function () { onchange(s.value); } },
      options.map(function (o) { var v = Array.isArray(o) ? o[0] : o; return el("option", { value: v, text: Array.isArray(o) ? o[1] : o }); }));
    s.value = value;
    return el("label", {}, [label, s]);
  }
  function controls(extra) {
    var bar = el("div", { cls: "bar", id: "controls" });
    (extra || []).forEach(function (x) { bar.appendChild(x); });
    var alpha = el("input", { type: "range", min: "0", max: "1", step: "0.05", id: "alpha", value: String(S.alpha) });
    alpha.addEventListener("input", function () {
      S.alpha = Number(alpha.value);
      PANELS.forEach(function (p) { if (p.canvas) p.canvas.style.opacity = String(S.alpha); });
    });
    bar.appendChild(el("label", {}, ["alpha", alpha]));
    bar.appendChild(select("colormap", Object.keys(CM), S.cmap, function (v) { S.cmap = v; refreshPanels(); renderChannels(); }, "cmap"));
    var lo = el("input", { type: "number", step: "any", id: "fixed-lo", title: "low end of a fixed scale" });
    var hi = el("input", { type: "number", step: "any", id: "fixed-hi", title: "high end of a fixed scale" });
    function fixedInputs() {
      var show = S.mode === "fixed";
      lo.style.display = hi.style.display = show ? "" : "none";
      if (show && MAPS.length) { var r = rangeOf(MAPS[0]); if (lo.value === "") lo.value = fmt(r[0]); if (hi.value === "") hi.value = fmt(r[1]); }
    }
    function readFixed() { S.lo = lo.value === "" ? null : Number(lo.value); S.hi = hi.value === "" ? null : Number(hi.value); refreshPanels(); }
    lo.addEventListener("change", readFixed); hi.addEventListener("change", readFixed);
    bar.appendChild(select("scale", MODES, S.mode, function (v) { S.mode = v; RANGES = {}; fixedInputs(); refreshPanels(); }, "scale-mode"));
    bar.appendChild(lo); bar.appendChild(hi);
    fixedInputs();
    var boxes = el("input", { type: "checkbox", id: "boxes" }); boxes.checked = S.boxes;
    boxes.addEventListener("change", function () { S.boxes = boxes.checked; PANELS.forEach(drawOverlay); });
    bar.appendChild(el("label", {}, [boxes, "predictions"]));
    var cells = el("input", { type: "checkbox", id: "cells" }); cells.checked = S.cells;
    cells.addEventListener("change", function () { S.cells = cells.checked; refreshPanels(); });
    bar.appendChild(el("label", { title: "draw each feature cell as a square instead of smoothing" }, [cells, "cells"]));
    var size = el("input", { type: "range", min: "240", max: "1200", step: "20", id: "size", value: String(panelWidth()) });
    size.addEventListener("change", function () { S.width = Number(size.value); renderMain(); });
    bar.appendChild(el("label", {}, ["size", size]));
    var grids = MAPS.filter(function (m) { return m.k > 1; });
    if (grids.length) {
      var k = Math.max.apply(null, grids.map(function (m) { return m.k; })), opts = [];
      for (var t = 0; t < k; t++) opts.push([String(t), "tile " + (t + 1)]);
      bar.appendChild(select("tile", opts, String(S.tile), function (v) { S.tile = Number(v); refreshPanels(); }, "tile"));
    }
    return bar;
  }

  // ---- page header ----------------------------------------------------------------------------------------
  function header() {
    var h = el("header", {}, [el("h1", { text: D.title || "featvis-run" })]);
    if (D.models && D.models.length) {
      var ul = el("div", { cls: "muted" });
      D.models.forEach(function (m, i) {
        var w = m.weights === "random init" ? el("span", { cls: "loud", text: "RANDOM INIT" }) : el("span", { text: String(m.weights).slice(0, 12) });
        var tag = D.models.length === 2 && D.diff ? (i === 0 ? "A = " : "B = ") : "model ";
        ul.appendChild(el("div", {}, [tag, el("b", { text: m.label }), " · weights ", w]));
      });
      h.appendChild(ul);
    }
    if (D.scale_sharing) h.appendChild(el("p", { text: D.scale_sharing }));
    (D.notes || []).forEach(function (n) { h.appendChild(el("div", { cls: /^(RANDOM INIT|NON-FINITE|PARTIAL)/.test(n) ? "loud" : "note", text: "note: " + n })); });
    (D.failures || []).forEach(function (n) { h.appendChild(el("div", { cls: "fail", text: "failed: " + n })); });
    (D.analysis || []).forEach(function (a) { h.appendChild(el("div", { cls: a.loud ? "loud" : "note", text: a.text })); });
    var links = (D.links || []).map(function (l) { return el("a", { href: link(l.href), text: l.label }); });
    if (links.length) h.appendChild(el("div", { cls: "links" }, links));
    return h;
  }
  function imageInfo(im) {
    var box = el("div", { cls: "hint" });
    if (!im) return box;
    var parts = ["image " + im.id + (im.name && im.name !== im.id ? " (" + im.name + ")" : "") + (im.ori_hw ? ", " + im.ori_hw[1] + "x" + im.ori_hw[0] + " px" : "")];
    var p = im.predictions || {};
    if (p.boxes) parts.push(p.boxes.length + " box(es) predicted: " + p.boxes.slice(0, 6).map(function (b) { return b.label + " " + b.score.toFixed(2); }).join(", ") + (p.boxes.length > 6 ? ", ..." : ""));
    if (p.classes) parts.push("classes: " + p.classes.slice(0, 8).map(function (c) { return c.label + " " + Math.round(100 * c.share) + "%"; }).join(", "));
    box.appendChild(el("div", { text: parts.join(" · ") }));
    var ex = im.explained;
    if (ex) {
      var dets = (ex.detections || []).map(function (d) { return d.class + " " + d.score.toFixed(2) + " at [" + d.box.map(Math.round).join(", ") + "]"; });
      box.appendChild(el("div", { cls: "note", id: "explained", text: "explained: target " + ex.target + " · " + (dets.length ? dets.length + " detection(s): " + dets.join("; ") : "no detection") }));
    }
    return box;
  }

  // ---- views ----------------------------------------------------------------------------------------------
  var MAIN = el("main");
  function imagesWithMaps() {
    return IMAGES.filter(function (im) { return MAPS.some(function (m) { return m.image === im.id && (m.job || "") === (im.job || ""); }); });
  }
  function currentImage() { var list = imagesWithMaps(); return list[Math.min(S.image, list.length - 1)] || IMAGES[0]; }

  function runView() {
    var im = currentImage();
    MAIN.appendChild(imageInfo(im));
    if (!im) { MAIN.appendChild(el("p", { text: "No maps were drawn." })); return; }
    var own = MAPS.filter(function (m) { return m.image === im.id; });
    if (D.diff) return diffView(im, own);
    if (D.checkpoints) return checkpointView(im, own);
    var layers = uniq(own.map(function (m) { return m.layer; }));
    layers.forEach(function (layer) {
      if (layers.length > 1) MAIN.appendChild(el("h2", { text: layer }));
      var grid = el("div", { cls: "grid" });
      own.filter(function (m) { return m.layer === layer; }).forEach(function (m) {
        var sub = m.features ? "click for its " + m.features.c + " channels" : "";
        var p = Panel(m, m.layer + " / " + m.level, sub, m.features ? function (mm) { S.chMap = mm.uid; S.chPage = 0; renderChannels(true); } : null);
        grid.appendChild(p.el);
      });
      MAIN.appendChild(grid);
    });
    MAIN.appendChild(CHANNELS);
    if (S.chMap === null || !MAPS[S.chMap] || MAPS[S.chMap].image !== im.id) {
      var first = own.filter(function (m) { return m.features; })[0];
      S.chMap = first ? first.uid : null;
    }
  }

  function diffView(im, own) {
    var labels = (D.models || []).map(function (m) { return m.label; });
    var mode = (D.diff && D.diff.mode) || "abs", dname = { abs: "|A-B|", signed: "A-B", relative: "|A-B|/(|A|+|B|)" }[mode] || "diff";
    uniq(own.map(function (m) { return m.level; })).forEach(function (level) {
      var of = function (role) { return own.filter(function (m) { return m.level === level && m.role === role; })[0]; };
      var cmp = ((D.diff && D.diff.comparisons) || []).filter(function (c) { return c.image === im.id && c.level === level; })[0] || {};
      var nums = ["mean_abs_diff", "cosine", "cka"].map(function (k) { return k + " " + (typeof cmp[k] === "number" ? cmp[k].toFixed(4) : "-"); }).join(" · ");
      MAIN.appendChild(el("h2", { text: level + " · " + nums }));
      var grid = el("div", { cls: "grid" });
      [["a", "A: " + (labels[0] || "model A")], ["b", "B: " + (labels[1] || "model B")], ["diff", dname]].forEach(function (pair) {
        var m = of(pair[0]);
        if (m && (m.values || m.picture)) grid.appendChild(Panel(m, pair[1], m.layer + " / " + level).el);
      });
      if (!grid.children.length && cmp.panel_file) grid.appendChild(el("img", { src: link(cmp.panel_file), alt: "A | B | diff" }));
      MAIN.appendChild(grid);
    });
  }

  function checkpointView(im, own) {
    var frames = own.filter(function (m) { return m.role === "frame"; });
    var label = CKPTS[S.ckpt];
    var levels = ((D.checkpoints && D.checkpoints.levels) || []).filter(function (lv) { return lv.image === im.id; });
    levels.forEach(function (lv) {
      MAIN.appendChild(el("h2", { text: lv.layer + " / " + lv.level }));
      var m = frames.filter(function (f) { return f.layer === lv.layer && f.level === lv.level && f.checkpoint === label; })[0];
      var grid = el("div", { cls: "grid" });
      if (m) {
        var p = Panel(m, label + "  (" + (S.ckpt + 1) + " of " + CKPTS.length + ")", lv.layer + " / " + lv.level);
        if (!S.width) p.el.style.width = Math.min(640, Math.max(360, document.documentElement.clientWidth / 2 - 40)) + "px";
        grid.appendChild(p.el);
      }
      var side = el("div", { cls: "plots" });
      if (lv.change_plot) side.appendChild(el("img", { src: link(lv.change_plot), alt: "change plot", cls: "change" }));
      var rows = (lv.change || []).map(function (c) {
        return el("tr", { cls: c.checkpoint === label ? "sel" : "" }, [el("td", { text: c.checkpoint }), el("td", { text: fmt(c.mean_abs_diff) }), el("td", { text: fmt(c.cka) })]);
      });
      side.appendChild(el("table", { cls: "jobs" }, [el("tr", {}, [el("th", { text: "checkpoint" }), el("th", { text: "mean |A_t - A_last|" }), el("th", { text: "CKA to last" })])].concat(rows)));
      grid.appendChild(side);
      MAIN.appendChild(grid);
      var files = [["GIF", lv.gif], ["strip", lv.strip]].filter(function (f) { return f[1]; });
      MAIN.appendChild(el("div", { cls: "links" }, files.map(function (f) { return el("a", { href: link(f[1]), text: f[0] + " of " + lv.level }); })));
    });
  }

  function sweepView() {
    var jobs = D.jobs || [];
    if (!S.jobs) {
      S.jobs = jobs.filter(function (j) { return !j.duplicate_of && MAPS.some(function (m) { return m.job === j.job; }); })
        .slice(0, 3).map(function (j) { return j.job; });
    }
    var table = el("table", { cls: "jobs", id: "jobs" }, [el("tr", {}, ["compare", "job", "swept values", "status", "maps", "seconds", "page"].map(function (t) { return el("th", { text: t }); }))]);
    jobs.forEach(function (j) {
      var box = el("input", { type: "checkbox", "data-job": j.job });
      box.checked = S.jobs.indexOf(j.job) >= 0;
      box.addEventListener("change", function () {
        S.jobs = jobs.map(function (x) { return x.job; }).filter(function (name) {
          return name === j.job ? box.checked : S.jobs.indexOf(name) >= 0;
        });
        renderMain();
      });
      var status = el("td", {}, [el("span", { cls: j.status, text: j.status })]);
      if (j.duplicate_of) status.appendChild(el("div", { cls: "dup", text: "duplicate of " + j.duplicate_of }));
      if (j.error) status.appendChild(el("div", { cls: "fail", text: j.error }));
      table.appendChild(el("tr", {}, [el("td", {}, [box]), el("td", { text: j.job }), el("td", { text: j.label }), status,
        el("td", { text: String(j.outputs) }), el("td", { text: String(j.seconds) }), el("td", {}, [el("a", { href: link(j.href), text: "open" })])]));
    });
    MAIN.appendChild(table);
    var chosen = MAPS.filter(function (m) { return S.jobs.indexOf(m.job) >= 0; });
    var imgs = uniq(chosen.map(function (m) { return m.image; })), levels = uniq(chosen.map(function (m) { return m.layer + " / " + m.level; }));
    if (!chosen.length) { MAIN.appendChild(el("p", { text: "Tick two or more jobs to compare them." })); return; }
    var image = imgs[Math.min(S.image, imgs.length - 1)], level = levels.indexOf(S.level) >= 0 ? S.level : levels[0];
    MAIN.appendChild(el("div", { cls: "bar" }, [
      select("image", imgs, image, function (v) { S.image = imgs.indexOf(v); renderMain(); }, "sweep-image"),
      select("level", levels, level, function (v) { S.level = v; renderMain(); }, "sweep-level")
    ]));
    var grid = el("div", { cls: "grid" });
    S.jobs.forEach(function (name) {
      var j = jobs.filter(function (x) { return x.job === name; })[0];
      var m = chosen.filter(function (x) { return x.job === name && x.image === image && x.layer + " / " + x.level === level; })[0];
      if (!m) return;
      var p = Panel(m, j.label, j.duplicate_of ? "DUPLICATE of " + j.duplicate_of : "job " + j.job.split("_")[0]);
      if (j.duplicate_of) p.el.classList.add("duplicate");
      grid.appendChild(p.el);
    });
    MAIN.appendChild(grid);
  }

  function indexView() {
    MAIN.appendChild(el("p", { text: IMAGES.length + " images: this run is split into one page per image (see docs/how-to/report.md). Open an image:" }));
    var list = el("div", { cls: "thumbs" });
    (D.pages || []).forEach(function (pg) {
      var im = IMAGES.filter(function (i) { return i.id === pg.image; })[0] || {};
      list.appendChild(el("a", { href: link(pg.href) }, [im.photo ? el("img", { src: link(im.photo), alt: pg.image, loading: "lazy" }) : null, el("span", { text: pg.image })]));
    });
    MAIN.appendChild(list);
  }

  // ---- channel browser ------------------------------------------------------------------------------------
  var CHANNELS = el("section", { cls: "channels", id: "channels" });
  function renderChannels(scroll) {
    CHANNELS.innerHTML = "";
    var m = S.chMap === null ? null : MAPS[S.chMap];
    if (!m || !m.features) return;
    var F = m.features, n = F.h * F.w, data = feats(m), order = [];
    for (var c = 0; c < F.c; c++) order.push(c);
    var score = F[S.chSort];
    order.sort(function (a, b) { return score[b] - score[a] || a - b; });
    var size = S.chSize === 0 ? F.c : S.chSize, pages = Math.max(1, Math.ceil(F.c / size));
    S.chPage = Math.min(S.chPage, pages - 1);
    var shown = order.slice(S.chPage * size, S.chPage * size + size);
    var shared = null;
    if (S.chShared) { var lo = Infinity, hi = -Infinity; for (var i = 0; i < data.length; i++) if (isFinite(data[i])) { lo = Math.min(lo, data[i]); hi = Math.max(hi, data[i]); } shared = [lo, hi]; }
    var readout = el("div", { cls: "readout none", text: "move the cursor over a channel" });
    var head = el("div", { cls: "bar" }, [
      el("b", { text: "channels of " + m.layer + " / " + m.level + " (" + m.image + "): " + F.c + " channels, " + F.h + "x" + F.w + " cells" }),
      select("sort by", [["max", "max activation"], ["mean", "mean activation"]], S.chSort, function (v) { S.chSort = v; S.chPage = 0; renderChannels(); }, "ch-sort"),
      select("per page", [["16", "16"], ["32", "32"], ["64", "64"], ["0", "all"]], String(S.chSize), function (v) { S.chSize = Number(v); S.chPage = 0; renderChannels(); }, "ch-size"),
      el("button", { id: "ch-prev", onclick: function () { if (S.chPage > 0) { S.chPage--; renderChannels(); } } }, ["< prev"]),
      el("span", { id: "ch-range", text: (S.chPage * size + 1) + "-" + Math.min(F.c, S.chPage * size + size) + " of " + F.c }),
      el("button", { id: "ch-next", onclick: function () { if (S.chPage < pages - 1) { S.chPage++; renderChannels(); } } }, ["next >"])
    ]);
    var sh = el("input", { type: "checkbox", id: "ch-shared" }); sh.checked = S.chShared;
    sh.addEventListener("change", function () { S.chShared = sh.checked; renderChannels(); });
    head.appendChild(el("label", {}, [sh, "one scale for all channels"]));
    CHANNELS.appendChild(head);
    CHANNELS.appendChild(readout);
    var grid = el("div", { cls: "chgrid" }), tileW = Math.max(96, Math.min(220, Math.round(F.w * 3)));
    shown.forEach(function (ch) {
      var lo = Infinity, hi = -Infinity, off = ch * n;
      for (var i = 0; i < n; i++) { var v = data[off + i]; if (isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); } }
      var rng = shared || (lo <= hi ? [lo, hi] : [0, 1]);
      var cv = el("canvas", {});
      paint(cv, data, F.w, F.h, off, rng);
      cv.style.width = tileW + "px"; cv.style.height = Math.round(tileW * F.h / F.w) + "px";
      cv.addEventListener("mousemove", function (e) {
        var r = cv.getBoundingClientRect(), col = Math.floor((e.clientX - r.left) / r.width * F.w), row = Math.floor((e.clientY - r.top) / r.height * F.h);
        if (row < 0 || col < 0 || row >= F.h || col >= F.w) return;
        readout.className = "readout";
        readout.textContent = "channel " + ch + " · value " + fmt(data[off + row * F.w + col]) + " at cell (row " + row + ", col " + col + ") · stride " + (m.stride ? fmt(m.stride[0]) : "-");
      });
      var tile = el("div", { cls: "chan", "data-channel": String(ch) }, [cv, el("b", { text: "channel " + ch + (F.max[ch] === 0 && F.mean[ch] === 0 ? " (all 0)" : "") }), el("span", { text: "max " + fmt(F.max[ch]) + " · mean " + fmt(F.mean[ch]) })]);
      tile.style.width = tileW + "px";
      grid.appendChild(tile);
    });
    CHANNELS.appendChild(grid);
    if (scroll) CHANNELS.scrollIntoView({ block: "start" });
  }

  // ---- layout ---------------------------------------------------------------------------------------------
  function renderMain() {
    PANELS = []; CUR = null;
    MAIN.innerHTML = "";
    if (D.split === "index") indexView();
    else if (D.kind === "sweep") sweepView();
    else runView();
    refreshPanels();
    renderChannels();
    var size = document.getElementById("size");
    if (size) size.value = String(panelWidth());
  }
  function render() {
    var app = document.getElementById("app");
    app.innerHTML = "";
    app.appendChild(header());
    var extra = [];
    var list = imagesWithMaps();
    if (D.kind !== "sweep" && list.length > 1) {
      var ids = list.map(function (im) { return im.id; });
      var sel = select("image", ids, ids[S.image], function (v) { S.image = ids.indexOf(v); renderMain(); }, "image");
      extra.push(sel);
      extra.push(el("button", { onclick: function () { S.image = (S.image + ids.length - 1) % ids.length; sel.querySelector("select").value = ids[S.image]; renderMain(); } }, ["<"]));
      extra.push(el("button", { onclick: function () { S.image = (S.image + 1) % ids.length; sel.querySelector("select").value = ids[S.image]; renderMain(); } }, [">"]));
    }
    if (CKPTS.length) {
      var out = el("span", { id: "ckpt-label", text: CKPTS[S.ckpt] });
      var slider = el("input", { type: "range", min: "0", max: String(CKPTS.length - 1), step: "1", id: "ckpt", value: String(S.ckpt) });
      slider.addEventListener("input", function () { S.ckpt = Number(slider.value); out.textContent = CKPTS[S.ckpt]; renderMain(); });
      extra.push(el("label", {}, ["checkpoint", slider, out]));
    }
    if (D.split !== "index") app.appendChild(controls(extra));
    app.appendChild(MAIN);
    renderMain();
  }

  // ---- scripting hook -------------------------------------------------------------------------------------
  function findMap(image, layer, level, opts) {
    opts = opts || {};
    var found = MAPS.filter(function (m) {
      if (m.image !== image || m.layer !== layer || m.level !== level) return false;
      if (opts.role ? m.role !== opts.role : (m.role === "a" || m.role === "b")) return false;
      if (opts.job !== undefined && m.job !== opts.job) return false;
      if (m.role === "frame") return m.checkpoint === (opts.checkpoint !== undefined ? opts.checkpoint : CKPTS[S.ckpt]);
      return true;
    });
    if (opts.job === undefined && D.kind === "sweep") found = found.filter(function (m) { return S.jobs && S.jobs.indexOf(m.job) >= 0; });
    return found[0] || null;
  }
  window.featvis = {
    version: 1,
    ready: false,
    /* {row, col, value} of the map <level>.npy of (image, layer, level) under image pixel (x, y); null outside
       the map's valid cells or the image. opts: {role, checkpoint, job} pick among sides, frames and jobs. */
    cellAt: function (image, layer, level, x, y, opts) {
      var m = findMap(image, layer, level, opts);
      if (!m) return null;
      var c = cellOf(m, x, y);
      return c ? { row: c.row, col: c.col, value: c.value } : null;
    },
    maps: function () {
      return MAPS.map(function (m) { return { image: m.image, layer: m.layer, level: m.level, role: m.role, checkpoint: m.checkpoint || null, job: m.job || null, h: m.h || null, w: m.w || null, k: m.k, channels: m.features ? m.features.c : 0 }; });
    },
    state: S,
    checkpoints: CKPTS
  };
  render();
  window.addEventListener("resize", function () { if (!S.width) renderMain(); });
  window.featvis.ready = true;
})();
