"""ControlServer over real UDP: commands reach the handlers, describe answers the sender with
the manifest, and garbage, unknown addresses and failing handlers are counted, never fatal."""

from __future__ import annotations

import json
import queue
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import build_msg

from streamtag.errors import ConfigError
from streamtag.publish import wire
from streamtag.publish.control import ControlServer

from .helpers import FULL_HEADS, HEADS

MANIFEST = wire.build_manifest(HEADS, "/streamtag", ["main"], wire.FAST_NAMES, 50.0)


class Daemon:
    """Stands in for the daemon's side: records which handler ran, on a queue."""

    def __init__(self) -> None:
        self.calls: queue.Queue[str] = queue.Queue()

    def handler(self, name: str) -> Callable[[], object]:
        def run() -> object:
            self.calls.put(name)
            return MANIFEST if name == "describe" else None

        return run

    def next_call(self) -> str:
        return self.calls.get(timeout=2.0)


@pytest.fixture
def daemon() -> Daemon:
    return Daemon()


@pytest.fixture
def server(daemon: Daemon) -> Iterator[ControlServer]:
    handlers = {c: daemon.handler(c) for c in wire.CONTROL_COMMANDS}
    with ControlServer("127.0.0.1", 0, "/streamtag", handlers) as s:
        yield s


@pytest.fixture
def client() -> Iterator[socket.socket]:
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.bind(("127.0.0.1", 0))
    c.settimeout(2.0)
    yield c
    c.close()


def _send(client: socket.socket, server: ControlServer, address: str, *args: object) -> None:
    client.sendto(build_msg(address, list(args)).dgram, server.address)


def test_each_command_calls_its_handler(
    server: ControlServer, daemon: Daemon, client: socket.socket
) -> None:
    for command in ("reset", "pause", "resume", "reload"):
        _send(client, server, f"/streamtag/control/{command}")
        assert daemon.next_call() == command
    _send(client, server, "/streamtag/control/reset", 1)  # arguments are ignored
    assert daemon.next_call() == "reset"
    stats = server.stats
    assert (stats["reset"], stats["pause"], stats["resume"], stats["reload"]) == (2, 1, 1, 1)


def _receive_manifest(client: socket.socket, expected_from: object) -> tuple[dict, list[int]]:
    """Reassemble a manifest reply as a client written from the README would: parts by index
    until all ``count`` are there, then join and parse. Returns (manifest, datagram sizes)."""
    pieces: dict[int, str] = {}
    sizes: list[int] = []
    count = None
    while count is None or len(pieces) < count:
        data, sender = client.recvfrom(65535)
        assert sender == expected_from
        sizes.append(len(data))
        reply = OscMessage(data)
        assert reply.address == "/streamtag/manifest"
        part, n, piece = reply.params
        assert isinstance(part, int) and isinstance(n, int) and isinstance(piece, str)
        assert count in (None, n)
        count = n
        pieces[part] = piece
    assert sorted(pieces) == list(range(count))
    return json.loads("".join(pieces[k] for k in range(count))), sizes


def test_describe_replies_to_the_sender_with_the_manifest_as_json(
    server: ControlServer, daemon: Daemon, client: socket.socket
) -> None:
    _send(client, server, "/streamtag/control/describe")
    manifest, sizes = _receive_manifest(client, server.address)
    assert manifest == MANIFEST
    assert max(sizes) <= 1472
    assert daemon.next_call() == "describe"


def test_a_four_stream_manifest_arrives_in_datagrams_within_the_size_rule(
    client: socket.socket
) -> None:
    """53 KB of manifest (four streams of the full address space) used to go out as one
    datagram, past UDP's 65,507-byte limit with a few more streams; now in parts of at most
    ``max_datagram_bytes`` that the client joins back."""
    manifest = wire.build_manifest(FULL_HEADS, "/streamtag", ["a", "b", "c", "d"],
                                   wire.FAST_NAMES, 50.0, projection=True,
                                   references=[f"ref {k} é" for k in range(20)])
    assert len(json.dumps(manifest)) > 30_000
    for limit in (1472, 512):
        with ControlServer("127.0.0.1", 0, "/streamtag", {"describe": lambda: manifest},
                           max_datagram_bytes=limit) as srv:
            _send(client, srv, "/streamtag/control/describe")
            got, sizes = _receive_manifest(client, srv.address)
        assert got == manifest  # non-ASCII names survive (sent as \\u escapes)
        assert max(sizes) <= limit
        assert len(sizes) >= len(json.dumps(manifest)) // limit


def test_garbage_and_unknown_addresses_are_counted_and_ignored(
    server: ControlServer, daemon: Daemon, client: socket.socket
) -> None:
    garbage = [b"", b"\x00\x01\x02garbage", b"\xff\xfe/x", b"#bundle\x00\x00\x00",
               b"/streamtag/control/reset",  # no terminator, no type tags
               b"/x\x00\x00,i\x00\x00\x01", b"/x\x00\x00,s\x00\x00abc"]  # truncated arguments
    for data in garbage:
        client.sendto(data, server.address)
    _send(client, server, "/streamtag/control/explode")
    _send(client, server, "/other/control/reset")
    _send(client, server, "/streamtag/control/pause")  # still served afterwards
    assert daemon.next_call() == "pause"
    stats = server.stats
    assert stats["malformed"] == len(garbage)
    assert stats["unknown"] == 2
    assert stats["received"] == len(garbage) + 3


def test_a_failing_handler_is_counted_and_the_port_keeps_serving(
    daemon: Daemon, client: socket.socket
) -> None:
    def broken() -> object:
        raise RuntimeError("checkpoint vanished")

    handlers = {"reload": broken, "pause": daemon.handler("pause")}
    with ControlServer("127.0.0.1", 0, "/st", handlers) as srv:
        _send(client, srv, "/st/control/reload")
        _send(client, srv, "/st/control/resume")  # no handler: unknown
        _send(client, srv, "/st/control/pause")
        assert daemon.next_call() == "pause"
        assert srv.stats["handler_errors"] == 1
        assert srv.stats["unknown"] == 1


@pytest.mark.skipif(shutil.which("oscsend") is None, reason="oscsend (liblo-tools) missing")
def test_oscsend_from_liblo_drives_the_control_port(server: ControlServer, daemon: Daemon) -> None:
    host, port = server.address
    subprocess.run(["oscsend", host, str(port), "/streamtag/control/pause"], check=True,
                   timeout=5)
    assert daemon.next_call() == "pause"


def test_port_in_use_is_a_config_error_naming_it(server: ControlServer) -> None:
    host, port = server.address
    with pytest.raises(ConfigError, match=f"{host}:{port}"):
        ControlServer(host, port, "/streamtag", {})


def test_unknown_handler_name_is_refused() -> None:
    with pytest.raises(ValueError, match="explode"):
        ControlServer("127.0.0.1", 0, "/streamtag", {"explode": lambda: None})


def test_close_is_prompt_and_idempotent(daemon: Daemon) -> None:
    srv = ControlServer("127.0.0.1", 0, "/streamtag", {"reset": daemon.handler("reset")})
    start = time.monotonic()
    srv.close()
    srv.close()
    assert time.monotonic() - start < 1.0
