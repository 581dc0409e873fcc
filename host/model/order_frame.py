"""The order template and the order frame: the model of `hdl.order_builder`.

`OrderTemplate` is what the host loads into the card once (addresses, ports, TTL, the OUCH firm
fields); `order_frame` is the Ethernet frame (without FCS) the card's order builder sends for
one order: Ethernet, IPv4 (identification 0 with DF, as the real EnterOrder capture has it, so
the header checksum depends on the template alone), UDP (checksum 0), and a SoupBinTCP
unsequenced packet carrying the OUCH 5.0 Enter Order, built by `host.model.pack.udp_frame`,
`host.model.ouch.soupbin_unsequenced` and `host.model.ouch.encode_enter_order`.

The template's fields are `hdl.formats.ORDER_TEMPLATE`, in its order; `template_bits` packs a
template into the integer the gateware's `TemplateLayout` register holds.

Default addresses and ports are those of the real EnterOrderMessage capture in
`../shared/data/nasdaq/Nasdaq.Nsm.Ouch.v5.0/`: the client 74.120.49.66:40565 (MAC
00:1c:73:92:02:bd) sending to Nasdaq's OUCH port 206.200.125.172:8001 through the next hop
00:1c:73:85:bf:b3, so our frames look like that session's. TTL 64: the card originates the
packet (the capture's 63 is after one router). A real deployment loads its own.
"""

from dataclasses import dataclass, fields
from typing import Any

from hdl.formats import ORDER_TEMPLATE, ORDER_TEMPLATE_TEXT, OUCH_IOC
from host.model.ouch import cl_ord_id, encode_enter_order, soupbin_unsequenced
from host.model.pack import ip, udp_frame

__all__ = ["OrderTemplate", "DEFAULT_TEMPLATE", "template_bits", "enter_order", "order_frame"]


@dataclass(frozen=True)
class OrderTemplate:
    dst_mac: int = 0x001C7385BFB3
    src_mac: int = 0x001C739202BD
    src_ip: int = ip("74.120.49.66")
    dst_ip: int = ip("206.200.125.172")
    src_port: int = 40565
    dst_port: int = 8001
    ttl: int = 64
    time_in_force: str = OUCH_IOC
    display: str = "Y"
    capacity: str = "A"               # agency
    intermarket_sweep: str = "N"
    cross_type: str = "N"             # continuous market

    def __post_init__(self) -> None:
        for name, size in ORDER_TEMPLATE:
            value = getattr(self, name)
            if name in ORDER_TEMPLATE_TEXT:
                if not (isinstance(value, str) and len(value) == 1 and " " <= value <= "~"):
                    raise ValueError(f"order template {name} must be one printable ASCII "
                                     f"character, not {value!r}")
            elif not (isinstance(value, int) and 0 <= value < 1 << 8 * size):
                raise ValueError(f"order template {name} must be an integer "
                                 f"0..{(1 << 8 * size) - 1}, not {value!r}")


# The dataclass is the host's view of hdl.formats.ORDER_TEMPLATE: same fields, same order.
assert tuple(f.name for f in fields(OrderTemplate)) == tuple(n for n, _ in ORDER_TEMPLATE)

DEFAULT_TEMPLATE = OrderTemplate()


def template_bits(template: OrderTemplate) -> int:
    """The template as the integer value of the gateware's `TemplateLayout` (first field in the
    lowest bits; firm fields as ASCII codes): what the host writes into the card's registers."""
    bits, at = 0, 0
    for name, size in ORDER_TEMPLATE:
        value = getattr(template, name)
        bits |= (ord(value) if name in ORDER_TEMPLATE_TEXT else value) << at
        at += 8 * size
    return bits


def enter_order(template: OrderTemplate, user_ref: int, side: str, qty: int, symbol: str,
                price: int) -> bytes:
    """The OUCH Enter Order message of one order: firm fields from the template, ClOrdID from
    `user_ref`, no appendage. `price` is an ITCH price (OUCH has the same 4 implied decimals)."""
    order: dict[str, Any] = {
        "user_ref": user_ref, "side": side, "quantity": qty, "symbol": symbol, "price": price,
        "cl_ord_id": cl_ord_id(user_ref)}
    return encode_enter_order(order | {n: getattr(template, n) for n in ORDER_TEMPLATE_TEXT})


def order_frame(template: OrderTemplate, user_ref: int, side: str, qty: int, symbol: str,
                price: int) -> bytes:
    """The Ethernet frame (no FCS) the card sends for one order."""
    return udp_frame(
        soupbin_unsequenced(enter_order(template, user_ref, side, qty, symbol, price)),
        dst_ip=template.dst_ip, dst_port=template.dst_port, src_ip=template.src_ip,
        src_port=template.src_port, dst_mac=template.dst_mac, src_mac=template.src_mac,
        ttl=template.ttl, ident=0)
