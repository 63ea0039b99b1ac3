"""The live daemon: source → engine → OSC / ZeroMQ, with control, heartbeat and reload.

One analysis loop (the thread that calls ``run``) reads the source, runs the engine and
publishes. Everything else talks to it through commands: the OSC control port, signals
(SIGINT/SIGTERM stop, SIGHUP reloads) and tests. Commands coalesce instead of queueing: any
number of resets before the loop looks is one reset, pause/resume keep the last one asked, and
any number of reloads while one is being prepared is one more reload. A reload is prepared
whole (config read and checked, checkpoint and library loaded, engine built and probed) on a
worker thread, the ``reloader``, while the loop keeps analysing and publishing; the loop only
swaps the finished parts in. Nothing a user sends can kill the loop: control messages and
reloads that fail are counted, logged and refused, and the running model is kept.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from streamtag.audio.sources import DeviceSource, FileSource, Source, SyntheticSource
from streamtag.checkpoint import Checkpoint, resolve_checkpoint
from streamtag.config import Config, load_config
from streamtag.engine import Beat, Engine, FastFrames, StreamSpec
from streamtag.errors import CheckpointError, ConfigError, StreamtagError
from streamtag.estimate import HopEstimate, latency_since
from streamtag.publish import wire
from streamtag.publish.control import ControlServer
from streamtag.publish.mapping import Mapper, OscMapping
from streamtag.publish.osc import OscPublisher, TargetSpec
from streamtag.publish.smoothing import EstimateSmoother, make_smoother
from streamtag.publish.web import WebServer
from streamtag.publish.zmq import ZmqPublisher
from streamtag.references import ReferenceLibrary, load_library

log = logging.getLogger("streamtag.daemon")

SYNTHETIC_PREFIX = "synthetic:"
ONSET_COLUMN = wire.FAST_NAMES.index("onset")
#: Longest the loop waits for input [s]: how long a command or a stop can wait for it.
MAX_WAIT_S = 0.1
#: A reload starts once requests have been quiet this long [s] (a burst, or an editor saving a
#: file in several writes, is one reload) ...
RELOAD_QUIET_S = 0.1
#: ... or this long after the first request at the latest [s].
RELOAD_MAX_DELAY_S = 1.0
#: With a file read as fast as possible, how long to wait for a first ZeroMQ subscriber [s].
SUBSCRIBER_WAIT_S = 1.0


# -- building the parts from config ----------------------------------------------------------
def make_source(full: Config) -> Source:
    """The source the config asks for: a file, a synthetic signal, or a device."""
    cfg = full.input
    if cfg.file is not None:
        return FileSource(cfg.file, realtime=cfg.realtime)
    if isinstance(cfg.device, str) and cfg.device.startswith(SYNTHETIC_PREFIX):
        kind = cfg.device[len(SYNTHETIC_PREFIX):] or "sine"
        # As many channels as the streams and channel selections refer to.
        used = [c for s in stream_specs(full) for c in (s.channels or ())]
        return SyntheticSource(kind, sample_rate_hz=cfg.sample_rate_hz or 48000,  # type: ignore[arg-type]
                               channels=max(used, default=0) + 1, realtime=cfg.realtime,
                               blocksize_frames=cfg.blocksize or 1024)
    # Streams pick their channels from the delivered block, so capture them all.
    return DeviceSource(cfg.device, None, cfg.sample_rate_hz, cfg.blocksize, cfg.ring_s,
                        client_name="streamtag")


def reference_library(cfg: Config) -> ReferenceLibrary | None:
    """The library ``reference.library`` names, read now (LibraryError if unusable)."""
    return load_library(cfg.reference.library) if cfg.reference.library else None


def stream_specs(cfg: Config) -> list[StreamSpec]:
    if cfg.streams:
        return [StreamSpec(s.name, tuple(s.channels) if s.channels is not None else None)
                for s in cfg.streams]
    ch = cfg.input.channels
    return [StreamSpec(cfg.analysis.stream, tuple(ch) if ch is not None else None)]


def make_mapper(cfg: Config, hop_s: float) -> Mapper:
    """User mappings with their smoothers (one per stream, mapping and value); ValueError
    names the mapping and field."""
    named = {t.name for t in cfg.outputs.osc.targets if t.name is not None}
    streams = [s.name for s in stream_specs(cfg)]
    mappings = []
    for i, m in enumerate(cfg.outputs.osc.mappings):
        if m.stream is not None and m.stream not in streams:  # reload: streams need a restart
            raise ValueError(f"outputs.osc.mappings[{i}].stream: expected one of "
                             f"{', '.join(streams)}, got {m.stream!r} (streams change on "
                             "restart)")
        target = [m.target] if isinstance(m.target, str) else m.target
        for name in target or ():
            if name not in named:  # a reload naming a target that only a restart would add
                raise ValueError(f"outputs.osc.mappings[{i}].target: no OSC target is named "
                                 f"{name!r} (targets change on restart)")
        mappings.append(OscMapping(
            tuple(m.sources) if m.sources else m.source, m.to, (m.range[0], m.range[1]),
            m.curve, None if m.in_range is None else (m.in_range[0], m.in_range[1]),
            stream=m.stream, target=None if target is None else tuple(target)))
    if len(streams) > 1:
        for m in mappings:
            if m.stream is None:
                log.warning("mapping to %s has no stream: every stream drives it, their values "
                            "alternating; set `stream` to choose one", m.to)
    return Mapper(mappings, [make_smoother(cfg.outputs.osc.smoothing, hop_s) for _ in mappings])


def osc_targets(cfg: Config) -> list[TargetSpec]:
    """The OSC targets of the config, with their profiles; a wekinator target without a
    stream gets the first one's name (so the manifest says which)."""
    first = stream_specs(cfg)[0].name
    return [TargetSpec(t.host, int(t.port or 0), t.profile, t.name, tuple(t.inputs),
                       t.stream or (first if t.profile == "wekinator" else None))
            for t in cfg.outputs.osc.targets]


def make_web_server(cfg: Config, manifest: dict[str, Any]) -> WebServer | None:
    """The live view and OSCQuery server the config asks for (None: both off)."""
    web, oq = cfg.outputs.web, cfg.outputs.oscquery
    if not (web.enabled or oq.enabled):
        return None
    return WebServer(web=(web.host, web.port) if web.enabled else None,
                     oscquery=(oq.host, oq.port) if oq.enabled else None, manifest=manifest,
                     queue_messages=web.queue_messages,
                     osc_control=((cfg.control.host, cfg.control.port) if cfg.control.enabled
                                  else None),
                     name=oq.name, zeroconf=oq.zeroconf)


# -- status ------------------------------------------------------------------------------------
@dataclass
class Counters:
    hops: int = 0
    records: int = 0
    reloads: int = 0
    reloads_refused: int = 0
    commands: int = 0
    loop_errors: int = 0
    latencies_ms: collections.deque = field(default_factory=lambda: collections.deque(maxlen=600))

    def latency(self) -> dict[str, float | None]:
        if not self.latencies_ms:
            return {"p50": None, "p99": None}
        a = np.asarray(self.latencies_ms)
        return {"p50": round(float(np.percentile(a, 50)), 3),
                "p99": round(float(np.percentile(a, 99)), 3)}


class Daemon:
    """The running service. ``run()`` blocks until ``stop()`` (or the end of a file input).

    config_path: the file to re-read on reload (None: keep the given config).
    checkpoint_override: a checkpoint path that wins over ``model.checkpoint`` (CLI flag).
    """

    def __init__(self, cfg: Config, *, config_path: str | Path | None = None,
                 checkpoint_override: str | None = None) -> None:
        self.cfg = cfg
        self.config_path = Path(config_path) if config_path else None
        self.checkpoint_override = checkpoint_override
        self.checkpoint: Checkpoint = resolve_checkpoint(
            checkpoint_override or cfg.model.checkpoint)
        self.counters = Counters()
        self.paused = False
        # Coalesced commands (see the module docstring), guarded by _cmd_lock.
        self._cmd_lock = threading.Lock()
        self._want_reset = False
        self._want_paused: bool | None = None
        self._reload_wanted = threading.Event()
        self._prepared: _Prepared | None = None  # a reload ready to swap in
        self._reloader: threading.Thread | None = None
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._last_source_status = ""
        torch.set_num_threads(1)  # one analysis thread; leave the other core to the audio
        # numpy's BLAS too: its worker threads spin after each small product (the mel matrix,
        # 43 times a second) and took the core JACK's clients needed: 8 xruns in 25 s with
        # OpenBLAS's 2 threads on 5 ms periods, none with 1.
        threadpool_limits(limits=1, user_api="blas")
        self.source = make_source(cfg)
        self._install(self._build_analysis(cfg, self.checkpoint))
        self.osc = self.zmq = self.control = None
        self.web: WebServer | None = None
        try:
            o = cfg.outputs
            if o.osc.enabled:
                self.osc = OscPublisher(osc_targets(cfg), o.osc.prefix, self._stream_names(),
                                        max_datagram_bytes=o.osc.max_datagram_bytes)
                self._name_osc_indices()
            if o.zmq.enabled:
                self.zmq = ZmqPublisher(o.zmq.endpoint, o.zmq.hwm, manifest=self.manifest)
            if cfg.control.enabled:
                handlers = {c: (lambda c=c: self.command(c))
                            for c in ("reset", "pause", "resume", "reload")}
                handlers["describe"] = lambda: self.manifest
                self.control = ControlServer(cfg.control.host, cfg.control.port, o.osc.prefix,
                                             handlers,
                                             max_datagram_bytes=o.osc.max_datagram_bytes,
                                             allow=cfg.control.allow,
                                             max_messages_per_s=cfg.control.max_messages_per_s)
            self.web = make_web_server(cfg, self.manifest)
        except Exception:
            self.close()
            raise

    # -- the parts that a reload replaces --------------------------------------------------------
    def _build_analysis(self, cfg: Config, ck: Checkpoint) -> _Prepared:
        """Everything a config and checkpoint make, built without touching the running parts
        (a reload calls this on the reloader thread). ConfigError/LibraryError if unusable."""
        library = reference_library(cfg)  # re-read on every reload; LibraryError if unusable
        try:
            engine = Engine(ck, input_rate_hz=self.source.sample_rate_hz,
                            streams=stream_specs(cfg), silence_db=cfg.analysis.silence_db,
                            fast_lane=cfg.outputs.osc.enabled and cfg.outputs.osc.fast.enabled,
                            novelty=cfg.novelty, reference=cfg.reference, library=library,
                            tempo=cfg.tempo)
            probe = np.zeros((1, self.source.channels), np.float32)
            engine.process(probe)  # channel selections that do not exist fail here, not live
            engine.reset()
            mapper = make_mapper(cfg, engine.hop_s)
        except ValueError as e:
            raise ConfigError(str(e)) from e
        fe = ck.frontend
        # Fewest input samples between two frame ends [samples] (one hop of the frontend at
        # the input rate; a resampler's rounding can make one a sample shorter).
        frame_in_min = max(1, fe.hop_length * engine.input_rate_hz // fe.sample_rate_hz - 1)
        frame_rate = ck.frontend.frame_rate_hz
        fast_every = max(1, round(frame_rate / cfg.outputs.osc.fast.rate_hz))
        manifest = wire.build_manifest(
            [h.to_dict() for h in ck.heads], cfg.outputs.osc.prefix, self._stream_names(cfg),
            wire.FAST_NAMES if engine.fast_lane else (),
            frame_rate / fast_every, sample_rate_hz=ck.frontend.sample_rate_hz,
            mappings=[m.manifest_entry() for m in mapper.mappings],
            projection=engine.projection is not None,
            references=engine.matcher.names if engine.matcher is not None else None,
            targets=[t.describe() for t in osc_targets(cfg)] if cfg.outputs.osc.enabled else (),
            tempo=engine.tempo)
        manifest["checkpoint"] = ck.id
        manifest["hop_s"] = engine.hop_s
        if ck.embedding_head is not None and engine.projection is None:
            log.warning("checkpoint %s has an embedding head but no stored projection: "
                        "embedding.xy is not published", ck.id)
        if library is not None:
            log.info("reference library %s: %d reference(s)", library.path, len(library.names))
        smoother = EstimateSmoother(cfg.outputs.osc.smoothing, engine.hop_s, ck.heads)
        return _Prepared(cfg, ck, engine, mapper, smoother, manifest, fast_every, frame_in_min)

    def _install(self, p: _Prepared) -> None:
        """Swap prepared parts in (the analysis thread, between blocks): assignments only."""
        self.cfg, self.checkpoint = p.cfg, p.ck
        self.engine, self.mapper, self.smoother = p.engine, p.mapper, p.smoother
        self.manifest, self._fast_every, self._frame_in_min = (p.manifest, p.fast_every,
                                                               p.frame_in_min)
        self._fast_count = 0
        # Strongest onset per stream since the last fast-lane message: below the frame rate
        # the frames in between are not sent, and a click lives in one frame.
        self._onset_hold: dict[str, float] = {}

    def _name_osc_indices(self) -> None:
        """Tell the OSC publisher the class and reference names the touchdesigner profile's
        indices point into: the manifest's lists."""
        if self.osc is None:
            return
        classes = next((e.get("classes") for e in self.manifest["osc"]["addresses"]
                        if "classes" in e), None)
        self.osc.set_names(classes, self.manifest.get("references"))

    def _stream_names(self, cfg: Config | None = None) -> list[str]:
        return [s.name for s in stream_specs(cfg or self.cfg)]

    # -- commands ------------------------------------------------------------------------------
    def command(self, name: str) -> None:
        """Ask for reset, pause, resume or reload (thread-safe; coalesced, see the module
        docstring). Returns at once: the loop applies it between blocks, a reload once the
        reloader has prepared it."""
        if name == "reload":
            self.counters.commands += 1
            self._reload_wanted.set()  # no lock: SIGHUP calls this from a signal handler
            return
        with self._cmd_lock:
            self.counters.commands += 1
            if name == "reset":
                self._want_reset = True
            elif name in ("pause", "resume"):
                self._want_paused = name == "pause"
            else:
                raise ValueError(f"unknown command {name!r}")

    def stop(self) -> None:
        self._stop.set()
        self._reload_wanted.set()  # wakes the reloader to see the stop

    def _handle_commands(self) -> None:
        with self._cmd_lock:
            reset, self._want_reset = self._want_reset, False
            paused, self._want_paused = self._want_paused, None
            prepared, self._prepared = self._prepared, None
        if prepared is not None:
            self._install(prepared)
            self.counters.reloads += 1
            self._name_osc_indices()
            if self.zmq is not None:
                self.zmq.publish_meta(self.manifest)
            if self.web is not None:
                self.web.publish_meta(self.manifest)
            log.info("reloaded: checkpoint %s", prepared.ck.id)
        if reset:
            self.engine.reset()
            self.mapper.reset()
            self.smoother.reset()
            log.info("reset: model state cleared")
        if paused is not None and paused != self.paused:
            self.paused = paused
            log.info("paused" if paused else "resumed")

    def prepare_reload(self) -> _Prepared | None:
        """Re-read config and checkpoint and build everything from them, without touching the
        running parts. A bad one (whatever the file holds) is refused: logged, counted in
        ``reloads_refused``, None returned; the running model is kept."""
        try:
            cfg = load_config(self.config_path) if self.config_path else self.cfg
            ck = resolve_checkpoint(self.checkpoint_override or cfg.model.checkpoint)
            kept = keep_restart_only(self.cfg, cfg)
            if kept != cfg:
                log.warning("reload: changes to input, streams, OSC targets/prefix/datagram size, "
                            "ZeroMQ, control, web and OSCQuery take effect on restart; applying "
                            "the rest")
            return self._build_analysis(kept, ck)
        except (ConfigError, CheckpointError, StreamtagError, ValueError) as e:
            reason = str(e)
        except Exception as e:  # nothing in a file may kill the daemon: refuse it
            reason = f"{type(e).__name__}: {e}"
        self.counters.reloads_refused += 1
        log.error("reload refused, keeping the running model %s: %s", self.checkpoint.id, reason)
        return None

    def _reload_worker(self) -> None:
        """The reloader thread: once requests are quiet (``RELOAD_QUIET_S``), prepares one
        reload, hands it to the loop, and waits until the loop has swapped it in before
        preparing the next: a burst of requests is one reload, at most two if it outlasts
        ``RELOAD_MAX_DELAY_S``."""
        # Below the analysis loop and the capture: a reload may take a while, a hop may not.
        with _suppress_os_error():
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        while not self._stop.is_set():
            self._reload_wanted.wait()
            deadline = time.monotonic() + RELOAD_MAX_DELAY_S
            while not self._stop.is_set():
                self._reload_wanted.clear()
                if not self._reload_wanted.wait(RELOAD_QUIET_S) or time.monotonic() > deadline:
                    break
            if self._stop.is_set():
                return
            self._reload_wanted.clear()
            prepared = self.prepare_reload()
            if prepared is None:
                continue
            with self._cmd_lock:
                self._prepared = prepared
            del prepared
            while not self._stop.is_set():
                with self._cmd_lock:
                    if self._prepared is None:
                        break
                time.sleep(0.01)
            freeze_heap()  # the old model goes now, not in a collection mid-hop

    # -- the loop --------------------------------------------------------------------------------
    def run(self) -> int:
        """Analyse until stopped; returns the process exit code."""
        freeze_heap()
        self._reloader = threading.Thread(target=self._reload_worker, name="reloader",
                                          daemon=True)
        self._reloader.start()
        self.source.start()
        next_status = time.monotonic()
        # A read returns at once with whatever has arrived (up to this), so a large bound adds
        # no latency and saves the per-call overhead of many small blocks.
        max_frames = 16384
        if isinstance(self.source, FileSource) and not self.cfg.input.realtime:
            self._wait_for_subscriber(SUBSCRIBER_WAIT_S)
        log.info("running: input %s at %d Hz, %d channel(s); checkpoint %s; hop %.3f s",
                 self.source.status, self.source.sample_rate_hz, self.source.channels,
                 self.checkpoint.id, self.engine.hop_s)
        try:
            while not self._stop.is_set():
                self._handle_commands()
                # Wake once per frame someone waits for (the hop's last, each fast-lane frame
                # sent), not once per capture block: before it there is nothing to publish (see
                # Source.read and the capture worker).
                # The wait ends in time for the next status and for commands and stop.
                wait_s = min(MAX_WAIT_S, max(0.005, next_status - time.monotonic()))
                block = self.source.read(max_frames, wait_s,
                                         self.engine.input_needed(self._frames_wanted()))
                arrival = time.perf_counter()
                if block.shape[0] and not self.paused:
                    try:
                        self._analyse(block, arrival)
                    except Exception as e:  # one bad block must not stop the show
                        self.counters.loop_errors += 1
                        log.exception("analysis failed on a block (%s); continuing", e)
                elif self.zmq is not None:
                    self.zmq.poll()  # new subscribers get the manifest even when idle
                now = time.monotonic()
                if now >= next_status:
                    self._status()
                    next_status = now + self.cfg.outputs.zmq.status_interval_s
                if self.source.finished and block.shape[0] == 0:
                    log.info("input finished after %.1f s of audio", self.source.stream_time_s)
                    break
        finally:
            self._stop.set()
            self._reload_wanted.set()
            self._status()
            self.close()
        return 0

    def _wait_for_subscriber(self, timeout_s: float) -> None:
        """A file analysed as fast as possible can end before a ZeroMQ subscriber has joined
        (PUB/SUB's slow joiner); wait briefly for the first subscription."""
        if self.zmq is None:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self._stop.is_set():
            self.zmq.poll()
            if self.zmq.stats.get("subscriptions", 0):
                return
            time.sleep(0.01)

    def _analyse(self, block: np.ndarray, arrival: float) -> None:
        """Analyse a block and publish what it completes. ``arrival``: ``time.perf_counter()``
        when it was read, the stand-in for capture times a source does not know."""
        if self.source.capture_time(0) is None:
            self._analyse_piece(block, arrival)
            return
        # A live input knows when each sample was captured: feed it up to each frame someone
        # waits for, so each hop and fast-lane frame is sent as soon as it is complete and a
        # hop is timed from the capture of its own last sample.
        mono_to_perf = time.perf_counter() - time.monotonic()
        i, n = 0, block.shape[0]
        while i < n:
            need = self.engine.input_needed(self._frames_wanted())
            # Up to that frame's last sample; the rest with it if it cannot complete another.
            j = n if n - i < need + self._frame_in_min else i + need
            end = min(n, i + need)
            captured = self.source.capture_time(end - 1)
            self._analyse_piece(block[i:j], arrival if captured is None
                                else captured + mono_to_perf)
            i = j

    def _frames_wanted(self) -> int:
        """Frames until the next one whose results go out: the hop's last, or the next
        fast-lane frame sent (every ``_fast_every``-th). With the fast lane at 25 Hz the loop
        wakes 25 times a second instead of 50; with it off, twice (at 0.5 s hops)."""
        k = self.engine.frames_to_hop
        if self.engine.fast_lane:
            k = min(k, self._fast_every - self._fast_count % self._fast_every)
        return k

    def _analyse_piece(self, block: np.ndarray, captured: float) -> None:
        step = self.engine.process(block, captured)
        for est in step.estimates:
            self._publish(est, captured)
        if step.fast:
            self._publish_fast(step.fast)
        if step.beats:
            self._publish_beats(step.beats)

    def _publish(self, est: HopEstimate, captured: float) -> None:
        """OSC first (the smoothed estimate's record), then the record for ZeroMQ, the web
        feed and the mappings, made once with ``latency_ms`` = now − ``captured``
        (``time.perf_counter()`` when the hop's last sample was captured, or read for sources
        that cannot tell): the delay until the hop's OSC bundle went out."""
        c = self.counters
        c.records += 1
        if self.osc is not None:
            self.osc.publish(self.engine.record(self.smoother(est), latency_since(captured)))
        rec = self.engine.record(est, latency_since(captured))
        if rec["stream"] == self.engine.streams[0].name:
            c.hops += 1
            c.latencies_ms.append(rec["latency_ms"])
        if self.osc is not None:
            for msg in self.mapper.process(rec):
                self.osc.send_values(msg.address, msg.values, msg.targets)
        if self.zmq is not None:
            self.zmq.publish_record(rec)
        if self.web is not None:
            self.web.publish_record(rec)

    def _publish_fast(self, fast: list[FastFrames]) -> None:
        n = len(fast[0].t)
        wall = time.time()
        every = self._fast_every
        for i in range(n):
            self._fast_count += 1
            if self._fast_count % every:  # not sent (only when every > 1): hold its onset
                for f in fast:
                    onset = float(f.values[i, ONSET_COLUMN])
                    if onset > self._onset_hold.get(f.stream, 0.0):
                        self._onset_hold[f.stream] = onset
                continue
            for f in fast:
                values = dict(zip(f.names, f.values[i].tolist(), strict=True))
                if every > 1:
                    values["onset"] = max(values["onset"], self._onset_hold.pop(f.stream, 0.0))
                if self.osc is not None:
                    self.osc.send_fast(f.stream, wall, values)
                if self.zmq is not None:
                    self.zmq.publish_fast(f.stream, wall, values, t=float(f.t[i]))
                if self.web is not None:
                    self.web.publish_fast(f.stream, wall, values, t=float(f.t[i]))

    def _publish_beats(self, beats: list[Beat]) -> None:
        """Each beat on OSC (``/beat i``, its own bundle) and ZeroMQ (``streamtag.beat``),
        stamped with its wall-clock time: now, shifted by how far the beat lies from the newest
        frame (a beat is reported in the frame it falls in, so by at most a frame)."""
        wall = time.time()
        newest = self.engine.stream_time_s
        for beat in beats:
            beat_wall = wall + (beat.t - newest)
            if self.osc is not None:
                self.osc.send_beat(beat.stream, beat_wall, beat.count)
            if self.zmq is not None:
                self.zmq.publish_beat(beat.stream, beat.t, beat_wall, beat.count, beat.bpm)

    def status(self) -> dict[str, Any]:
        src = self.source.counters()
        c = self.counters
        zmq_stats = self.zmq.stats if self.zmq is not None else {}
        web_stats = self.web.stats if self.web is not None else {}
        return {
            "uptime_s": round(time.monotonic() - self._started, 3),
            "hops": c.hops,
            "overflows": src.get("overflows", 0),
            "dropped": src.get("dropped_frames", 0) + int(zmq_stats.get("dropped", 0))
            + int(web_stats.get("dropped", 0)),
            "latency_ms": c.latency(),
            "checkpoint": self.checkpoint.id,
            "paused": self.paused,
            "input": {"status": self.source.status, **src,
                      "stream_time_s": round(self.source.stream_time_s, 3)},
            "reloads": c.reloads, "reloads_refused": c.reloads_refused,
            "references": (len(self.engine.matcher.names) if self.engine.matcher is not None
                           else None),
            "loop_errors": c.loop_errors,
            "osc": self.osc.stats if self.osc is not None else None,
            "zmq": zmq_stats or None,
            "control": self.control.stats if self.control is not None else None,
            "web": web_stats or None,
        }

    def _status(self) -> None:
        st = self.status()
        if st["input"]["status"] != self._last_source_status:
            self._last_source_status = st["input"]["status"]
            log.info("input: %s", self._last_source_status)
        if self.zmq is not None:
            self.zmq.publish_status(st)
        if self.web is not None:
            self.web.publish_status(st)

    def close(self) -> None:
        for part in (self.source, self.control, self.osc, self.zmq, getattr(self, "web", None)):
            if part is None:
                continue
            try:
                part.stop() if part is self.source else part.close()  # type: ignore[union-attr]
            except Exception as e:  # closing must close everything it can
                log.warning("closing %s: %s", type(part).__name__, e)


@dataclass
class _Prepared:
    """What a config and a checkpoint make: built off the loop, swapped in whole."""

    cfg: Config
    ck: Checkpoint
    engine: Engine
    mapper: Mapper
    smoother: EstimateSmoother
    manifest: dict
    fast_every: int  # send every n-th fast-lane frame
    frame_in_min: int  # fewest input samples between two frame ends [samples]


def _suppress_os_error() -> contextlib.AbstractContextManager:
    return contextlib.suppress(OSError, AttributeError)


def freeze_heap() -> None:
    """Collect garbage now, then move every object alive out of the collector's sight.

    What the daemon builds before its loop (torch, the model, the config) lives as long as the
    process; frozen, a full collection only walks what the loop allocates (with torch's
    objects tracked one took ~80 ms, a stalled hop).
    """
    gc.collect()
    gc.freeze()


def keep_restart_only(old: Config, new: Config) -> Config:
    """``new`` with the parts that only a restart can change (sockets, input) taken from ``old``."""
    osc = replace(new.outputs.osc, targets=old.outputs.osc.targets, prefix=old.outputs.osc.prefix,
                  max_datagram_bytes=old.outputs.osc.max_datagram_bytes)
    return replace(new, input=old.input, streams=old.streams, control=old.control,
                   outputs=replace(new.outputs, zmq=old.outputs.zmq, osc=osc,
                                   web=old.outputs.web, oscquery=old.outputs.oscquery))


def install_signal_handlers(daemon: Daemon) -> None:
    """SIGINT/SIGTERM stop the loop (it exits within its 50 ms read timeout); SIGHUP reloads."""
    def stop(signum: int, frame: object) -> None:
        daemon.stop()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda s, f: daemon.command("reload"))
