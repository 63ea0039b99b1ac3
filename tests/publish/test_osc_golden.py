"""Golden bytes for the hop bundle: a fixed record → exact datagram bytes.

The expected bytes come from :func:`spec_bundle`, an OSC 1.0 encoder written here from the
specification (not python-osc, not streamtag), fed with the address list of the README. The
stored copy in ``data/osc_hop_bundle.hex`` pins the format across changes; regenerate it with
``python -m tests.publish.test_osc_golden`` after a deliberate contract change.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

from pythonosc.osc_bundle import OscBundle

from streamtag.publish import osc

from .helpers import SAMPLE_RECORD

GOLDEN = Path(__file__).parent / "data" / "osc_hop_bundle.hex"

# The README's hop bundle for SAMPLE_RECORD, in order: emotion, instrument, timbre, level, silent.
EXPECTED_LAYOUT = [
    ("/streamtag/emotion", "ff"),
    ("/streamtag/emotion/valence", "f"),
    ("/streamtag/emotion/arousal", "f"),
    ("/streamtag/emotion/quadrant", "i"),
    ("/streamtag/instrument", "sf"),
    ("/streamtag/instrument/clarinet", "f"),
    ("/streamtag/instrument/tenor_saxophone", "f"),
    ("/streamtag/instrument/violin", "f"),
    ("/streamtag/timbre/brightness", "f"),
    ("/streamtag/timbre/warmth", "f"),
    ("/streamtag/timbre/roughness", "f"),
    ("/streamtag/timbre/sharpness", "f"),
    ("/streamtag/timbre/boominess", "f"),
    ("/streamtag/timbre/depth", "f"),
    ("/streamtag/timbre/hardness", "f"),
    ("/streamtag/level", "f"),
    ("/streamtag/silent", "i"),
]


def _osc_string(s: str) -> bytes:
    b = s.encode("utf-8") + b"\x00"
    return b + b"\x00" * (-len(b) % 4)


def _spec_message(address: str, types: str, args: list[Any]) -> bytes:
    out = _osc_string(address) + _osc_string("," + types)
    for t, v in zip(types, args, strict=True):
        out += {"f": lambda x: struct.pack(">f", x), "i": lambda x: struct.pack(">i", x),
                "s": _osc_string}[t](v)
    return out


def _spec_timetag(unix_s: float) -> bytes:
    # NTP: seconds since 1900 in the high 32 bits, binary fraction in the low 32.
    sec = math.floor(unix_s)
    return struct.pack(">II", sec + 2_208_988_800, round((unix_s - sec) * 2**32))


def spec_bundle(r: dict[str, Any]) -> bytes:
    """The hop bundle for record ``r`` per the README and OSC 1.0, prefix ``/streamtag``."""
    e, i, tb = r["emotion"], r["instrument"], r["timbre"]
    values: list[list[Any]] = [
        [e["valence"], e["arousal"]], [e["valence"]], [e["arousal"]], [e["quadrant"]],
        [i["top"], i["confidence"]], *[[p] for p in i["probs"].values()],
        *[[v] for v in tb.values()], [r["level_db"]], [int(r["silent"])],
    ]
    out = b"#bundle\x00" + _spec_timetag(r["wall"])
    for (address, types), args in zip(EXPECTED_LAYOUT, values, strict=True):
        msg = _spec_message(address, types, args)
        out += struct.pack(">i", len(msg)) + msg
    return out


def _hex_lines(data: bytes) -> str:
    return "\n".join(data[k:k + 16].hex(" ") for k in range(0, len(data), 16)) + "\n"


def test_hop_bundle_matches_the_specification_encoder() -> None:
    packet = osc.encode_record(SAMPLE_RECORD, "/streamtag", None)
    assert packet.dgram == spec_bundle(SAMPLE_RECORD)
    assert list(packet.messages) == EXPECTED_LAYOUT
    assert packet.nonfinite == 0


def test_hop_bundle_matches_the_stored_golden_bytes() -> None:
    stored = bytes.fromhex(GOLDEN.read_text().replace("\n", " "))
    assert osc.encode_record(SAMPLE_RECORD, "/streamtag", None).dgram == stored


def test_hop_bundle_parses_back_with_python_osc() -> None:
    bundle = OscBundle(osc.encode_record(SAMPLE_RECORD, "/streamtag", None).dgram)
    assert bundle.timestamp == SAMPLE_RECORD["wall"]
    msgs = list(bundle)
    assert [m.address for m in msgs] == [a for a, _ in EXPECTED_LAYOUT]
    assert msgs[0].params == [struct.unpack(">f", struct.pack(">f", x))[0] for x in (0.41, -0.12)]
    assert msgs[4].params[0] == "violin"


def test_profiles_match_the_specification_encoder() -> None:
    """plain: the bundle's elements, byte for byte, one datagram each; touchdesigner: the
    same but ``instrument if``; wekinator: Wekinator's documented input, one ``/wek/inputs``
    message of N float32; the manifest: ``iis`` parts."""
    elements = _spec_elements(spec_bundle(SAMPLE_RECORD))
    plain = osc.encode_record_plain(SAMPLE_RECORD, "/streamtag", None)
    assert list(plain.dgrams) == elements
    touch = osc.encode_record_plain(SAMPLE_RECORD, "/streamtag", None, numbers_only=True,
                                    classes=["clarinet", "tenor saxophone", "violin"])
    k = EXPECTED_LAYOUT.index(("/streamtag/instrument", "sf"))
    assert list(touch.dgrams) == [
        *elements[:k], _spec_message("/streamtag/instrument", "if", [2, 0.83]),
        *elements[k + 1:]]
    wek = osc.encode_wekinator(SAMPLE_RECORD, ["timbre.warmth", "level_db", "silent"])
    assert wek is not None
    assert wek.dgram == _spec_message("/wek/inputs", "fff", [0.40, -18.3, 0.0])
    parts = osc.encode_manifest({"a": "é"}, "/st", 64)
    assert parts == [_spec_message("/st/manifest", "iis", [0, 1, '{"a":"\\u00e9"}'])]


def _spec_elements(bundle: bytes) -> list[bytes]:
    out, at = [], 16
    while at < len(bundle):
        (n,) = struct.unpack_from(">i", bundle, at)
        out.append(bundle[at + 4 : at + 4 + n])
        at += 4 + n
    return out


def main() -> None:
    """Regenerate the stored golden file from the specification encoder."""
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(_hex_lines(spec_bundle(SAMPLE_RECORD)))
    print(f"wrote {GOLDEN}")


if __name__ == "__main__":
    main()
