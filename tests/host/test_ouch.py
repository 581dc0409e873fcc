"""The OUCH 5.0 Enter Order encoder (`host.model.ouch`) against the real Nasdaq capture: decode
its bytes field by field, re-encode them identically, and refuse what does not fit."""

from pathlib import Path

import pytest
from scapy.all import TCP, rdpcap

from hdl.formats import OUCH_ENTER_ORDER_LEN
from host.model.ouch import (
    cl_ord_id,
    decode_enter_order,
    encode_enter_order,
    soupbin_unsequenced,
)

CAPTURE = (Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nasdaq"
           / "Nasdaq.Nsm.Ouch.v5.0" / "EnterOrderMessage.pcap")


def captured_payload() -> bytes:
    (packet,) = rdpcap(str(CAPTURE))
    return bytes(packet[TCP].payload)


def test_the_real_enter_order_decodes_and_reencodes_byte_for_byte() -> None:
    payload = captured_payload()
    assert payload[:3] == (len(payload) - 2).to_bytes(2, "big") + b"U"
    fields, appendage = decode_enter_order(payload[3:])
    assert fields == {
        "type": "O", "user_ref": 113, "side": "T", "quantity": 225, "symbol": "CVLT    ",
        "price": 630200, "time_in_force": "0", "display": "Y", "capacity": "A",  # $63.02
        "intermarket_sweep": "N", "cross_type": "N", "cl_ord_id": "H8FUB8IV      ",
        "appendage_length": 6,
    }
    assert appendage == bytes.fromhex("05024c494d45")      # option: length 5, tag 2, "LIME"
    assert soupbin_unsequenced(encode_enter_order(fields, appendage)) == payload
    assert len(payload) - 3 - len(appendage) == OUCH_ENTER_ORDER_LEN


def test_cl_ord_id_comes_from_user_ref_and_bad_fields_are_refused() -> None:
    assert cl_ord_id(113) == "TK00000071    " and len(cl_ord_id(2**32 - 1)) == 14
    fields, _ = decode_enter_order(captured_payload()[3:])
    with pytest.raises(ValueError, match="symbol"):
        encode_enter_order(fields | {"symbol": "TOOLONGSYM"})
    with pytest.raises(ValueError, match="missing"):
        encode_enter_order({k: v for k, v in fields.items() if k != "price"})
    with pytest.raises(ValueError, match="not an OUCH"):
        decode_enter_order(b"A" * 60)
    with pytest.raises(ValueError, match="appendage"):
        decode_enter_order(captured_payload()[3:-1])
