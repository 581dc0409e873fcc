"""host.model.book against itch-book, an independent order book (C++ core), row for row.

Both books read the same realistic day (`sim.market`: thousands of live orders, executions at
the touch, partial and over-sized cancels, replace chains, unknown references, unwatched
instruments, halts, references past 2**32) and must write the same top-of-book rows: the
`bbo.csv` rows of DESIGN.md §4, (message index, locate, bid price, bid shares, ask price, ask
shares). The stream keeps within the card's order table (live orders, ways per set), so the
model must never call a book uncertain; outside it it would be right to, and the comparison would
stop meaning anything. Its sides reach 12 prices, past the card's 8 levels: the prices pushed out
become orphans (`host.model.book`), and the top must stay exact through them.

MeatPy, a third book (pure Python), checks the end of the day: its last quote of every
instrument must be itch-book's last row.
"""

from collections.abc import Sequence

import pytest

from hdl.formats import ITCH_BODIES
from host.model.book import BookModel, TopUpdate, bbo_rows
from host.model.itch import decode
from sim.market import MARKET_SYMBOLS, market_stream
from sim.refbooks import itchbook_bbo, meatpy_run

# One sub-dollar instrument among the watched, so sub-penny prices are compared too.
WATCHED = (*MARKET_SYMBOLS, "ZXIET")
UNWATCHED = ("ZVZZT", "ZQZZT")

Row = tuple[int, int, int, int, int, int]


def run_model(messages: Sequence[bytes], symbols: Sequence[str]) -> list[TopUpdate]:
    model = BookModel()
    for slot, symbol in enumerate(symbols):
        model.watch(slot, symbol)
    updates = []
    for index, m in enumerate(messages):
        if chr(m[0]) not in ITCH_BODIES:
            continue                          # counted by the card, never decoded
        msg = decode(m)
        msg["index"] = index
        update = model.message(msg)
        if update is not None:
            updates.append(update)
    counters = model.counters()
    # In capacity: nothing the card would have to give up on. Levels pushed out, yes: a test of
    # the orphans that keep the top exact.
    for name in ("table_full", "duplicate_ref", "rejected"):
        assert counters[name] == 0, (name, counters)
    assert counters["level_overflow"] > 0, counters
    return updates


def first_difference(ours: list[Row], theirs: list[Row], messages: Sequence[bytes]) -> str:
    """Where two row lists part, with the rows before and the messages that led there, rather
    than pytest's diff of two lists of a quarter of a million rows."""
    i = next((i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b),
             min(len(ours), len(theirs)))
    differing = ours[i:i + 1] + theirs[i:i + 1]           # one or two rows
    at = min(r[0] for r in differing)
    locate = differing[0][1]
    lines = [f"rows differ first at row {i} of {len(ours)} (model) / {len(theirs)} (itch-book)",
             f"  model:     {ours[i] if i < len(ours) else 'none'}",
             f"  itch-book: {theirs[i] if i < len(theirs) else 'none'}",
             "  rows before (agreed): " + repr(ours[max(0, i - 3):i])]
    recent = [(j, decode(m)) for j, m in enumerate(messages[:at + 1]) if chr(m[0]) in ITCH_BODIES
              and int.from_bytes(m[1:3], "big") == locate][-8:]
    lines += ["  last messages of that locate:"] + [f"    {j}: {d}" for j, d in recent]
    return "\n".join(lines)


def check(seed: int, n: int, watched: Sequence[str] = WATCHED,
          unwatched: Sequence[str] = UNWATCHED) -> None:
    messages = market_stream(seed, n, watched, unwatched=unwatched)
    updates = run_model(messages, watched)
    uncertain = [u for u in updates if u.uncertain]
    assert not uncertain, f"{len(uncertain)} uncertain updates, first {uncertain[0]}"
    ours = bbo_rows(updates)
    theirs = itchbook_bbo(messages, range(1, len(watched) + 1))
    assert len(theirs) > n // 10              # the top moves all day: a real comparison
    if ours != theirs:
        pytest.fail(first_difference(ours, theirs, messages))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_model_matches_itchbook(seed: int) -> None:
    check(seed, 50_000)


def test_model_matches_itchbook_on_every_slot() -> None:
    # As many instruments as the card has slots (BookParams().slots), prices drawn by the
    # generator for the names it does not know.
    extra = ("ABCD", "EFGH", "IJKL", "MNOP", "QRST", "UVWX", "YZAB")
    check(4, 50_000, (*WATCHED, *extra), ("ZVZZT",))


@pytest.mark.slow
def test_model_matches_itchbook_for_a_million_messages() -> None:
    check(2024, 1_000_000)


def test_meatpy_agrees_at_the_close() -> None:
    messages = market_stream(9, 50_000, WATCHED, unwatched=UNWATCHED)
    theirs = {row[1]: row[2:] for row in itchbook_bbo(messages)}
    run = meatpy_run(messages)
    assert run.books
    for locate, processor in run.books.items():
        lob = processor.current_lob
        bid = lob.bid_levels[0] if lob.bid_levels else None
        ask = lob.ask_levels[0] if lob.ask_levels else None
        quote = (bid.price if bid else 0, bid.volume if bid else 0,
                 ask.price if ask else 0, ask.volume if ask else 0)
        assert quote == theirs[locate], locate
