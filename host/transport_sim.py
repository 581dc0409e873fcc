"""`SimTransport`: register words to and from the co-simulation server (`sim.cosim`) over ZeroMQ.

The server answers JSON requests on a REP socket (its module docstring has the protocol); this
side is a REQ socket. Addresses here are byte addresses, as every `Transport` takes them; the
wire carries word addresses (byte address / 4). A request that gets no answer within `timeout`
seconds raises `DeviceError` saying how to start a server, and the socket is replaced: a REQ
socket that sent without receiving cannot send again.
"""

import json
from typing import Any

import zmq

from host.device import DeviceError

__all__ = ["SimTransport", "START_HINT"]

START_HINT = "start one with `hostctl sim start`"


class SimTransport:
    def __init__(self, endpoint: str, timeout: float = 5.0) -> None:
        """`endpoint`: a ZeroMQ endpoint, e.g. tcp://127.0.0.1:5555 or ipc:///run/x.sock."""
        self.endpoint = endpoint
        self.timeout = timeout
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self._sock: zmq.Socket[bytes] | None = None

    def _socket(self) -> "zmq.Socket[bytes]":
        if self._sock is None:
            s: zmq.Socket[bytes] = self._ctx.socket(zmq.REQ)
            s.setsockopt(zmq.LINGER, 0)
            ms = int(self.timeout * 1000)
            s.setsockopt(zmq.RCVTIMEO, ms)
            s.setsockopt(zmq.SNDTIMEO, ms)
            s.connect(self.endpoint)
            self._sock = s
        return self._sock

    def request(self, req: dict[str, Any]) -> dict[str, Any]:
        """One request; the server's answer (DeviceError if it refused or did not answer)."""
        sock = self._socket()
        try:
            sock.send(json.dumps(req).encode())
            raw = sock.recv()
        except zmq.Again:
            self.close()
            raise DeviceError(f"no co-simulation server at {self.endpoint} (no answer within "
                              f"{self.timeout:g} s): {START_HINT}") from None
        answer = json.loads(raw)
        if not isinstance(answer, dict) or not answer.get("ok"):
            error = answer.get("error") if isinstance(answer, dict) else answer
            raise DeviceError(f"co-simulation server at {self.endpoint}: {error}")
        return answer

    @staticmethod
    def _word_addr(addr: int) -> int:
        if addr % 4 or addr < 0:
            raise DeviceError(f"address 0x{addr:x} must be a non-negative multiple of 4")
        return addr // 4

    def read32(self, addr: int) -> int:
        return int(self.request({"op": "read", "addr": self._word_addr(addr)})["value"])

    def write32(self, addr: int, value: int) -> None:
        self.request({"op": "write", "addr": self._word_addr(addr), "value": value})

    def batch(self, ops: list[tuple[str, int] | tuple[str, int, int]]) -> list[int]:
        """Several accesses in one round trip, one card cycle each, in order: ("r", ADDR) or
        ("w", ADDR, VALUE) with byte addresses; returns the words read."""
        wire: list[list[Any]] = []
        for op in ops:
            wire.append([op[0], self._word_addr(op[1]), *op[2:]])
        return [int(v) for v in self.request({"op": "batch", "ops": wire})["values"]]

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
