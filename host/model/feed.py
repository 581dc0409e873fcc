"""Reference model of the feed handler: GMII bursts in, decoded ITCH messages and counters out.

This is the specification `hdl.feed.FeedHandler` is tested against. It mirrors the gateware's
streaming semantics exactly, including what the gateware cannot know until later:

* Cut-through. A message is emitted as soon as its last byte has arrived, before the rest of
  the frame (and its FCS). The frame's verdict (`Drop.NONE` or the reason) comes at the end of
  the frame. So a frame that fails late (FCS, truncation, trailing bytes) can have emitted
  messages first; the verdict tells the consumer. Consumers that must not act on such messages
  wait for the verdict (the FCS-safe mode of the tick-to-trade path).
* Precedence. Each layer checks its header when the header's last byte arrives, in a fixed
  order, and passes payload bytes only if every check passed. A frame is counted once, under
  the first reason: MAC errors first (they are known only at the end but make everything else
  meaningless), then the layers in the order the bytes reach them (the order of `Drop`).
* MoldUDP64 state changes only at the end of a frame that every layer up to UDP accepted and
  whose MoldUDP64 header was accepted: a corrupt frame's sequence number cannot be trusted.
  The next expected sequence number then becomes max(expected, seq + blocks framed), and a
  gap (expected < seq) is reported then. A next_seq of 0 means "not synchronised": the first
  accepted packet sets it and reports no gap.
* The MAC passes the FCS bytes on like data (it learns they were the FCS only when RX_DV
  falls); the IPv4 layer therefore requires total length + 4 bytes before the frame ends.
"""

import struct
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hdl.formats import (
    ETH_MAX_FRAME,
    ETH_MIN_FRAME,
    ETHERTYPE_IPV4,
    ETHERTYPE_VLAN,
    FCS_LEN,
    IP_PROTO_UDP,
    ITCH_BODIES,
    ITCH_LENGTHS,
    ITCH_TYPES,
    MOLD_END_OF_SESSION,
    MOLD_HEADER_LEN,
    MOLD_HEARTBEAT,
    N_SUBSCRIPTIONS,
    SESSION_LEN,
    Drop,
    multicast_mac,
)
from host.model import itch

__all__ = ["Subscription", "Gap", "FrameResult", "FeedModel"]

_PREAMBLE, _SFD = 0x55, 0xD5
_ETH_RESIDUE = 0x2144DF1C  # zlib.crc32 of any frame with its correct FCS appended


@dataclass
class Subscription:
    """One row of the subscription table: a MoldUDP64 stream on a multicast group and port."""
    group: int                # IPv4 destination address
    port: int                 # UDP destination port
    session: bytes            # 10 ASCII bytes
    next_seq: int = 0         # next expected message sequence number; 0 = take the first seen

    def __post_init__(self) -> None:
        if len(self.session) != SESSION_LEN:
            raise ValueError(f"session must be {SESSION_LEN} bytes, not {self.session!r}")


@dataclass(frozen=True)
class Gap:
    sub: int
    first: int                # first missing sequence number
    count: int                # number of missing messages


@dataclass
class FrameResult:
    drop: Drop                # Drop.NONE for a good frame
    messages: list[dict[str, Any]]
    gap: Gap | None


@dataclass(frozen=True)
class _Commit:
    """What a frame does to its subscription's MoldUDP64 state, if the whole frame is good up to
    UDP: the new next expected sequence number, and the gap it revealed."""
    sub: int
    next_seq: int
    gap: Gap | None


def _ones_complement_ok(header: bytes) -> bool:
    total = sum(struct.unpack(f">{len(header) // 2}H", header))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return bool(total == 0xFFFF)


@dataclass
class FeedModel:
    """The feed handler: call `receive` for every GMII burst (the bytes while RX_DV is high)."""
    own_mac: int = 0x02_00_00_00_00_01
    subscriptions: list[Subscription | None] = field(
        default_factory=lambda: [None] * N_SUBSCRIPTIONS)
    frames_ok: int = 0
    drops: Counter[Drop] = field(default_factory=Counter)
    messages_by_type: Counter[str] = field(default_factory=Counter)
    gaps: int = 0
    n_messages: int = 0       # ITCH messages framed so far, every type: the next one's index
    n_frames: int = 0         # bursts received so far: the next one's frame number

    def __post_init__(self) -> None:
        if len(self.subscriptions) != N_SUBSCRIPTIONS:
            raise ValueError(f"the subscription table has {N_SUBSCRIPTIONS} rows")

    def subscribe(self, index: int, sub: Subscription | None) -> None:
        """Write one row, as the host does at run time; it restarts that row's sequence."""
        self.subscriptions[index] = sub

    def counters(self) -> dict[str, Any]:
        """The counters as `hostctl replay` writes them to counters.json."""
        return {
            "frames_ok": self.frames_ok,
            "messages_by_type": {t: self.messages_by_type[t] for t in ITCH_TYPES
                                 if self.messages_by_type[t]},
            "drops": {r.name.lower(): self.drops[r] for r in Drop
                      if r is not Drop.NONE and self.drops[r]},
            "gaps": self.gaps,
        }

    def receive(self, burst: bytes, error_at: int | None = None, cycle: int = 0) -> FrameResult:
        """Process one burst (RX_ER on burst[error_at], if given). `cycle` is the cycle of
        burst[0] on the GMII pins; each message's `rx_cycle` is the cycle of its last byte."""
        # MAC: preamble, SFD, then the frame, FCS included, until RX_DV falls.
        start = 0
        while start < len(burst) and burst[start] == _PREAMBLE:
            start += 1
        if start < len(burst) and burst[start] == _SFD:
            frame, mac = burst[start + 1:], Drop.NONE
            if len(frame) > ETH_MAX_FRAME:
                mac, frame = Drop.MAC_OVERSIZE, frame[:ETH_MAX_FRAME]  # the MAC stops there
            elif len(frame) < ETH_MIN_FRAME:
                mac = Drop.MAC_RUNT
            elif zlib.crc32(frame) != _ETH_RESIDUE:
                mac = Drop.MAC_FCS
        else:
            frame, mac = b"", Drop.MAC_PREAMBLE
        if error_at is not None:
            mac = Drop.MAC_PHY_ERROR

        messages: list[dict[str, Any]] = []
        drop, commit = self._layers(frame, cycle + start + 1, messages)
        for msg in messages:
            msg["frame"] = self.n_frames & 0xFFFF
        self.n_frames += 1
        if mac is not Drop.NONE:
            drop, commit = mac, None
        gap = None
        if commit is not None:
            sub = self.subscriptions[commit.sub]
            assert sub is not None
            sub.next_seq, gap = commit.next_seq, commit.gap
        if drop is Drop.NONE:
            self.frames_ok += 1
        else:
            self.drops[drop] += 1
        if gap is not None:
            self.gaps += 1
        return FrameResult(drop, messages, gap)

    def _layers(self, f: bytes, base: int, out: list[dict[str, Any]]
                ) -> tuple[Drop, _Commit | None]:
        """Ethernet, IPv4, UDP. `base` is the cycle of f[0]."""
        n = len(f)  # bytes every layer sees, the FCS included

        # Ethernet: 14-byte header, or 18 with one 802.1Q tag.
        eth_len = 18 if f[12:14] == ETHERTYPE_VLAN.to_bytes(2, "big") else 14
        if n < eth_len:
            return Drop.NONE, None   # only a runt is this short, and the MAC has counted it
        dst = int.from_bytes(f[0:6], "big")
        if dst != self.own_mac and dst not in {
                multicast_mac(s.group) for s in self.subscriptions if s}:
            return Drop.ETH_DST, None
        if int.from_bytes(f[eth_len - 2:eth_len], "big") != ETHERTYPE_IPV4:
            return Drop.ETH_TYPE, None

        # IPv4: every check when the last header byte (options included) has arrived.
        ip = eth_len
        ihl = f[ip] & 0x0F if n > ip else 5
        hlen = max(ihl, 5) * 4
        if n < ip + hlen:
            return Drop.IP_LENGTH, None
        total = int.from_bytes(f[ip + 2:ip + 4], "big")
        if f[ip] >> 4 != 4 or ihl < 5:
            return Drop.IP_VERSION, None
        if total < hlen + 8:
            return Drop.IP_LENGTH, None
        if int.from_bytes(f[ip + 6:ip + 8], "big") & 0x3FFF:   # MF flag or fragment offset
            return Drop.IP_FRAGMENT, None
        if f[ip + 9] != IP_PROTO_UDP:
            return Drop.IP_PROTO, None
        if not _ones_complement_ok(f[ip:ip + hlen]):
            return Drop.IP_CHECKSUM, None
        group = int.from_bytes(f[ip + 16:ip + 20], "big")
        # Known only when the frame ends, after the payload has been passed on.
        ip_short = n - ip < total + FCS_LEN

        # UDP: subscription match and length, when its 8-byte header has arrived.
        udp = ip + hlen
        if n < udp + 8:
            return Drop.IP_LENGTH, None
        port = int.from_bytes(f[udp + 2:udp + 4], "big")
        sub = next((i for i, s in enumerate(self.subscriptions)
                    if s and s.group == group and s.port == port), None)
        if sub is None:
            drop, commit = Drop.UDP_NO_SUB, None
        elif int.from_bytes(f[udp + 4:udp + 6], "big") != total - hlen:
            drop, commit = Drop.UDP_LENGTH, None
        else:
            # Bytes past the IPv4 total length are padding and FCS: never payload.
            drop, commit = self._mold(f, udp + 8, min(ip + total, n), sub, base, out)
        # A short frame is known only at its end, but IPv4 comes before UDP and MoldUDP64 in
        # `Drop`'s order, so it wins over their reasons (header checks included).
        if ip_short:
            return Drop.IP_LENGTH, None
        return drop, commit

    def _mold(self, f: bytes, pos: int, end: int, sub: int, base: int,
              out: list[dict[str, Any]]) -> tuple[Drop, _Commit | None]:
        """MoldUDP64 on f[pos:end], then the ITCH messages of its blocks."""
        s = self.subscriptions[sub]
        assert s is not None
        if end - pos < MOLD_HEADER_LEN:
            return Drop.MOLD_TRUNCATED, None
        if f[pos:pos + SESSION_LEN] != s.session:
            return Drop.MOLD_SESSION, None
        seq, count = struct.unpack_from(">QH", f, pos + SESSION_LEN)
        blocks = 0 if count in (MOLD_HEARTBEAT, MOLD_END_OF_SESSION) else count
        expected = s.next_seq
        if expected and blocks and seq + blocks <= expected:
            return Drop.MOLD_DUPLICATE, None

        mold, itch, framed = Drop.NONE, Drop.NONE, 0
        pos += MOLD_HEADER_LEN
        while framed < blocks:
            if end - pos < 2:
                mold = Drop.MOLD_TRUNCATED
                break
            length = int.from_bytes(f[pos:pos + 2], "big")
            if length == 0:
                mold = Drop.MOLD_EMPTY_BLOCK
                break
            if end - pos - 2 < length:
                mold = Drop.MOLD_TRUNCATED     # a partial message is never emitted
                break
            msg = pos + 2
            # Already-seen messages of a partly new packet are framed but not passed on; after
            # an ITCH error nothing more of the packet is.
            if itch is Drop.NONE and (not expected or seq + framed >= expected):
                itch = self._itch(f, msg, length, seq + framed, sub, base, out)
            framed += 1
            pos = msg + length
        else:
            if pos < end:
                mold = Drop.MOLD_TRAILING

        gap = Gap(sub, expected, seq - expected) if expected and seq > expected else None
        next_seq = max(expected, seq + framed) if expected else seq + framed
        # On the end-of-frame marker Mold sets its reason before the ITCH decoder can.
        return mold if mold is not Drop.NONE else itch, _Commit(sub, next_seq, gap)

    def _itch(self, f: bytes, pos: int, length: int, seq: int, sub: int, base: int,
              out: list[dict[str, Any]]) -> Drop:
        kind = chr(f[pos])
        if kind not in ITCH_LENGTHS:
            return Drop.ITCH_UNKNOWN_TYPE
        if ITCH_LENGTHS[kind] != length:
            return Drop.ITCH_BAD_LENGTH
        self.messages_by_type[kind] += 1
        self.n_messages += 1
        if kind in ITCH_BODIES:
            msg = itch.decode(f, pos)
            msg.update(seq=seq, sub=sub, rx_cycle=base + pos + length - 1,
                       index=self.n_messages - 1)
            out.append(msg)
        return Drop.NONE
