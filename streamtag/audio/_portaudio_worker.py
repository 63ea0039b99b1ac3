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
``python _portaudio_worker.py capture CONFIG_JSON`` (streams audio to the parent over an
``AF_UNIX``/``SOCK_SEQPACKET`` socket inherited as ``CONFIG["fd"]``). This file imports nothing
from streamtag, so the child starts in ~0.15 s whatever the rest of the package pulls in.

Wire format, one message per packet: ``HEADER`` (kind, frames, input_overflows,
dropped_frames, blocks, 0), then for ``KIND_AUDIO`` a table of the ``blocks`` PortAudio blocks
the packet holds (``blocks`` float64 capture times, then ``blocks`` uint32 frame counts) and
``frames × channels`` interleaved float32 samples; for ``KIND_READY`` a UTF-8 JSON object, for
``KIND_ERROR`` a UTF-8 message. ``input_overflows`` [events] and ``dropped_frames`` [frames] are
cumulative over the child's life. A block's capture time is ``time.monotonic()`` [s] (one
clock for every process on the machine) when PortAudio handed the block to our callback: the
moment its last sample became available to software.

Batching (why: one packet per 5 ms block woke two threads of the daemon ~190 times a second,
while the analysis only has work when a 20 ms frame completes). By default every block is sent
at once. The parent may send ``NEED`` (kind ``KIND_NEED``, target): "I have nothing to do until
your sent frames reach ``target`` (counted over this child's life)". Until then blocks are held
and sent together, at the latest in the callback that reaches the target, so the sample the
parent waits for is sent exactly when it would have been without batching. Once the target is
reached, blocks go out one by one again until the next ``NEED``; at most ``max_batch_frames``
frames or ``MAX_BLOCKS`` blocks are ever held.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import select
import socket
import struct
import sys
import time
from typing import Any, NoReturn

HEADER = struct.Struct("<IIQQII")
KIND_AUDIO = 1
KIND_READY = 2
KIND_ERROR = 3
KIND_STOP = 4  # parent → child
KIND_NEED = 5  # parent → child: HEADER with the target [frames] in the dropped_frames field
#: Most PortAudio blocks one packet holds (bounds the timing table).
MAX_BLOCKS = 64


def table_bytes(blocks: int) -> int:
    """Size [bytes] of the timing table of a packet of ``blocks`` blocks (float64 + uint32)."""
    return 12 * blocks

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
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, fileno=int(cfg["fd"]))
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, int(cfg["sndbuf_bytes"]))
    except OSError:
        pass  # the kernel keeps its default; the parent only drains more often

    def fail(message: str) -> NoReturn:
        try:
            sock.send(HEADER.pack(KIND_ERROR, 0, 0, 0, 0, 0) + message.encode()[:4000])
        except OSError:
            pass
        _exit(EXIT_FAILED)

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

    channels = int(cfg["channels"])
    frame_bytes = 4 * channels
    max_batch = max(1, int(cfg.get("max_batch_frames", 0)) or 1)
    # The packet being gathered: header and timing table, then the samples (preallocated: the
    # callback allocates nothing).
    head = bytearray(HEADER.size + table_bytes(MAX_BLOCKS))
    samples = bytearray(max_batch * frame_bytes)
    sample_view = memoryview(samples)
    times = [0.0] * MAX_BLOCKS
    sizes = [0] * MAX_BLOCKS
    # [input overflows reported by PortAudio, frames the parent was too slow to take,
    #  frames sent, blocks held, frames held, the parent's NEED target (frames sent)]
    counts = [0, 0, 0, 0, 0, 0]
    tables = [struct.Struct(f"<{n}d{n}I") for n in range(MAX_BLOCKS + 1)]

    def flush() -> None:
        n, frames = counts[3], counts[4]
        counts[3] = counts[4] = 0
        HEADER.pack_into(head, 0, KIND_AUDIO, frames, counts[0], counts[1], n, 0)
        tables[n].pack_into(head, HEADER.size, *times[:n], *sizes[:n])
        try:
            sock.sendmsg((memoryview(head)[: HEADER.size + table_bytes(n)],
                          sample_view[: frames * frame_bytes]), (), socket.MSG_DONTWAIT)
            counts[2] += frames
        except BlockingIOError:
            counts[1] += frames
        except Exception:  # the parent is gone; the main loop notices
            counts[1] += frames

    def callback(indata: Any, frames: int, time_info: Any, status: Any) -> None:
        # Runs in PortAudio's audio thread: copy, maybe send without blocking, count; nothing else.
        now = time.monotonic()
        try:
            if status.input_overflow:
                counts[0] += 1
            if counts[4] + frames > max_batch or counts[3] == MAX_BLOCKS:
                flush()  # the held blocks first: never reorder, never exceed the buffers
            if frames > max_batch:  # a block larger than the buffer (host-chosen size): alone
                HEADER.pack_into(head, 0, KIND_AUDIO, frames, counts[0], counts[1], 1, 0)
                tables[1].pack_into(head, HEADER.size, now, frames)
                sock.sendmsg((memoryview(head)[: HEADER.size + table_bytes(1)], indata), (),
                             socket.MSG_DONTWAIT)
                counts[2] += frames
                return
            at = counts[4] * frame_bytes
            sample_view[at : at + frames * frame_bytes] = indata
            times[counts[3]] = now
            sizes[counts[3]] = frames
            counts[3] += 1
            counts[4] += frames
            if counts[2] + counts[4] >= counts[5]:  # the parent waits for these (or no NEED)
                flush()
        except BlockingIOError:
            counts[1] += frames
        except Exception:  # the parent is gone; the main loop notices
            counts[1] += frames

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
        sock.send(HEADER.pack(KIND_READY, 0, 0, 0, 0, 0) + json.dumps(ready).encode())
    except OSError:
        _exit(EXIT_OK)  # the parent is gone

    parent = os.getppid()
    next_check = time.monotonic() + 0.1
    while True:
        readable, _, _ = select.select([sock], [], [], 0.1)
        if readable:
            try:
                msg = sock.recv(64, socket.MSG_DONTWAIT)
            except BlockingIOError:
                msg = b"\x00"
            except OSError:
                msg = b""
            kind = struct.unpack_from("<I", msg)[0] if len(msg) >= 4 else 0
            if not msg or kind == KIND_STOP:
                break
            if kind == KIND_NEED and len(msg) >= HEADER.size:
                # Read by the callback; an int store is atomic under the GIL.
                counts[5] = HEADER.unpack_from(msg)[3]
        # NEED arrives ~50 times a second: look after the parent and the stream less often.
        if readable and time.monotonic() < next_check:
            continue
        next_check = time.monotonic() + 0.1
        if os.getppid() != parent:
            _exit(EXIT_OK)
        if not stream.active:
            fail(
                "the audio stream stopped by itself (device unplugged, or the audio server "
                "such as JACK went away)"
            )
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
