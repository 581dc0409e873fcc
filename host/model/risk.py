"""Reference model of the card's risk gate: every order intent in, sent or refused with a reason.

The specification the gateware's gate will be tested against; nothing reaches the wire without
passing it. Limits come from the strategy and limits file (`host.config`); positions from the
fills the host reports; the switches from the host. For an intent of `qty` at `price` on
instrument `slot` (the checks in `hdl.formats.Reject` order; the first that fails is the reason,
counted once):

* KILL_CARD / KILL_INSTRUMENT: a kill switch is set.
* HALTED / UNCERTAIN: the update that made the intent said so.
* REDUCE_ONLY (card or instrument): a buy must leave position + open buys + qty <= 0, a sell
  position - open sells - qty >= 0.
* MAX_QTY: qty > max_order_qty, or 0 (the triggers never make one; the gateware's registers
  could). MAX_NOTIONAL: qty x price > max_order_notional.
  COLLAR: |price - reference_px| > collar.
* MAX_POSITION: exposure that way, position + open buys + qty (buy) or -position + open sells +
  qty (sell), > max_position. Open orders count until the host resolves them, so exposure is
  never understated; in a replay no fills come and every sent order stays open.
* RATE_CARD / RATE_INSTRUMENT: token buckets on the card's clock (`CARD_CLOCK_HZ`). A bucket of
  rate r holds r tokens and starts full; it gains one every CARD_CLOCK_HZ // r cycles (kept as
  a credit in cycles, so nothing is lost to rounding between orders). A sent order takes one
  token from both buckets; a refused one takes none.

A sent order adds its qty to the open orders of its side.
"""

from dataclasses import dataclass, field

from hdl.formats import CARD_CLOCK_HZ, Reject
from host.config import CardConfig
from host.model.book import TopUpdate
from host.model.trigger import Intent

__all__ = ["Bucket", "RiskModel", "bucket_registers"]


@dataclass
class Bucket:
    """A token bucket as a credit of cycles: a token costs `period` cycles of credit."""
    rate: int
    clock_hz: int = CARD_CLOCK_HZ
    period: int = field(init=False)     # cycles per token
    credit: int = field(init=False)     # starts full: `rate` tokens
    at: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.period = self.clock_hz // self.rate
        self.credit = self.rate * self.period

    def has_token(self, cycle: int) -> bool:
        self.credit = min(self.rate * self.period, self.credit + max(cycle - self.at, 0))
        self.at = max(cycle, self.at)
        return self.credit >= self.period

    def take(self) -> None:
        self.credit -= self.period


def bucket_registers(rate: int, clock_hz: int = CARD_CLOCK_HZ) -> tuple[int, int]:
    """(rate_period, rate_cap): a bucket of `rate` orders per second as the card's registers
    hold it, cycles per token and a full bucket."""
    b = Bucket(rate, clock_hz)
    return b.period, b.credit


class RiskModel:
    def __init__(self, config: CardConfig, clock_hz: int = CARD_CLOCK_HZ) -> None:
        self.config = config
        n = len(config.instruments)
        self.kill_card = False
        self.kill = [False] * n
        self.reduce_only_card = False
        self.reduce_only = [False] * n
        self.position = [0] * n                 # signed shares, from the host's fills
        self.open = [[0, 0] for _ in range(n)]  # [buys, sells] sent and not yet resolved
        self.card_bucket = Bucket(config.limits.max_orders_per_second, clock_hz)
        self.buckets = [Bucket(i.max_orders_per_second or config.limits.max_orders_per_second,
                               clock_hz) for i in config.instruments]
        self.count = {r.name.lower(): 0 for r in Reject}

    def check(self, intent: Intent, update: TopUpdate, cycle: int) -> Reject:
        """Decide on an intent at card cycle `cycle`; a sent order is counted as open."""
        reason = self._reason(intent, update, cycle)
        self.count[reason.name.lower()] += 1
        if reason is Reject.NONE:
            self.card_bucket.take()
            self.buckets[intent.slot].take()
            self.open[intent.slot][intent.side == "S"] += intent.qty
        return reason

    def fill(self, slot: int, side: str, qty: int) -> None:
        """The host reports `qty` of an open order filled: it moves from open to position."""
        self.release(slot, side, qty)
        self.position[slot] += qty if side == "B" else -qty

    def release(self, slot: int, side: str, qty: int) -> None:
        """The host reports `qty` of an open order gone (cancelled, expired, filled)."""
        s = side == "S"
        self.open[slot][s] = max(0, self.open[slot][s] - qty)

    def _reason(self, intent: Intent, update: TopUpdate, cycle: int) -> Reject:
        lim, inst = self.config.limits, self.config.instruments[intent.slot]
        slot, qty, px, buy = intent.slot, intent.qty, intent.price, intent.side == "B"
        pos, (open_buy, open_sell) = self.position[slot], self.open[slot]
        if self.kill_card:
            return Reject.KILL_CARD
        if self.kill[slot]:
            return Reject.KILL_INSTRUMENT
        if update.halted:
            return Reject.HALTED
        if update.uncertain:
            return Reject.UNCERTAIN
        if self.reduce_only_card or self.reduce_only[slot]:
            if (pos + open_buy + qty > 0) if buy else (pos - open_sell - qty < 0):
                return Reject.REDUCE_ONLY
        if qty == 0 or qty > lim.max_order_qty:
            return Reject.MAX_QTY
        if qty * px > lim.max_order_notional:
            return Reject.MAX_NOTIONAL
        if abs(px - inst.reference_px) > inst.collar:
            return Reject.COLLAR
        if (pos + open_buy if buy else -pos + open_sell) + qty > inst.max_position:
            return Reject.MAX_POSITION
        card, own = self.card_bucket.has_token(cycle), self.buckets[slot].has_token(cycle)
        if not card:
            return Reject.RATE_CARD
        if not own:
            return Reject.RATE_INSTRUMENT
        return Reject.NONE
