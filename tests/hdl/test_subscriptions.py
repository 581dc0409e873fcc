"""The subscription table changes at run time, between frames, in gateware as in the model."""

import random

from hdl.formats import Drop
from host.model import pack
from host.model.feed import Subscription
from sim import traffic
from sim.feed_rtl import FeedRtl, Schedule, run_model

A = traffic.Feed(b"SESSION-AA", pack.ip("233.54.12.111"), 26477, seq=100)
B = traffic.Feed(b"SESSION-BB", pack.ip("233.54.12.112"), 26478, seq=500)


def frames(feed: traffic.Feed, rng: random.Random, n: int = 3) -> list[bytes]:
    return traffic.random_frames(rng, feed, n, max_messages=4, kinds="AEDX")


def test_rewrite_retarget_disable() -> None:
    rng = random.Random(7)
    s = Schedule()
    s.subscriptions[0] = Subscription(A.group, A.port, A.session)
    expected: list[Drop] = []

    def send(batch: list[bytes], verdict: Drop) -> None:
        for f in batch:
            s.add_frame(f, idle_before=rng.choice((12, 13, 40)))
        expected.extend([verdict] * len(batch))

    send(frames(A, rng), Drop.NONE)
    send(frames(B, rng), Drop.ETH_DST)              # not subscribed: its MAC is filtered
    s.subscribe(1, Subscription(B.group, B.port, B.session))
    send(frames(B, rng), Drop.NONE)                 # row 1 added while A keeps flowing
    send(frames(A, rng), Drop.NONE)
    s.subscribe(0, Subscription(A.group, B.port, A.session))
    send(frames(A, rng), Drop.UDP_NO_SUB)           # row 0 now on A's group, B's port
    s.subscribe(0, None)
    s.subscribe(1, None)
    send(frames(B, rng), Drop.ETH_DST)              # table empty

    model, rtl = run_model(s), FeedRtl.shared().run(s)
    assert model.verdicts == expected
    assert rtl.verdicts == model.verdicts
    assert rtl.messages == model.messages
    assert rtl.counters == model.counters


def test_rewrite_restarts_sequence() -> None:
    """Writing a row sets its next expected sequence number: a packet older than it is now a
    duplicate, and a newer one a gap, even though the row had already synchronised."""
    rng = random.Random(8)
    feed = traffic.Feed(b"SESSION-CC", pack.ip("233.54.12.113"), 26479, seq=1000)
    s = Schedule()
    s.subscriptions[2] = Subscription(feed.group, feed.port, feed.session)
    for f in frames(feed, rng):
        s.add_frame(f)
    s.subscribe(2, Subscription(feed.group, feed.port, feed.session, next_seq=feed.seq + 50))
    for f in frames(feed, rng, 1):                  # older than 50 ahead: duplicate
        s.add_frame(f)
    feed.seq += 60
    for f in frames(feed, rng, 1):                  # 10 past the new expectation: a gap
        s.add_frame(f)

    model, rtl = run_model(s), FeedRtl.shared().run(s)
    assert model.verdicts[-2:] == [Drop.MOLD_DUPLICATE, Drop.NONE]
    assert len(model.gaps) == 1 and model.gaps[0].count > 0
    assert (rtl.verdicts, rtl.gaps, rtl.messages, rtl.counters) == \
        (model.verdicts, model.gaps, model.messages, model.counters)
