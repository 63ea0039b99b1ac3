"""The only code in streamtag that talks to PortAudio; it runs in a child, never in the daemon.

Why a child process: PortAudio 19.6 (Debian's ``libportaudio2``) cannot recover in-process from
a JACK server that went away. Measured here:

* ``Pa_StopStream``/``Pa_AbortStream``/``Pa_CloseStream`` on a stream whose server died wait
  10 minutes for a JACK callback that never comes (``WaitCondition`` in ``pa_jack.c``);
* ``Pa_Terminate`` (``sounddevice._terminate()``), the only way to rescan devices, aborts the
  whole process with ``pa_jack.c: Terminate: Assertion `err == 0' failed`` once the server is
  gone, even with no stream open; sounddevice's own exit handler calls it too.

So every device scan and every capture stream lives in a short-lived child: a new child is a
fresh PortAudio scan, and a wedged or dead one is simply killed. The child leaves with
``os._exit`` so PortAudio's teardown never runs where it could hang or abort.

Run as ``python _portaudio_worker.py list`` (prints the scan as JSON on stdout) or
``python _portaudio_worker.py capture CONFIG_JSON``. This file imports nothing from streamtag,
so the child starts in ~0.15 s whatever the rest of the package pulls in. The child is started
as a fresh interpreter (``subprocess``: the "spawn" way, the one start method every system
has). ``multiprocessing``'s own spawn would re-import the daemon's ``__main__`` (torch, the
model) in the child first; a plain script does not.

Transport (the same on Linux, macOS and Windows: nothing here needs a Unix socket):

* **Audio** goes through a ``multiprocessing.shared_memory`` block the parent creates and names
  in ``CONFIG["shm"]``: a single-producer/single-consumer ring (layout below). The PortAudio
  callback copies each block into it and publishes its frame counter after the copy; the parent
  copies out and publishes its own counter after its copy. Neither side locks; the child drops
  the newest frames when the ring is full (the parent fell behind) and counts them.
* **Capture times**: a table beside the samples holds, per PortAudio block, the ring position
  just past its last frame and ``time.monotonic()`` [s] when PortAudio handed it to our callback
  (one clock for every process on the machine): the moment its last sample became available.
* **Wake-ups** go over the child's stdout pipe, one ``.`` byte, and only when the frame counter
  reaches the ``WANTED`` target the parent wrote into the header ("I have nothing to do before
  frame N"): the parent sleeps through the blocks in between instead of being woken for each
  PortAudio period. Besides those bytes, stdout carries ``R{json}\n`` (ready) and
  ``E{message}\n`` (failure). The real fd 1 is redirected to stderr first, so nothing a library
  prints can corrupt it.
* **Control** comes on stdin: ``S\n`` asks for a clean stop. End of file without it means the
  parent is gone (whatever killed it, on every system): the child leaves at once.

Shared-memory layout (native byte order): ``HEADER_SLOTS`` int64 (indices ``H_*``), then
``table`` int64 block ends, ``table`` float64 block times, then ``capacity × channels`` float32
interleaved samples. Frame counters count from the ring's creation and carry on across
children (a restarted child continues where the last one stopped); ``H_INPUT_OVERFLOWS``
[events], ``H_OVERFLOWS`` [events] and ``H_DROPPED`` [frames] are cumulative too.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import socket
import sys
import threading
import time
from typing import Any, NoReturn

#: int64 slots at the start of the shared block; the H_* constants index them.
HEADER_SLOTS = 16
H_MAGIC = 0  # MAGIC, written by the parent: the child checks it is reading our layout
H_WRITTEN = 1  # frames written since the ring was created (child; after the copy)
H_READ = 2  # frames read (parent; after its copy)
H_WANTED = 3  # parent: wake me once H_WRITTEN reaches this [frames]
H_BLOCKS = 4  # blocks entered in the time table since creation (child)
H_INPUT_OVERFLOWS = 5  # PortAudio input overflows [events] (child, cumulative)
H_OVERFLOWS = 6  # blocks that did not fit (ring full) [events] (child, cumulative)
H_DROPPED = 7  # frames that did not fit [frames] (child, cumulative)
H_CAPACITY = 8  # ring size [frames] (parent)
H_CHANNELS = 9  # channels per frame (parent)
H_TABLE = 10  # entries of the block time table (parent)
MAGIC = 0x53544147_52494E47  # "STAGRING"
WAKE = b"."
READY = b"R"
ERROR = b"E"
STOP = b"S\n"


def layout(capacity: int, channels: int, table: int) -> tuple[int, int, int, int]:
    """Byte offsets of the block ends, the block times and the samples, and the total size
    [bytes] of a shared ring of ``capacity`` frames × ``channels`` with ``table`` block entries."""
    ends = 8 * HEADER_SLOTS
    times = ends + 8 * table
    samples = times + 8 * table
    return ends, times, samples, samples + 4 * capacity * channels


def attach(name: str) -> Any:
    """Open the parent's shared block without handing it to a resource tracker: the parent owns
    (and unlinks) it; a tracker of the child's would unlink it when the child exits (Python
    < 3.13 registers every attach)."""
    from multiprocessing import resource_tracker, shared_memory

    if sys.version_info >= (3, 13):
        return shared_memory.SharedMemory(name, track=False)
    register = resource_tracker.register
    resource_tracker.register = lambda *args, **kwargs: None  # type: ignore[assignment]
    try:
        return shared_memory.SharedMemory(name)
    finally:
        resource_tracker.register = register  # type: ignore[assignment]


EXIT_OK = 0
EXIT_NO_PORTAUDIO = 2
EXIT_FAILED = 3

# PaJack_SetClientName keeps the pointer it is given: the buffer must outlive PortAudio.
_client_name_buffer: ctypes.Array[ctypes.c_char] | None = None


def _set_jack_client_name(name: str) -> None:
    """Name the JACK client PortAudio creates; must run before sounddevice is imported."""
    global _client_name_buffer
    libname = ctypes.util.find_library("portaudio")
    if libname is None:
        return
    try:
        lib = ctypes.CDLL(libname)
        set_name = lib.PaJack_SetClientName
    except (OSError, AttributeError):
        return  # no PortAudio here, or one built without JACK: nothing to name
    _client_name_buffer = ctypes.create_string_buffer(name.encode())
    set_name.argtypes = [ctypes.c_char_p]
    set_name(_client_name_buffer)


def _import_sounddevice(client_name: str | None) -> Any:
    if client_name:
        _set_jack_client_name(client_name)
    import sounddevice

    return sounddevice


def scan(sd: Any) -> dict[str, Any]:
    """The devices with inputs, as plain data: ``{"devices": [...], "default_input": int|None}``."""
    host_apis = [h["name"] for h in sd.query_hostapis()]
    devices = []
    for d in sd.query_devices():
        if d["max_input_channels"] <= 0:
            continue
        devices.append(
            {
                "index": int(d["index"]),
                "name": str(d["name"]),
                "max_input_channels": int(d["max_input_channels"]),
                "default_sample_rate_hz": float(d["default_samplerate"]),
                "host_api": host_apis[d["hostapi"]],
            }
        )
    try:
        default_input: int | None = int(sd.query_devices(kind="input")["index"])
    except Exception:  # PortAudio reports "no default input" in several ways
        default_input = None
    return {"devices": devices, "default_input": default_input}


def _exit(code: int) -> NoReturn:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _close_portaudio(sd: Any) -> None:
    """Close our JACK client properly while the server is alive, so the server does not wait
    seconds for a client that vanished. (If the server died, this aborts the process: callers
    only use it on paths where that costs nothing.)"""
    sd._terminate()


def main_list(client_name: str | None) -> None:
    try:
        sd = _import_sounddevice(client_name)
    except OSError as exc:
        print(json.dumps({"error": str(exc)}))
        _exit(EXIT_NO_PORTAUDIO)
    print(json.dumps(scan(sd)), flush=True)
    _close_portaudio(sd)
    _exit(EXIT_OK)


def _find_device(sd: Any, cfg: dict[str, Any]) -> int:
    """The index of the device named ``cfg["device_name"]`` in this (fresh) scan."""
    found = scan(sd)["devices"]
    name, host_api, hint = cfg["device_name"], cfg["host_api"], cfg.get("index_hint")
    same = [d for d in found if d["name"] == name and d["host_api"] == host_api]
    if not same:
        same = [d for d in found if d["name"] == name]
    if not same:
        listing = "; ".join(f"{d['index']}: {d['name']} ({d['host_api']})" for d in found)
        raise LookupError(
            f"input device '{name}' ({host_api}) is not available"
            + (f"; inputs now: {listing}" if listing else "; no input devices now")
        )
    for d in same:
        if d["index"] == hint:
            return hint
    return int(same[0]["index"])


def main_capture(cfg: dict[str, Any]) -> None:
    # Our messages go to the parent on the stdout pipe; stray prints from libraries to stderr.
    out_fd = os.dup(1)
    os.dup2(2, 1)
    try:
        os.set_blocking(out_fd, False)  # a stuck parent must not hang us
    except (OSError, AttributeError):
        pass  # (Windows before Python 3.12) only two short messages ever go this way

    def send(kind: bytes, text: str) -> None:
        data = kind + text.replace("\n", " ").encode()[:4000] + b"\n"
        deadline = time.monotonic() + 1.0
        while data and time.monotonic() < deadline:
            try:
                data = data[os.write(out_fd, data):]
            except BlockingIOError:
                time.sleep(0.01)

    def fail(message: str) -> NoReturn:
        try:
            send(ERROR, message)
        except OSError:
            pass  # the parent is gone
        _exit(EXIT_FAILED)

    try:
        shm = attach(cfg["shm"])
    except (OSError, ValueError) as exc:
        fail(f"cannot open the capture buffer shared with the daemon: {exc}")
    head = shm.buf[: 8 * HEADER_SLOTS].cast("q")
    if head[H_MAGIC] != MAGIC:
        fail("the capture buffer shared with the daemon has an unknown layout")
    capacity, channels, table = head[H_CAPACITY], head[H_CHANNELS], head[H_TABLE]
    ends_at, times_at, samples_at, size = layout(capacity, channels, table)
    ends = shm.buf[ends_at:times_at].cast("q")
    times = shm.buf[times_at:samples_at].cast("d")
    samples = shm.buf[samples_at:size]
    frame_bytes = 4 * channels
    if channels != int(cfg["channels"]):
        fail(f"the capture buffer holds {channels} channels, not {cfg['channels']}")

    try:
        sd = _import_sounddevice(cfg.get("client_name"))
    except OSError as exc:
        fail(f"PortAudio is not available ({exc}); install the libportaudio2 package")
    try:
        index = _find_device(sd, cfg)
    except LookupError as exc:
        fail(str(exc))
    except Exception as exc:  # any PortAudio failure is reported, not raised
        fail(f"device scan failed: {exc}")

    notified = [head[H_WANTED]]  # the last target we woke the parent for (this child)
    wake = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    wake.connect(("127.0.0.1", int(cfg["wake_port"])))
    wake.setblocking(False)  # never block the audio thread

    def callback(indata: Any, frames: int, time_info: Any, status: Any) -> None:
        # PortAudio's audio thread: copy, publish, maybe write one byte; nothing that blocks.
        now = time.monotonic()
        try:
            if status.input_overflow:
                head[H_INPUT_OVERFLOWS] += 1
            written = head[H_WRITTEN]
            k = min(frames, capacity - (written - head[H_READ]))
            if k < frames:  # the parent fell behind: drop the newest, never unread frames
                head[H_OVERFLOWS] += 1
                head[H_DROPPED] += frames - k
            if k > 0:
                data = memoryview(indata).cast("B")
                start = written % capacity
                first = min(k, capacity - start) * frame_bytes
                at = start * frame_bytes
                samples[at : at + first] = data[:first]
                if k * frame_bytes > first:
                    samples[: k * frame_bytes - first] = data[first : k * frame_bytes]
                block = head[H_BLOCKS]
                ends[block % table] = written + k
                times[block % table] = now
                head[H_BLOCKS] = block + 1
                written += k
                head[H_WRITTEN] = written  # publish only after the copy and its time
            wanted = head[H_WANTED]
            if written >= wanted and wanted != notified[0]:
                notified[0] = wanted
                wake.send(WAKE)
        except Exception:  # the parent is gone (or its pipe is full): it notices on its own
            pass

    rate = int(cfg["sample_rate_hz"])
    try:
        stream = sd.RawInputStream(
            device=index,
            channels=channels,
            samplerate=rate,
            blocksize=int(cfg["blocksize"]),
            dtype="float32",
            callback=callback,
        )
        stream.start()
    except Exception as exc:  # sounddevice raises PortAudioError, ValueError, ...
        native = sd.query_devices(index)["default_samplerate"]
        fail(
            f"cannot open '{cfg['device_name']}' with {cfg['channels']} channel(s) at {rate} Hz "
            f"(its native rate is {native:g} Hz): {exc}"
        )
    ready = {"index": index, "name": cfg["device_name"], "latency_s": float(stream.latency)}
    try:
        send(READY, json.dumps(ready))
    except OSError:
        _exit(EXIT_OK)  # the parent is gone

    # stdin: b"S\n" is a clean stop; end of file without it, a parent that is gone.
    asked = threading.Event()
    closed = threading.Event()

    def control() -> None:
        try:
            for line in sys.stdin.buffer:
                if line.startswith(STOP[:1]):
                    asked.set()
                    break
        except (OSError, ValueError):
            pass
        closed.set()

    threading.Thread(target=control, name="control", daemon=True).start()
    # Look after the stream 5 times a second; nothing else wakes this thread.
    while not closed.wait(0.2):
        if not stream.active:
            fail(
                "the audio stream stopped by itself (device unplugged, or the audio server "
                "such as JACK went away)"
            )
    if not asked.is_set():
        _exit(EXIT_OK)  # the parent died: do not wait for anything
    # A healthy stream stops cleanly; if this hangs, the parent kills us.
    stream.stop()
    stream.close()
    _close_portaudio(sd)
    _exit(EXIT_OK)


def main(argv: list[str]) -> None:
    if len(argv) >= 1 and argv[0] == "list":
        main_list(argv[1] if len(argv) > 1 else None)
    elif len(argv) == 2 and argv[0] == "capture":
        main_capture(json.loads(argv[1]))
    else:
        print("usage: _portaudio_worker.py list [CLIENT] | capture CONFIG_JSON", file=sys.stderr)
        _exit(64)


if __name__ == "__main__":
    main(sys.argv[1:])
