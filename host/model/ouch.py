"""OUCH 5.0 Enter Order: the bytes the card's order builder sends, and their decoding.

The layout is `hdl.formats.OUCH_ENTER_ORDER` (one table for the model and the gateware); the
test decodes the real EnterOrderMessage capture and re-encodes it byte for byte. Over
SoupBinTCP (and in our UDP frames, so they match the capture's TCP payload) a message is framed
as an unsequenced data packet: u16 length (type byte included), 'U', message.

ClOrdID is derived from UserRefNum, as the tick-to-trade issue asks: "TK" and the UserRefNum in
8 upper-case hex digits, space padded to 14 (hex, not decimal: a nibble to ASCII is one small
table in gateware, a binary-to-decimal conversion is not).
"""

from typing import Any

from hdl.formats import OUCH_ENTER_ORDER, OUCH_ENTER_ORDER_LEN, SOUPBIN_UNSEQUENCED

__all__ = ["encode_enter_order", "decode_enter_order", "cl_ord_id", "soupbin_unsequenced",
           "TEXT_FIELDS"]

# Fields carried as ASCII text rather than integers.
TEXT_FIELDS = ("type", "side", "symbol", "time_in_force", "display", "capacity",
               "intermarket_sweep", "cross_type", "cl_ord_id")


def cl_ord_id(user_ref: int) -> str:
    return f"TK{user_ref:08X}".ljust(14)


def encode_enter_order(fields: dict[str, Any], appendage: bytes = b"") -> bytes:
    """The message: every field of OUCH_ENTER_ORDER from `fields` (text fields as str, padded
    with spaces; `type` defaults to "O", `appendage_length` to len(appendage)), then appendage."""
    out = bytearray()
    for name, size in OUCH_ENTER_ORDER:
        value = fields.get(name, {"type": "O", "appendage_length": len(appendage)}.get(name))
        if value is None:
            raise ValueError(f"OUCH Enter Order field {name!r} is missing")
        if name in TEXT_FIELDS:
            text = str(value).encode("ascii")
            if len(text) > size:
                raise ValueError(f"OUCH field {name!r} takes at most {size} characters, not "
                                 f"{len(text)} ({value!r})")
            out += text.ljust(size)
        else:
            out += int(value).to_bytes(size, "big")
    return bytes(out) + appendage


def decode_enter_order(msg: bytes) -> tuple[dict[str, Any], bytes]:
    """(fields, appendage) of an Enter Order message; ValueError if it is not one."""
    if len(msg) < OUCH_ENTER_ORDER_LEN or msg[:1] != b"O":
        raise ValueError(f"not an OUCH 5.0 Enter Order: {msg[:8].hex()}...")
    fields: dict[str, Any] = {}
    at = 0
    for name, size in OUCH_ENTER_ORDER:
        raw = msg[at:at + size]
        fields[name] = raw.decode("ascii") if name in TEXT_FIELDS else int.from_bytes(raw, "big")
        at += size
    appendage = msg[at:]
    if len(appendage) != fields["appendage_length"]:
        raise ValueError(f"Enter Order appendage is {len(appendage)} bytes, its length field "
                         f"says {fields['appendage_length']}")
    return fields, appendage


def soupbin_unsequenced(msg: bytes) -> bytes:
    """A SoupBinTCP unsequenced data packet carrying `msg`."""
    return (len(msg) + 1).to_bytes(2, "big") + SOUPBIN_UNSEQUENCED.encode("ascii") + msg
