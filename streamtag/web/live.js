// streamtag live view: reads the WebSocket feed (/ws, one JSON message per topic message:
// {"topic": "streamtag.estimate", "data": {...}}) and draws what the analysis hears.
// Plain browser JavaScript, no library; see the README, "Connecting your tools".
(() => {
  "use strict";

  const TOPICS = ["streamtag.estimate", "streamtag.fast", "streamtag.status", "streamtag.meta",
                  "streamtag.beat"];
  const TRAIL_S = 20;      // trails on the planes [s of stream time]
  const STRIP_S = 12;      // width of the strips [s of stream time]
  const TAGS_SHOWN = 12;
  const QUADRANT_COLORS = { 1: "#f6e05e", 2: "#fc8181", 3: "#63b3ed", 4: "#68d391" };
  const $ = (id) => document.getElementById(id);

  const state = {
    conn: "connecting", records: 0, fast: 0, beats: 0, manifest: null, status: null,
    streams: new Map(), selected: null, lastDraw: 0, dirty: true, beatFlashUntil: 0,
  };
  window.streamtagLive = state;  // for the console, and tests

  function stream(name) {
    let s = state.streams.get(name);
    if (!s) {
      s = { name, rec: null, tNow: 0, va: [], xy: [], novelty: [], level: [], onset: [],
            beats: [], lastBeatT: null, onsetMax: 1e-3 };
      state.streams.set(name, s);
      const opt = document.createElement("option");
      opt.value = opt.textContent = name;
      $("stream").appendChild(opt);
      if (state.selected === null) state.selected = name;
    }
    return s;
  }

  function trim(list, tMin) {
    let i = 0;
    while (i < list.length && list[i][0] < tMin) i++;
    if (i) list.splice(0, i);
  }

  function addBeat(s, t) {
    if (t === null || t === undefined || t === s.lastBeatT) return;
    s.lastBeatT = t;
    s.beats.push([t]);
    state.beats++;
    if (s.name === state.selected) state.beatFlashUntil = performance.now() + 120;
  }

  // -- the feed ---------------------------------------------------------------------------
  function onRecord(rec) {
    const s = stream(rec.stream);
    s.rec = rec;
    s.tNow = Math.max(s.tNow, rec.t);
    if (rec.emotion) s.va.push([rec.t, rec.emotion.valence, rec.emotion.arousal, rec.emotion.quadrant]);
    if (rec.embedding && rec.embedding.xy) s.xy.push([rec.t, rec.embedding.xy[0], rec.embedding.xy[1]]);
    if (typeof rec.novelty === "number") s.novelty.push([rec.t, rec.novelty]);
    if (typeof rec.level_db === "number") s.level.push([rec.t, rec.level_db]);
    if (rec.tempo && typeof rec.tempo === "object") addBeat(s, rec.tempo.last_beat_t);
    trim(s.va, s.tNow - TRAIL_S);
    trim(s.xy, s.tNow - TRAIL_S);
    trim(s.novelty, s.tNow - STRIP_S - 1);
    trim(s.level, s.tNow - STRIP_S - 1);
    state.records++;
  }

  function onFast(f) {
    const s = stream(f.stream);
    const t = typeof f.t === "number" ? f.t : s.tNow;
    s.tNow = Math.max(s.tNow, t);
    const v = f.values || {};
    if (typeof v.onset === "number") {
      s.onset.push([t, v.onset]);
      s.onsetMax = Math.max(s.onsetMax * 0.999, v.onset);
    }
    if (typeof v.beat === "number" && v.beat > 0) addBeat(s, t);
    trim(s.onset, s.tNow - STRIP_S - 1);
    trim(s.beats, s.tNow - STRIP_S - 1);
    state.fast++;
  }

  function handle(msg) {
    const d = msg.data;
    switch (msg.topic) {
      case "streamtag.estimate": onRecord(d); break;
      case "streamtag.fast": onFast(d); break;
      case "streamtag.status": state.status = d; break;
      case "streamtag.meta": state.manifest = d; break;
      case "streamtag.beat": addBeat(stream(d.stream), d.t); break;
      default: return;
    }
    state.dirty = true;
  }

  function connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${location.host}/ws?topics=${TOPICS.join(",")}`);
    ws.onopen = () => { state.conn = "open"; state.dirty = true; };
    ws.onmessage = (ev) => {
      try { handle(JSON.parse(ev.data)); } catch (e) { console.error("bad message", e); }
    };
    ws.onclose = () => {
      state.conn = "closed"; state.dirty = true;
      setTimeout(connect, 1000);  // the daemon restarts: come back by ourselves
    };
  }

  // -- drawing ----------------------------------------------------------------------------
  function fit(canvas) {
    const r = canvas.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(r.width * dpr)), h = Math.max(1, Math.round(r.height * dpr));
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    return [ctx, r.width, r.height];
  }

  // A square [-1, 1]² plane with a trail, centred in its canvas (which is wider than tall once
  // the column outgrows the canvas's max-height); returns the current point in CSS px of the
  // canvas.
  function plane(canvas, points, opts) {
    const [ctx, w, h] = fit(canvas);
    const pad = 18, size = Math.min(w, h) - 2 * pad;
    const left = (w - size) / 2, top = (h - size) / 2;
    const X = (x) => left + (x + 1) / 2 * size, Y = (y) => top + (1 - (y + 1) / 2) * size;
    ctx.clearRect(0, 0, w, h);
    if (opts.quadrants) {
      // [left valence, top arousal, colour] of quadrants 1 happy, 2 tense, 3 sad, 4 calm
      const q = [[0, 1, "#3a3520"], [-1, 1, "#3a2222"], [-1, 0, "#1d2a3a"], [0, 0, "#1e3324"]];
      for (const [v0, a1, color] of q) {
        ctx.fillStyle = color;
        ctx.fillRect(X(v0), Y(a1), size / 2, size / 2);
      }
      ctx.fillStyle = "#8a939e"; ctx.font = "12px system-ui, sans-serif";
      ctx.textAlign = "right"; ctx.fillText("happy", X(1) - 6, Y(1) + 16);
      ctx.textAlign = "left"; ctx.fillText("tense", X(-1) + 6, Y(1) + 16);
      ctx.fillText("sad", X(-1) + 6, Y(-1) - 8);
      ctx.textAlign = "right"; ctx.fillText("calm", X(1) - 6, Y(-1) - 8);
    } else {
      ctx.fillStyle = "#12161b"; ctx.fillRect(X(-1), Y(1), size, size);
      ctx.strokeStyle = "#222830"; ctx.lineWidth = 1;
      for (let g = -0.5; g <= 0.5; g += 0.5) {
        ctx.beginPath(); ctx.moveTo(X(g), Y(-1)); ctx.lineTo(X(g), Y(1)); ctx.stroke();
        ctx.beginPath(); ctx.moveTo(X(-1), Y(g)); ctx.lineTo(X(1), Y(g)); ctx.stroke();
      }
    }
    ctx.strokeStyle = "#3a424d"; ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(X(0), Y(-1)); ctx.lineTo(X(0), Y(1)); ctx.stroke();
    ctx.beginPath(); ctx.moveTo(X(-1), Y(0)); ctx.lineTo(X(1), Y(0)); ctx.stroke();
    ctx.strokeRect(X(-1), Y(1), size, size);
    if (!points.length) return null;
    const n = points.length;
    for (let i = 1; i < n; i++) {
      const a = i / n;
      ctx.strokeStyle = `rgba(${opts.trail}, ${0.15 + 0.75 * a})`;
      ctx.lineWidth = 1 + 2 * a;
      ctx.beginPath();
      ctx.moveTo(X(points[i - 1][1]), Y(points[i - 1][2]));
      ctx.lineTo(X(points[i][1]), Y(points[i][2]));
      ctx.stroke();
    }
    const last = points[n - 1];
    const px = X(last[1]), py = Y(last[2]);
    ctx.fillStyle = opts.color(last);
    ctx.beginPath(); ctx.arc(px, py, 9, 0, 2 * Math.PI); ctx.fill();
    ctx.strokeStyle = "#ffffff"; ctx.lineWidth = 2; ctx.stroke();
    return [px, py];
  }

  function strips(s) {
    const [ctx, w, h] = fit($("strips"));
    ctx.clearRect(0, 0, w, h);
    const lanes = [["novelty", 0], ["onset", 1], ["level dB", 2]];
    const laneH = h / lanes.length, left = 70, right = w - 8, t1 = s ? s.tNow : 0;
    const X = (t) => right - (t1 - t) / STRIP_S * (right - left);
    ctx.font = "12px system-ui, sans-serif";
    for (const [name, i] of lanes) {
      const top = i * laneH + 4, bottom = (i + 1) * laneH - 4;
      ctx.fillStyle = "#12161b"; ctx.fillRect(left, top, right - left, bottom - top);
      ctx.fillStyle = "#8a939e"; ctx.textAlign = "left";
      ctx.fillText(name, 4, (top + bottom) / 2 + 4);
    }
    if (!s) return;
    const lane = (i, v) => { // v in [0, 1] → y in lane i
      const top = i * laneH + 4, bottom = (i + 1) * laneH - 4;
      return bottom - Math.max(0, Math.min(1, v)) * (bottom - top);
    };
    // novelty: a step area per hop
    ctx.fillStyle = "#f6ad55";
    for (const [t, v] of s.novelty) {
      const x0 = Math.max(left, X(t - 0.5)), x1 = X(t);
      if (x1 > left) ctx.fillRect(x0, lane(0, v), x1 - x0 - 1, lane(0, 0) - lane(0, v));
    }
    // onset strength: one bar per fast-lane frame, scaled by the recent maximum
    ctx.fillStyle = "#4fd1c5";
    const barW = Math.max(1, Math.floor((right - left) / (STRIP_S * 50)));  // ~ a 50 Hz frame
    for (const [t, v] of s.onset) {
      const x = Math.round(X(t));  // whole pixels: crisp bars
      if (x < left) continue;
      const y = Math.round(lane(1, v / s.onsetMax));
      ctx.fillRect(x - barW, y, barW, Math.max(1, Math.round(lane(1, 0)) - y));
    }
    // beats: ticks across the onset lane
    ctx.strokeStyle = "rgba(255, 255, 255, 0.9)"; ctx.lineWidth = 2;
    for (const [t] of s.beats) {
      const x = X(t);
      if (x < left) continue;
      ctx.beginPath(); ctx.moveTo(x, lane(1, 1)); ctx.lineTo(x, lane(1, 0)); ctx.stroke();
    }
    // level [-60, 0] dBFS as a line
    ctx.strokeStyle = "#68d391"; ctx.lineWidth = 2; ctx.beginPath();
    let first = true;
    for (const [t, db] of s.level) {
      const x = X(t);
      if (x < left) continue;
      const y = lane(2, (db + 60) / 60);
      if (first) { ctx.moveTo(x, y); first = false; } else ctx.lineTo(x, y);
    }
    ctx.stroke();
  }

  function bars(el, entries, top) {
    // entries: [[label, value 0..1]]; rows are rebuilt only when the labels change
    const key = entries.map((e) => e[0]).join("\u0000");
    if (el.dataset.key !== key) {
      el.dataset.key = key;
      el.replaceChildren(...entries.map(([label]) => {
        const row = document.createElement("div");
        row.className = "bar";
        row.innerHTML = '<span class="name"></span><div class="track"><div class="fill"></div></div><span class="val"></span>';
        row.querySelector(".name").textContent = label;
        row.title = label;
        return row;
      }));
    }
    entries.forEach(([label, v], i) => {
      const row = el.children[i];
      row.classList.toggle("top", label === top);
      row.querySelector(".fill").style.width = `${Math.round(Math.max(0, Math.min(1, v)) * 1000) / 10}%`;
      row.querySelector(".val").textContent = v.toFixed(2);
    });
  }

  const fmt = (x, d = 2) => (typeof x === "number" ? x.toFixed(d) : "—");

  function statusPanel() {
    const st = state.status;
    const el = $("status");
    if (!st) return;
    const lat = st.latency_ms || {};
    const input = st.input || {};
    const items = [
      ["input", input.status], ["latency p50 / p99", `${fmt(lat.p50, 1)} / ${fmt(lat.p99, 1)} ms`],
      ["overflows", st.overflows], ["dropped", st.dropped], ["checkpoint", st.checkpoint],
      ["hops", st.hops], ["uptime", `${fmt(st.uptime_s, 0)} s`], ["paused", st.paused ? "yes" : "no"],
      ["browser tabs", st.web ? st.web.clients : "—"], ["loop errors", st.loop_errors],
      ["reloads", `${st.reloads} (${st.reloads_refused} refused)`],
      ["references", st.references === null || st.references === undefined ? "—" : st.references],
    ];
    el.replaceChildren(...items.flatMap(([k, v]) => {
      const dt = document.createElement("dt"), dd = document.createElement("dd");
      dt.textContent = k; dd.textContent = v === undefined || v === null ? "—" : String(v);
      return [dt, dd];
    }));
  }

  function draw() {
    state.lastDraw = performance.now();
    state.dirty = false;
    const conn = $("conn");
    conn.className = `conn ${state.conn}`;
    conn.textContent = state.conn === "open" ? "live" : state.conn;
    const s = state.streams.get(state.selected) || null;
    const rec = s && s.rec;
    const va = plane($("plane"), s ? s.va : [], {
      quadrants: true, trail: "255, 255, 255", color: (p) => QUADRANT_COLORS[p[3]] || "#ffffff" });
    const xy = plane($("map"), s ? s.xy : [], { trail: "79, 209, 197", color: () => "#d53f8c" });
    strips(s);
    if (rec) {
      const e = rec.emotion;
      $("emotion-readout").textContent = e
        ? `valence ${fmt(e.valence)} · arousal ${fmt(e.arousal)} · ${e.label} (quadrant ${e.quadrant})` : "no emotion head";
      $("map-readout").textContent = rec.embedding && rec.embedding.xy
        ? `x ${fmt(rec.embedding.xy[0])} · y ${fmt(rec.embedding.xy[1])}` : "no 2-D map in this checkpoint";
      const inst = rec.instrument;
      bars($("instrument"), inst ? Object.entries(inst.probs) : [], inst && inst.top);
      bars($("timbre"), rec.timbre ? Object.entries(rec.timbre) : [], null);
      const tags = rec.tags ? Object.entries(rec.tags).sort((a, b) => b[1] - a[1]).slice(0, TAGS_SHOWN) : [];
      bars($("tags"), tags, tags.length ? tags[0][0] : null);
      const tempo = rec.tempo;
      $("tempo").textContent = tempo && typeof tempo.bpm === "number" && tempo.bpm > 0
        ? `${tempo.bpm.toFixed(1)} BPM (${fmt(tempo.confidence)})` : (tempo ? "listening…" : "—");
      $("level").textContent = `${fmt(rec.level_db, 1)} dBFS${rec.silent ? " (silent)" : ""}`;
      $("novelty").textContent = fmt(rec.novelty);
      const ref = rec.reference;
      $("reference").textContent = ref ? `${ref.name || "new"} (${fmt(ref.distance)})` : "—";
      $("time").textContent = `${fmt(rec.t, 1)} s · hop ${rec.seq}`;
    }
    $("beat").classList.toggle("on", performance.now() < state.beatFlashUntil);
    statusPanel();
    const st = state.status;
    $("summary").textContent = st ? `${(st.input || {}).status || ""} · latency p50 ${fmt((st.latency_ms || {}).p50, 1)} ms` : "";
    // The latest values as attributes, for tests and for anyone scripting the page.
    const d = $("state").dataset;
    d.conn = state.conn;
    d.records = state.records;
    d.fast = state.fast;
    d.beats = state.beats;
    d.stream = state.selected || "";
    if (rec) {
      d.seq = rec.seq;
      d.t = rec.t;
      if (rec.emotion) {
        d.valence = rec.emotion.valence; d.arousal = rec.emotion.arousal; d.quadrant = rec.emotion.quadrant;
      }
      if (rec.embedding && rec.embedding.xy) d.xy = rec.embedding.xy.join(",");
      if (rec.instrument) d.instrument = rec.instrument.top;
      if (typeof rec.novelty === "number") d.novelty = rec.novelty;
    }
    if (s && s.onset.length) d.onsetMax = s.onsetMax;
    const page = (canvas, p) => {
      if (!p) return "";
      const r = canvas.getBoundingClientRect();
      return `${Math.round(r.left + p[0])},${Math.round(r.top + p[1])}`;
    };
    d.planePoint = page($("plane"), va);
    d.mapPoint = page($("map"), xy);
    const pr = $("plane").getBoundingClientRect();
    d.planeCentre = `${Math.round(pr.left + pr.width / 2)},${Math.round(pr.top + pr.height / 2)}`;
    if (st) { d.statusHops = st.hops; d.checkpoint = st.checkpoint; }
  }

  function frame() {
    if (state.dirty || performance.now() < state.beatFlashUntil + 50) draw();
    requestAnimationFrame(frame);
  }

  $("stream").addEventListener("change", (ev) => { state.selected = ev.target.value; state.dirty = true; });
  window.addEventListener("resize", () => { state.dirty = true; });
  // Hidden tabs get no animation frames; draw a few times a second anyway so the page and its
  // attributes are current when it comes back (and in headless browsers).
  setInterval(() => { if (performance.now() - state.lastDraw > 250) draw(); }, 250);
  connect();
  requestAnimationFrame(frame);
  draw();
})();
