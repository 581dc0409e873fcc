"""host.model.itch checked field by field against itchfeed, an independent ITCH 5.0 decoder, over
every message in the real captures and over random messages of every decoded type."""

import os
import random
from pathlib import Path
from typing import Any

import pytest

from hdl.formats import ITCH_BODIES, ITCH_HEADER, ITCH_LENGTHS
from host.capture import read_capture
from host.model.itch import decode, encode, text
from host.model.pack import mold_unpack, payload_of
from sim.traffic import random_message

# itchcpp (itchfeed's optional C++ backend) would replace the reference we compare against.
os.environ["ITCH_NO_CPP"] = "1"
from itch.messages import AllMessages  # noqa: E402
from itch.messages import messages as itchfeed_classes  # noqa: E402

NASDAQ = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nasdaq"
PCAPS = sorted(NASDAQ.glob("Nasdaq.Equities.TotalView.Itch.v5.0*/*.pcap"))

# Our field name -> itchfeed's attribute name, where they differ.
HEADER_NAMES = {"locate": "stock_locate", "tracking": "tracking_number",
                "timestamp": "timestamp"}
BODY_NAMES: dict[str, dict[str, str]] = {
    "R": {"financial_status": "financial_status_indicator", "issue_subtype": "issue_sub_type",
          "short_sale_threshold": "short_sale_threshold_indicator", "luld_tier": "luld_ref",
          "etp_leverage": "etp_leverage_factor", "inverse": "inverse_indicator"},
    "A": {"order_ref": "order_reference_number", "side": "buy_sell_indicator"},
    "F": {"order_ref": "order_reference_number", "side": "buy_sell_indicator"},
    "E": {"order_ref": "order_reference_number", "shares": "executed_shares",
          "match": "match_number"},
    "C": {"order_ref": "order_reference_number", "shares": "executed_shares",
          "match": "match_number", "price": "execution_price"},
    "X": {"order_ref": "order_reference_number", "shares": "cancelled_shares"},
    "D": {"order_ref": "order_reference_number"},
    "U": {"order_ref": "order_reference_number", "new_ref": "new_order_reference_number"},
    "P": {"order_ref": "order_reference_number", "side": "buy_sell_indicator",
          "match": "match_number"},
}


def assert_same_as_itchfeed(msg: bytes) -> None:
    kind = chr(msg[0])
    assert len(msg) == ITCH_LENGTHS[kind]
    ours = decode(msg)
    theirs = itchfeed_classes[msg[:1]](msg)
    fields = [(n, s, HEADER_NAMES[n]) for n, s in ITCH_HEADER[1:]]
    fields += [(n, s, BODY_NAMES.get(kind, {}).get(n, n)) for n, s in ITCH_BODIES[kind]]
    assert set(ours) == {"type"} | {n for n, _, _ in fields}
    assert ours["type"] == theirs.message_type.decode()
    for name, size, attr in fields:
        value: Any = getattr(theirs, attr)
        if isinstance(value, bytes):  # itchfeed keeps text as bytes (struct "c"/"Ns")
            assert text(ours[name], size).rstrip() == value.decode("ascii").rstrip(), (kind, name)
        else:  # ints, prices included: itchfeed scales prices only in .decode()
            assert ours[name] == value, (kind, name)
    assert encode(ours) == msg == theirs.to_bytes()


def test_lengths_and_types_agree_with_itchfeed() -> None:
    assert set(AllMessages.decode()) == set(ITCH_LENGTHS)
    for kind, length in ITCH_LENGTHS.items():
        assert itchfeed_classes[kind.encode()].message_size == length, kind
    assert set(BODY_NAMES) <= set(ITCH_BODIES)


@pytest.mark.parametrize("path", PCAPS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_real_capture(path: Path) -> None:
    for frame in read_capture(path).frames:
        payload = payload_of(frame)
        assert payload is not None
        for msg in mold_unpack(payload)[3]:
            assert len(msg) == ITCH_LENGTHS[chr(msg[0])]
            if chr(msg[0]) in ITCH_BODIES:
                assert_same_as_itchfeed(msg)
            else:  # still check itchfeed can read what we only skip
                assert itchfeed_classes[msg[:1]](msg).to_bytes() == msg


def test_real_captures_cover_every_decoded_type() -> None:
    kinds = {chr(m[0]) for p in PCAPS for f in read_capture(p).frames
             for m in mold_unpack(payload_of(f) or b"")[3]}
    # The samples hold no Stock Directory ('R'): only random messages check that one.
    assert set(ITCH_BODIES) - kinds <= {"R"}


@pytest.mark.parametrize("kind", sorted(ITCH_BODIES))
def test_random_messages(kind: str) -> None:
    rng = random.Random(kind)
    for _ in range(400):
        assert_same_as_itchfeed(random_message(rng, kind))


@pytest.mark.parametrize("kind", sorted(set(ITCH_LENGTHS) - set(ITCH_BODIES)))
def test_random_undecoded_messages_have_itchfeed_length(kind: str) -> None:
    rng = random.Random(kind)
    for _ in range(20):
        msg = random_message(rng, kind)
        assert msg[:1] == kind.encode() and len(msg) == ITCH_LENGTHS[kind]
        assert itchfeed_classes[msg[:1]](msg).to_bytes() == msg
