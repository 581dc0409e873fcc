"""ITCH 5.0 message decoding and encoding, driven by the tables in `hdl.formats`.

A decoded message is a plain dict: the common header fields (`type` as a one-letter str,
`locate`, `tracking`, `timestamp`) and the body fields of its type, every body field an int
(text fields are big-endian ASCII integers, exactly as the gateware holds them).
"""

import struct
from typing import Any

from hdl.formats import ITCH_BODIES, ITCH_HEADER, ITCH_LENGTHS

__all__ = ["decode", "encode", "text", "as_int"]

Message = dict[str, Any]


def _offsets(fields: tuple[tuple[str, int], ...], start: int) -> list[tuple[str, int, int]]:
    out, pos = [], start
    for name, size in fields:
        out.append((name, pos, size))
        pos += size
    return out


_HEADER = _offsets(ITCH_HEADER, 0)
_BODY = {t: _offsets(f, sum(n for _, n in ITCH_HEADER)) for t, f in ITCH_BODIES.items()}


# One precompiled `struct` per type is what makes the model fast enough to replay a million
# messages in seconds. `struct` has no 6-byte integer, so the timestamp is read as u16 + u32.
def _compile(kind: str) -> tuple[struct.Struct, tuple[str, ...]]:
    codes = {1: "B", 2: "H", 4: "I", 8: "Q", 6: "HI"}
    fmt = ">" + "".join(codes[size] for _, size in (*ITCH_HEADER[1:], *ITCH_BODIES[kind]))
    names = tuple(name for name, _ in (*ITCH_HEADER[1:], *ITCH_BODIES[kind]))
    return struct.Struct(fmt), names


_STRUCTS = {kind: _compile(kind) for kind in ITCH_BODIES}
_TS = [name for name, _ in ITCH_HEADER].index("timestamp") - 1  # position among the values


def decode(msg: bytes | memoryview, offset: int = 0) -> Message:
    """Decode the message of a decoded type (see `ITCH_BODIES`) starting at msg[offset]."""
    kind = chr(msg[offset])
    if kind not in _STRUCTS or len(msg) - offset < ITCH_LENGTHS[kind]:
        raise ValueError(f"cannot decode a {len(msg) - offset}-byte message of type {kind!r}")
    layout, names = _STRUCTS[kind]
    values = list(layout.unpack_from(msg, offset + 1))
    values[_TS:_TS + 2] = [(values[_TS] << 32) | values[_TS + 1]]
    out: Message = dict(zip(names, values, strict=True))
    out["type"] = kind
    return out


def encode(fields: Message) -> bytes:
    """Inverse of `decode`: missing fields are 0; text fields may be given as str."""
    kind = fields["type"]
    out = bytearray(ITCH_LENGTHS[kind])
    out[0] = ord(kind)
    for name, pos, size in _HEADER[1:] + _BODY[kind]:
        out[pos:pos + size] = as_int(fields.get(name, 0), size).to_bytes(size, "big")
    return bytes(out)


def as_int(value: int | str | bytes, size: int) -> int:
    """A field value as the integer the wire carries: str/bytes are left-aligned, space-padded."""
    if isinstance(value, str):
        value = value.encode("ascii")
    if isinstance(value, bytes):
        if len(value) > size:
            raise ValueError(f"{value!r} is longer than its {size}-byte field")
        return int.from_bytes(value.ljust(size, b" "), "big")
    return value


def text(value: int, size: int = 8) -> str:
    """A text field back as str, trailing spaces removed."""
    return value.to_bytes(size, "big").decode("ascii", "replace").rstrip(" ")
