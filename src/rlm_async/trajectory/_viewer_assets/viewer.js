// rlm-async trajectory viewer: renders the JSON in <script id="rlm-data"> as a timeline and
// a tree. Untrusted text (model replies, code, outputs, prompts) only ever reaches the page
// through textContent / text nodes, never as HTML.
(function () {
  "use strict";

  const body = document.body;
  const KIND_COLOUR = {
    turn: "var(--turn)", cell: "var(--cell)", llm: "var(--llm)", rlm: "var(--rlm)",
    error: "var(--error)",
  };
  const SUBCALL_ROWS = 100; // rows shown per cell before "show all"
  let nextId = 0;

  function fail(error) {
    body.dataset.error = "1";
    const box = document.getElementById("error");
    box.hidden = false;
    box.textContent = "The viewer failed: " + (error && error.stack ? error.stack : String(error));
  }
  window.addEventListener("error", (e) => fail(e.error || e.message));

  // ---- DOM helpers ---------------------------------------------------------------------

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function svg(tag, attrs, text) {
    const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
    setAttrs(el, attrs);
    if (text !== undefined) el.textContent = text;
    return el;
  }

  function setAttrs(el, attrs) {
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") el.setAttribute("class", value);
      else if (key === "dataset") Object.assign(el.dataset, value);
      else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
  }

  // ---- formatting ----------------------------------------------------------------------

  function fmtSeconds(s) {
    if (s === null || s === undefined) return "–";
    if (s < 0.001) return "<1 ms";
    if (s < 1) return Math.round(s * 1000) + " ms";
    if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + " s";
    const m = Math.floor(s / 60);
    return m + "m " + String(Math.round(s - m * 60)).padStart(2, "0") + "s";
  }
  function fmtInt(n) { return (n || 0).toLocaleString("en-US"); }
  function fmtTokens(n) {
    n = n || 0;
    if (n < 1000) return String(n);
    if (n < 1e6) return (n / 1000).toFixed(n < 1e4 ? 1 : 0) + "k";
    return (n / 1e6).toFixed(2) + "M";
  }
  function fmtCost(c) {
    if (c === null || c === undefined) return "–";
    if (c === 0) return "$0";
    return c < 0.01 ? "$" + c.toFixed(4) : "$" + c.toFixed(3);
  }
  function oneLine(text, max) {
    const flat = String(text || "").replace(/\s+/g, " ").trim();
    return max && flat.length > max ? flat.slice(0, max) + "…" : flat;
  }
  function plural(n, word) { return fmtInt(n) + " " + word + (n === 1 ? "" : "s"); }
  // A model reply with its ``` fences set in monospace (text nodes only: no markup).
  function replyText(text) {
    const pre = h("pre", { class: "text" });
    const fence = /```([\w+-]*)[^\S\n]*\n([\s\S]*?)(?:```|$)/g;
    let last = 0;
    for (let m; (m = fence.exec(text)) !== null;) {
      if (m.index > last) pre.append(text.slice(last, m.index));
      pre.append(h("code", { class: "fence" }, m[1] ? h("span", { class: "lang" }, m[1]) : null, m[2].replace(/\n$/, "")));
      last = fence.lastIndex;
    }
    if (last < text.length) pre.append(text.slice(last));
    return pre;
  }
  function chip(label, value) { return h("span", { class: "chip" }, label, " ", h("b", null, value)); }

  // ---- the model -----------------------------------------------------------------------

  function collect(runs) {
    const all = { runs: [], turns: [], cells: [], subcalls: [] };
    function visit(run) {
      run._id = "run-" + nextId++;
      all.runs.push(run);
      for (const turn of run.turns) {
        turn._id = "turn-" + nextId++;
        turn._run = run;
        all.turns.push(turn);
        for (const cell of turn.cells) {
          cell._id = "cell-" + nextId++;
          cell._run = run;
          all.cells.push(cell);
          cell.subcalls.forEach((sub, i) => {
            sub._id = "sub-" + nextId++;
            sub._index = i + 1;
            sub._run = run;
            all.subcalls.push(sub);
            if (sub.run) visit(sub.run);
          });
        }
      }
    }
    runs.forEach(visit);
    return all;
  }

  function peakConcurrency(subcalls, end) {
    const points = [];
    for (const s of subcalls) {
      points.push([s.start, 1]);
      points.push([s.end === null ? end : s.end, -1]);
    }
    points.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let now = 0, peak = 0;
    const steps = [];
    for (const [t, d] of points) {
      now += d;
      peak = Math.max(peak, now);
      steps.push([t, now]);
    }
    return { peak, steps };
  }

  // ---- header and tiles ----------------------------------------------------------------

  function renderHeader(data) {
    const head = data.header;
    const root = data.runs[0] || {};
    const meta = h("div", { class: "meta" },
      h("span", null, "root ", h("b", null, head.model || root.model || "?")),
      h("span", null, "sub-calls ", h("b", null, head.sub_model || root.sub_model || "?")),
      root.context ? h("span", null, root.context) : null,
      head.created ? h("span", null, "recorded " + head.created.replace("T", " ").slice(0, 19) + " UTC") : null,
      h("span", null, "rlm-async " + (head.rlm_async_version || "?") + " · schema " + head.schema_version),
      sessionNote(head.session || root.session, head.session_turn || root.session_turn),
      data.truncated ? h("span", { class: "pill fail" }, "file truncated: last line cut") : null,
    );
    return h("header", { class: "page-head" },
      h("div", { class: "logo" }, "RLM"),
      h("div", { style: "min-width:0" },
        h("h1", null, "Trajectory" + (data.source ? " · " + data.source : "")),
        h("div", { class: "query" }, head.query || root.query || ""),
        meta));
  }

  // A session's completion (rlm.session): which one, of which session.
  function sessionNote(session, number) {
    if (!session) return null;
    return h("span", { class: "pill final", dataset: { session: session } },
      "session " + session + " · completion " + number + " (query_" + number + ")");
  }

  function tile(label, value, sub, cls) {
    return h("div", { class: "tile " + (cls || "") },
      h("div", { class: "label" }, label),
      h("div", { class: "value", title: String(value) }, value),
      sub ? h("div", { class: "sub", title: String(sub) }, sub) : null);
  }

  function renderTiles(data, all, conc) {
    const root = data.runs[0];
    const tiles = h("section", { class: "tiles" });
    if (!root) return tiles;
    const totals = { calls: 0, input_tokens: 0, output_tokens: 0, cost_usd: null, cached_tokens: 0 };
    for (const run of data.runs) {
      totals.calls += run.totals.calls;
      totals.input_tokens += run.totals.input_tokens;
      totals.cached_tokens += run.totals.cached_tokens || 0;
      totals.output_tokens += run.totals.output_tokens;
      if (run.totals.cost_usd !== null) totals.cost_usd = (totals.cost_usd || 0) + run.totals.cost_usd;
    }
    const failed = root.status === "failed";
    const answer = failed ? (root.error_type || "failed") : root.status === "running"
      ? "(no answer yet)" : oneLine(root.answer, 200);
    const answerSub = failed ? oneLine(root.error, 200)
      : root.answer_source ? "final answer from " + root.answer_source.replace("_", " ") : "";
    const rootTurns = root.turns.length;
    const subRuns = all.runs.length - data.runs.length;
    const failedCalls = all.subcalls.filter((s) => s.ok === false).length;
    tiles.append(
      tile("Answer", answer, answerSub, "answer" + (failed ? " failed" : "")),
      tile("Status", root.status === "running" ? "unfinished" : root.status,
        root.status === "finished" ? "in " + plural(root.iterations || rootTurns, "turn")
          : root.status === "running" ? "still running, or stopped" : "see the error below"),
      tile("Wall time", fmtSeconds(root.elapsed !== null ? root.elapsed : data.end), "sequential: " + fmtSeconds(sequentialTime(all))),
      tile("Root turns", fmtInt(rootTurns), subRuns ? plural(subRuns, "sub-RLM") + " · " + plural(all.turns.length - rootTurns, "turn") : plural(all.cells.length, "cell")),
      tile("Sub-calls", fmtInt(all.subcalls.length), "peak " + conc.peak + " in flight" + (failedCalls ? ", " + failedCalls + " failed" : "")),
      tile("Tokens", fmtTokens(totals.input_tokens + totals.output_tokens), fmtTokens(totals.input_tokens) + " in" + cachedNote(totals.cached_tokens, fmtTokens) + " / " + fmtTokens(totals.output_tokens) + " out"),
      tile("Cost", totals.cost_usd === null ? "–" : fmtCost(totals.cost_usd), totals.cost_usd === null ? "not priced" : plural(totals.calls, "model call")),
    );
    return tiles;
  }

  function sequentialTime(all) {
    let total = 0;
    for (const t of all.turns) if (t.latency) total += t.latency;
    for (const s of all.subcalls) if (!s.run && s.latency) total += s.latency;
    return total;
  }

  // ---- timeline ------------------------------------------------------------------------

  function pack(items, end) {
    const lanes = [];
    const sorted = items.slice().sort((a, b) => a.start - b.start);
    for (const item of sorted) {
      const stop = item.end === null ? end : item.end;
      let lane = lanes.find((l) => l.end <= item.start + 1e-9);
      if (!lane) { lane = { end: 0, items: [] }; lanes.push(lane); }
      lane.items.push(item);
      lane.end = stop;
    }
    return lanes;
  }

  function timelineRows(runs, end) {
    const rows = [];
    function add(run) {
      const indent = run.depth;
      rows.push({ type: "run", run, indent,
        label: (run.depth === 0 ? "Root run" : "Sub-RLM") + " · " + run.model });
      rows.push({ type: "lane", label: "model turns", indent, height: 16,
        bars: run.turns.map((t) => ({ kind: "turn", node: t, text: t.final_turn ? "final" : "T" + t.turn })) });
      const cells = [].concat(...run.turns.map((t) => t.cells));
      rows.push({ type: "lane", label: "REPL cells", indent, height: 14,
        bars: cells.map((c) => ({ kind: c.error ? "error" : "cell", node: c })) });
      const subs = [].concat(...cells.map((c) => c.subcalls));
      const lanes = pack(subs, end);
      const height = lanes.length > 24 ? 6 : lanes.length > 10 ? 8 : 12;
      const group = { label: plural(subs.length, "sub-call"),
        note: lanes.length > 1 ? lanes.length + " lanes" : "", rows: [] };
      lanes.forEach((lane) => {
        const row = { type: "lane", indent, height, gap: height < 8 ? 1 : height < 12 ? 2 : 3, label: "", group,
          bars: lane.items.map((s) => ({ kind: s.ok === false ? "error" : s.kind, node: s })) };
        group.rows.push(row);
        rows.push(row);
      });
      for (const s of subs) if (s.run) add(s.run);
    }
    runs.forEach(add);
    return rows;
  }

  function niceStep(span, target) {
    const raw = span / Math.max(target, 1);
    const mag = Math.pow(10, Math.floor(Math.log10(raw || 1)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * mag >= raw) return m * mag;
    return 10 * mag;
  }

  function renderTimeline(data, all, conc, tooltip) {
    const host = h("div", { id: "timeline" });
    const card = h("section", { class: "card" },
      h("div", { class: "card-head" },
        h("h2", null, "Timeline"),
        h("span", { class: "muted", style: "font-size:12.5px" },
          "Bars stacked on separate lanes ran at the same time. Click a bar to find it below."),
        h("span", { class: "spacer" }),
        h("div", { class: "legend" },
          ...[["turn", "root turn"], ["cell", "REPL cell"], ["llm", "llm_query"], ["rlm", "rlm_query"], ["error", "failed"]]
            .map(([k, label]) => h("span", null, h("i", { class: "swatch", style: "background:" + KIND_COLOUR[k] }), label)))),
      h("div", { class: "card-body" }, host));
    const draw = () => drawTimeline(host, data, conc, tooltip);
    let pending = null;
    window.addEventListener("resize", () => {
      clearTimeout(pending);
      pending = setTimeout(draw, 120);
    });
    return { card, draw };
  }

  function drawTimeline(host, data, conc, tooltip) {
    host.textContent = "";
    const end = Math.max(data.end, 1e-3);
    const width = Math.max(760, host.clientWidth || 1200);
    const labelW = 168, right = 14, axisH = 22, concH = 38;
    const plotW = width - labelW - right;
    const x = (t) => labelW + (Math.max(0, t) / end) * plotW;
    const rows = timelineRows(data.runs, end);
    let y = axisH + concH + 10;
    const placed = rows.map((row) => {
      const height = row.type === "run" ? 22 : row.height;
      const top = y + (row.type === "run" && y > axisH + concH + 10 ? 6 : 0);
      y = top + height + (row.type === "run" ? 4 : row.gap || 4);
      return { row, top, height };
    });
    const total = y + 6;
    const root = svg("svg", { width, height: total, viewBox: "0 0 " + width + " " + total, role: "img",
      "aria-label": "Timeline of turns, cells and sub-calls" });

    // time axis and grid
    const step = niceStep(end, Math.floor(plotW / 90));
    for (let t = 0; t <= end + 1e-9; t += step) {
      root.append(svg("line", { class: "tl-grid", x1: x(t), x2: x(t), y1: axisH - 4, y2: total }));
      root.append(svg("text", { class: "tl-axis", x: x(t), y: 12, "text-anchor": t === 0 ? "start" : "middle" },
        (step < 1 ? t.toFixed(step < 0.1 ? 2 : 1) : t.toFixed(step % 1 ? 1 : 0)) + " s"));
    }

    // sub-calls in flight
    const cy = axisH + concH;
    root.append(svg("text", { class: "tl-label", x: 0, y: axisH + 14 }, "in flight"));
    root.append(svg("text", { class: "tl-label", x: 0, y: axisH + 28, style: "font-weight:650;fill:var(--text)" },
      "peak " + conc.peak));
    if (conc.peak > 0) {
      // The most calls in flight within each pixel column: a dip shorter than a pixel
      // (one call ending just before the next starts) would only draw a spike.
      const columns = new Array(Math.ceil(plotW) + 1).fill(0);
      const col = (t) => Math.min(columns.length - 1, Math.max(0, Math.floor(x(t) - labelW)));
      conc.steps.forEach(([t, n], i) => {
        const next = i + 1 < conc.steps.length ? conc.steps[i + 1][0] : t;
        for (let c = col(t); c <= col(next); c++) columns[c] = Math.max(columns[c], n);
      });
      const yOf = (n) => cy - (n / conc.peak) * (concH - 6);
      let d = "M" + labelW + "," + cy;
      let level = 0;
      columns.forEach((n, c) => {
        if (n !== level) {
          d += " L" + (labelW + c) + "," + yOf(level) + " L" + (labelW + c) + "," + yOf(n);
          level = n;
        }
      });
      d += " L" + (labelW + columns.length - 1) + "," + yOf(level) + " L" + x(end) + "," + cy + " Z";
      root.append(svg("path", { class: "tl-conc", d }));
    }
    root.append(svg("line", { class: "tl-grid", x1: labelW, x2: width - right, y1: cy + 0.5, y2: cy + 0.5 }));

    for (const { row, top, height } of placed) {
      const indent = row.indent * 12;
      if (row.type === "run") {
        root.append(svg("rect", { class: "tl-band", x: 0, y: top, width, height, rx: 4 }));
        root.append(svg("text", { class: "tl-label run", x: 6 + indent, y: top + 15 },
          oneLine(row.label, 60)));
        const run = row.run;
        const stop = run.end === null ? end : run.end;
        root.append(svg("rect", { x: x(run.start), y: top + height - 3, width: Math.max(1, x(stop) - x(run.start)),
          height: 2, fill: run.depth ? KIND_COLOUR.rlm : "var(--accent)", opacity: 0.7 }));
        continue;
      }
      if (row.label) {
        root.append(svg("text", { class: "tl-label", x: 10 + indent, y: top + height / 2 + 4 }, row.label));
      }
      if (row.group && row.group.rows[0] === row) {
        // One label for a block of sub-call lanes, centred on the block.
        const last = placed.find((p) => p.row === row.group.rows[row.group.rows.length - 1]);
        const mid = (top + last.top + last.height) / 2;
        const two = row.group.note && last.top + last.height - top >= 26;
        root.append(svg("text", { class: "tl-label", x: 10 + indent, y: mid + (two ? -2 : 4) }, row.group.label));
        if (two) {
          root.append(svg("text", { class: "tl-label", x: 10 + indent, y: mid + 12, style: "fill:var(--faint)" },
            row.group.note));
        }
      }
      for (const bar of row.bars) {
        const node = bar.node;
        const stop = node.end === null ? end : node.end;
        const span = x(stop) - x(node.start);
        // A hairline gap keeps back-to-back calls on one lane apart.
        const bx = x(node.start), bw = Math.max(1.5, span > 4 ? span - 1 : span);
        const rect = svg("rect", {
          class: "tl-bar", x: bx, y: top, width: bw, height, rx: Math.min(3, height / 3),
          fill: KIND_COLOUR[bar.kind], opacity: node.end === null ? 0.45 : 1,
          dataset: { bar: bar.node._id.split("-")[0], kind: bar.kind, target: node._id },
          onclick: () => reveal(node._id),
          onmousemove: (e) => tooltip.show(e, describe(node, bar.kind)),
          onmouseleave: () => tooltip.hide(),
        });
        root.append(rect);
        if (bar.text && bw > 26 && height >= 14) {
          root.append(svg("text", { class: "tl-bar-text", x: bx + 5, y: top + height - 4 }, bar.text));
        }
      }
    }
    host.append(root);
  }

  function describe(node, kind) {
    const rows = [];
    let title = "";
    const span = fmtSeconds(node.start) + " → " + (node.end === null ? "(unfinished)" : fmtSeconds(node.end));
    if (node.turn !== undefined && node.cells !== undefined) {
      title = (node.final_turn ? "Final turn" : "Turn " + node.turn) + " · " + (node.model || "");
      rows.push(span + " · " + fmtSeconds(node.latency));
      rows.push(fmtInt(node.input_tokens) + " in" + cachedNote(node.cached_tokens, fmtInt) + " / " + fmtInt(node.output_tokens) + " out · " + fmtCost(node.cost_usd));
      rows.push(oneLine(node.text, 220));
    } else if (node.code !== undefined) {
      title = "Cell " + node.cell + " of turn " + node.turn + (node.error ? " · error" : "");
      rows.push(span + " · " + plural(node.subcalls.length, "sub-call"));
      rows.push(oneLine(node.code, 220));
    } else {
      title = (node.kind === "rlm" ? "rlm_query" : "llm_query") + " #" + node._index + " · " + node.model;
      rows.push(span + " · " + fmtSeconds(node.latency) + (node.ok === false ? " · FAILED" : ""));
      const t = node.totals;
      rows.push(fmtInt(t.input_tokens) + " in" + cachedNote(t.cached_tokens, fmtInt) + " / " + fmtInt(t.output_tokens) + " out · " + fmtCost(t.cost_usd));
      rows.push("prompt: " + oneLine(node.prompt, 160));
      rows.push("answer: " + oneLine(node.answer, 160));
    }
    return { title, rows, kind };
  }

  function makeTooltip() {
    const el = h("div", { class: "tooltip", hidden: true });
    document.body.append(el);
    return {
      show(event, info) {
        el.textContent = "";
        el.append(h("div", { class: "tt-title" }, h("i", { class: "swatch", style: "margin-right:6px;background:" + KIND_COLOUR[info.kind] }), info.title));
        for (const row of info.rows) el.append(h("div", { class: "tt-row" }, row));
        el.hidden = false;
        const pad = 14;
        const w = el.offsetWidth, hgt = el.offsetHeight;
        let left = event.clientX + pad, top = event.clientY + pad;
        if (left + w > window.innerWidth - 8) left = event.clientX - w - pad;
        if (top + hgt > window.innerHeight - 8) top = event.clientY - hgt - pad;
        el.style.left = Math.max(4, left) + "px";
        el.style.top = Math.max(4, top) + "px";
      },
      hide() { el.hidden = true; },
    };
  }

  function reveal(id) {
    const target = document.getElementById(id);
    if (!target) return;
    for (let el = target; el; el = el.parentElement) {
      if (el.tagName === "DETAILS") el.open = true;
      if (el.hidden) el.hidden = false;
    }
    target.scrollIntoView({ behavior: "smooth", block: "center" });
    target.classList.remove("flash");
    void target.offsetWidth;
    target.classList.add("flash");
  }

  // ---- tree ----------------------------------------------------------------------------

  // Given again by RLM.resume from the trajectory it resumed: not asked (or paid) again.
  function replayedPill(kind, title) {
    return h("span", { class: "pill replayed", title: title, dataset: { replayed: kind } }, "↺ replayed");
  }

  function statusPill(run) {
    if (run.status === "finished") return h("span", { class: "pill ok" }, "✓ finished");
    if (run.status === "failed") return h("span", { class: "pill fail" }, "✕ " + (run.error_type || "failed"));
    return h("span", { class: "pill run" }, "… unfinished");
  }

  // Input read from the providers' prompt caches (priced at their cache rates), if any.
  function cachedNote(tokens, fmt) {
    return tokens ? " (" + fmt(tokens) + " cached)" : "";
  }

  function costChips(totals, extra) {
    return h("span", { class: "chips" }, ...extra,
      totals.calls ? chip("tokens", fmtInt(totals.input_tokens) + " in" + cachedNote(totals.cached_tokens, fmtInt) + " / " + fmtInt(totals.output_tokens) + " out") : null,
      totals.cost_usd !== null ? chip("cost", fmtCost(totals.cost_usd)) : null);
  }

  function renderRun(run, nested) {
    const duration = run.end === null ? null : run.end - run.start;
    const head = h("div", { class: "run-head" },
      h("span", { class: "run-title" }, run.depth === 0 ? "Root run" : "Sub-RLM run · depth " + run.depth),
      h("span", { class: "mono muted", style: "font-size:12px" }, run.run_id),
      statusPill(run),
      run.session ? h("span", { class: "pill final", title: "session " + run.session },
        "session turn " + run.session_turn) : null,
      costChips(run.totals, [
        chip("model", run.model),
        chip("time", fmtSeconds(duration)),
        chip("turns", fmtInt(run.turns.length)),
        chip("calls", fmtInt(run.totals.calls)),
      ]));
    const kv = h("dl", { class: "kv" },
      h("dt", null, "Query"), h("dd", null, run.query),
      run.session ? [h("dt", null, "Session"), h("dd", null, "completion " + run.session_turn +
        " of session " + run.session + ": query_" + run.session_turn + " and answer_" +
        run.session_turn + " in its REPL")] : null,
      run.context ? [h("dt", null, "Context"), h("dd", { class: "muted" }, run.context)] : null,
      run.answer !== null ? [h("dt", null, "Answer"), h("dd", null, h("pre", { class: "text" }, run.answer))] : null,
      run.error ? [h("dt", null, "Error"), h("dd", null, h("pre", { class: "err" }, (run.error_type || "") + ": " + run.error))] : null,
      run.restarts.length ? [h("dt", null, "Restarts"), h("dd", null, run.restarts.map((r) => fmtSeconds(r[0]) + ": " + r[1]).join("\n"))] : null,
      run.budget_warnings.length ? [h("dt", null, "Budget"), h("dd", null, run.budget_warnings.map((w) => w.budget + ": " + w.used + " of " + w.limit).join("; "))] : null,
    );
    return h("section", { class: "run" + (nested ? " nested" : ""), id: run._id,
      dataset: { node: "run", depth: run.depth } },
      head, h("div", { class: "run-body" }, kv, run.turns.map((t) => renderTurn(t, run))));
  }

  function renderTurn(turn, run) {
    const subs = turn.cells.reduce((n, c) => n + c.subcalls.length, 0);
    const summary = h("summary", null,
      h("span", { class: "caret" }, "▶"),
      h("span", { class: "node-title" }, turn.final_turn ? "Final turn" : "Turn " + turn.turn),
      turn.end === null ? h("span", { class: "pill run" }, "waiting for the model") : null,
      turn.replayed ? replayedPill("turn", "the recorded reply, given again: no model call") : null,
      turn.compaction ? h("span", { class: "pill final" }, "compacted") : null,
      turn.rejected ? h("span", { class: "pill fail", dataset: { rejected: "turn" },
        title: "the answer did not match the output type: sent back to the model" }, "answer rejected") : null,
      costChips(turn.totals, [
        chip("at", fmtSeconds(turn.start)),
        chip("latency", fmtSeconds(turn.latency)),
        chip("cells", fmtInt(turn.cells.length)),
        subs ? chip("sub-calls", fmtInt(subs)) : null,
      ]));
    return h("details", { class: "turn", id: turn._id, open: run.depth === 0, dataset: { node: "turn" } },
      summary,
      h("div", { class: "turn-body" },
        turn.compaction ? renderCompaction(turn.compaction) : null,
        h("div", { class: "section-label" }, "Model reply · " + (turn.model || run.model)),
        turn.text ? replyText(turn.text) : h("pre", { class: "text" }, turn.end === null ? "…" : "(empty)"),
        turn.cells.map((c) => renderCell(c, run)),
        turn.rejected ? renderRejected(turn.rejected) : null));
  }

  function renderRejected(r) {  // the turn's answer did not match the output type
    const left = r.retries_left === 0 ? "no retry left" :
      plural(r.retries_left, "more answer") + " allowed";
    const errors = r.errors.map((e) => ((e.loc || []).join(".") || "(the answer)") + ": " + e.msg);
    return [h("div", { class: "section-label" }, "Answer rejected · " + left),
      h("pre", { class: "err" }, errors.join("\n")),
      h("pre", { class: "text" }, r.answer)];
  }

  function renderCompaction(c) {  // earlier turns folded into a summary before this turn
    return [h("div", { class: "section-label" }, "Earlier turns compacted · " +
      fmtTokens(c.tokens_before) + " → " + fmtTokens(c.tokens_after) + " tokens, last " +
      plural(c.kept_turns, "turn") + " kept" + (c.replayed ? " · replayed" : "")),
      h("pre", { class: "text" }, c.summary)];
  }

  function renderCell(cell, run) {
    const duration = cell.duration !== null ? cell.duration : cell.end !== null ? cell.end - cell.start : null;
    const summary = h("summary", null,
      h("span", { class: "caret" }, "▶"),
      h("span", { class: "node-title" }, "Cell " + cell.cell),
      cell.error ? h("span", { class: "pill fail" }, cell.timed_out ? "timed out" : "error") : null,
      cell.restarted ? h("span", { class: "pill fail" }, "REPL restarted") : null,
      cell.final !== null ? h("span", { class: "pill final" }, "FINAL") : null,
      cell.end === null ? h("span", { class: "pill run" }, "running") : null,
      cell.replayed ? replayedPill("cell", "run again from a recorded reply; its output matched the record") : null,
      costChips(cell.totals, [
        chip("time", fmtSeconds(duration)),
        cell.subcalls.length ? chip("sub-calls", fmtInt(cell.subcalls.length)) : null,
        toolCalls(cell).length ? chip("tool calls", fmtInt(toolCalls(cell).length)) : null,
      ]));
    const parts = [
      h("div", { class: "section-label" }, "Code"),
      h("pre", { class: "code" }, cell.code),
    ];
    if (cell.output) {
      parts.push(h("div", { class: "section-label" }, "Output"),
        h("pre", { class: cell.error ? "err" : "" }, cell.output));
    }
    if (cell.final !== null) {
      parts.push(h("div", { class: "section-label" }, "Final answer"), h("pre", { class: "text" }, cell.final));
    }
    if (cell.subcalls.length) parts.push(renderSubcalls(cell));
    if (toolCalls(cell).length) parts.push(renderToolCalls(cell));
    return h("details", { class: "cell" + (cell.error ? " error" : ""), id: cell._id,
      open: run.depth === 0, dataset: { node: "cell" } }, summary, h("div", { class: "cell-body" }, parts));
  }

  function toolCalls(cell) {
    return cell.tool_calls || [];  // absent in trees of files written before tools
  }

  function renderToolCalls(cell) {
    const box = h("div", { class: "subcalls toolcalls" },
      h("div", { class: "section-label" }, "Tool calls"));
    box.append(...toolCalls(cell).map((call) => {
      const failed = call.ok === false;
      const outcome = call.end === null ? "…"
        : failed ? "✕ " + (call.error_type ? call.error_type + ": " : "") + call.result
        : call.result;
      return h("details", { class: "subcall" + (failed ? " failed" : ""),
        dataset: { node: "toolcall" } },
        h("summary", { class: "toolgrid" },
          h("span", { class: "caret" }, "▶"),
          h("span", { class: "mono" }, call.tool,
            call.replayed ? [" ", replayedPill("toolcall", "the recorded result: the tool was not called")] : null),
          h("span", { class: "ellipsis mono muted" }, oneLine(call.arguments, 200)),
          h("span", { class: "ellipsis" + (failed ? "" : " mono"),
            style: failed ? "color:var(--error)" : "" }, oneLine(outcome, 200) || "(empty)"),
          h("span", { class: "num" }, fmtSeconds(call.latency))),
        h("div", { class: "sub-body" },
          h("div", { class: "section-label" }, "Arguments"), h("pre", null, call.arguments),
          h("div", { class: "section-label" }, failed ? "Error" : "Result"),
          h("pre", { class: failed ? "err" : "" }, outcome)));
    }));
    return box;
  }

  function renderSubcalls(cell) {
    const box = h("div", { class: "subcalls" },
      h("div", { class: "subgrid subhead" },
        h("span"), h("span", null, "#"), h("span", null, "kind"), h("span", null, "model"),
        h("span", null, "prompt"), h("span", null, "answer"),
        h("span", { class: "num" }, "tokens"), h("span", { class: "num" }, "time"),
        h("span", { class: "num" }, "cost")));
    const rows = cell.subcalls.map(renderSubcall);
    rows.forEach((row, i) => { if (i >= SUBCALL_ROWS) row.hidden = true; });
    box.append(...rows);
    if (rows.length > SUBCALL_ROWS) {
      const more = h("div", { class: "more" });
      more.append(h("button", { class: "btn", onclick: () => {
        rows.forEach((row) => { row.hidden = false; });
        more.remove();
      } }, "Show all " + fmtInt(rows.length) + " sub-calls"));
      box.append(more);
    }
    return box;
  }

  function renderSubcall(sub) {
    const t = sub.totals;
    const failed = sub.ok === false;
    const summary = h("summary", { class: "subgrid" },
      h("span", { class: "caret" }, "▶"),
      h("span", { class: "mono muted" }, String(sub._index)),
      h("span", null, h("span", { class: "pill kind-" + sub.kind }, sub.kind),
        sub.cached ? h("span", { class: "pill final", title: "answered by the sub-call cache: not paid" }, "cached") : null),
      h("span", { class: "ellipsis muted", title: sub.model }, sub.model),
      h("span", { class: "ellipsis" }, oneLine(sub.prompt, 300) || "–"),
      h("span", { class: "ellipsis" + (failed ? "" : " mono"), style: failed ? "color:var(--error)" : "" },
        sub.replayed ? [replayedPill("subcall", "the recorded answer: not asked or paid again"), " "] : null,
        sub.end === null ? "…" : (failed ? "✕ " : "") + (oneLine(sub.answer, 200) || "(empty)")),
      h("span", { class: "num" }, fmtTokens(t.input_tokens) + " / " + fmtTokens(t.output_tokens)),
      h("span", { class: "num" }, fmtSeconds(sub.latency)),
      h("span", { class: "num" }, fmtCost(t.cost_usd)));
    return h("details", { class: "subcall" + (failed ? " failed" : ""), id: sub._id,
      dataset: { node: "subcall", kind: sub.kind } },
      summary,
      h("div", { class: "sub-body" },
        h("div", { class: "section-label" }, "Prompt · " + fmtInt(sub.prompt_chars) + " characters" +
          (sub.prompt.length < sub.prompt_chars ? " (preview)" : "")),
        h("pre", null, sub.prompt),
        h("div", { class: "section-label" }, failed ? "Error" : "Answer"),
        h("pre", { class: failed ? "err" : "" }, sub.answer),
        sub.run ? renderRun(sub.run, true) : null));
  }

  function renderTree(data) {
    const content = h("div", { class: "card-body" }, data.runs.map((r) => renderRun(r, false)));
    const toggle = (open) => () => {
      for (const d of content.querySelectorAll("details")) d.open = open;
    };
    return h("section", { class: "card" },
      h("div", { class: "card-head" },
        h("h2", null, "Runs, turns, cells and sub-calls"),
        h("span", { class: "spacer" }),
        h("button", { class: "btn", onclick: toggle(true) }, "Expand all"),
        h("button", { class: "btn", onclick: toggle(false) }, "Collapse all")),
      content);
  }

  // ---- main ----------------------------------------------------------------------------

  function main() {
    const data = JSON.parse(document.getElementById("rlm-data").textContent);
    const app = document.getElementById("app");
    const all = collect(data.runs);
    const conc = peakConcurrency(all.subcalls, data.end);
    const tooltip = makeTooltip();
    const timeline = renderTimeline(data, all, conc, tooltip);
    app.append(
      renderHeader(data),
      renderTiles(data, all, conc),
      timeline.card,
      renderTree(data),
      h("div", { class: "footer" }, "rlm-async trajectory viewer · " + plural(data.event_count, "event")));
    timeline.draw(); // once in the page, so the chart takes the card's width
    Object.assign(body.dataset, {
      runs: all.runs.length, turns: all.turns.length, cells: all.cells.length,
      subcalls: all.subcalls.length, peak: conc.peak,
    });
  }

  try {
    main();
    body.dataset.ready = "1";
  } catch (error) {
    fail(error);
  }
})();
