"""The order template and frame model (`host.model.order_frame`): the frame parses as the
template says (scapy, checksums verified), its OUCH message is the real capture's layout, and
bad template fields are refused."""

from pathlib import Path

import pytest
from scapy.all import IP, TCP, UDP, Ether, rdpcap

from hdl.formats import OUCH_IOC
from host.model.order_frame import DEFAULT_TEMPLATE, OrderTemplate, enter_order, order_frame
from host.model.ouch import cl_ord_id, decode_enter_order, encode_enter_order
from host.model.pack import ipv4_checksum

CAPTURE = (Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nasdaq"
           / "Nasdaq.Nsm.Ouch.v5.0" / "EnterOrderMessage.pcap")


def test_frame_headers_come_from_the_template() -> None:
    t = OrderTemplate(dst_mac=0x020000000001, src_mac=0x020000000002, src_ip=0x0A000002,
                      dst_ip=0x0A000001, src_port=5000, dst_port=6000, ttl=9, display="N")
    frame = order_frame(t, 7, "S", 300, "MSFT", 4_123_400)
    pkt = Ether(frame)
    assert (pkt.dst, pkt.src) == ("02:00:00:00:00:01", "02:00:00:00:00:02")
    ip = pkt[IP]
    assert (ip.src, ip.dst, ip.ttl, ip.id, str(ip.flags), ip.len) == (
        "10.0.0.2", "10.0.0.1", 9, 0, "DF", len(frame) - 14)
    assert ipv4_checksum(frame[14:34]) == 0
    sent = ip.chksum
    del ip.chksum
    assert IP(bytes(ip)).chksum == sent         # scapy computes the same
    udp = pkt[UDP]
    assert (udp.sport, udp.dport, udp.chksum, udp.len) == (5000, 6000, 0, 8 + 50)
    payload = bytes(udp.payload)
    assert payload[:3] == b"\x00\x30U"
    fields, appendage = decode_enter_order(payload[3:])
    assert appendage == b"" and fields == {
        "type": "O", "user_ref": 7, "side": "S", "quantity": 300, "symbol": "MSFT    ",
        "price": 4_123_400, "time_in_force": OUCH_IOC, "display": "N", "capacity": "A",
        "intermarket_sweep": "N", "cross_type": "N", "cl_ord_id": cl_ord_id(7),
        "appendage_length": 0}


def test_default_template_matches_the_capture_but_for_time_in_force() -> None:
    """The capture's firm fields are the defaults (its order is a day order; ours are IOC), and
    its order through the template is its message with our ClOrdID and no appendage."""
    (packet,) = rdpcap(str(CAPTURE))
    captured, _ = decode_enter_order(bytes(packet[TCP].payload)[3:])
    firm = ("time_in_force", "display", "capacity", "intermarket_sweep", "cross_type")
    assert {n: captured[n] for n in firm} | {"time_in_force": OUCH_IOC} == {
        n: getattr(DEFAULT_TEMPLATE, n) for n in firm}
    assert (packet[IP].src, packet[IP].dst, packet[TCP].sport, packet[TCP].dport) == (
        "74.120.49.66", "206.200.125.172", DEFAULT_TEMPLATE.src_port, DEFAULT_TEMPLATE.dst_port)
    t = OrderTemplate(time_in_force=captured["time_in_force"])
    msg = enter_order(t, captured["user_ref"], captured["side"], captured["quantity"],
                      captured["symbol"], captured["price"])
    assert msg == encode_enter_order(captured | {"cl_ord_id": cl_ord_id(113),
                                                 "appendage_length": 0})


@pytest.mark.parametrize(("field", "value", "allowed"), [
    ("src_port", 65536, "0..65535"), ("dst_mac", -1, "0..281474976710655"),
    ("ttl", 256, "0..255"), ("display", "YY", "one printable ASCII"),
    ("capacity", "\n", "one printable ASCII")])
def test_bad_template_fields_are_refused(field: str, value: object, allowed: str) -> None:
    with pytest.raises(ValueError, match=f"{field} must be .*{allowed}"):
        OrderTemplate(**{field: value})
