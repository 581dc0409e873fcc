"""Small building blocks shared by the blocks."""

from amaranth import Cat, Module, Signal, Value

__all__ = ["or_tree", "count_later"]


def or_tree(values):
    """The OR of `values`, as a balanced tree: a Python fold would be a chain as deep as the
    list, and nothing promises that synthesis rebalances it."""
    values = [Value.cast(v) for v in values]
    while len(values) > 1:
        values = [values[i] | values[i + 1] if i + 1 < len(values) else values[i]
                  for i in range(0, len(values), 2)]
    return values[0]


def count_later(m: Module, events, counters):
    """Add each event (a list of 1-bit values) to its counter (an array of counters, in the same
    order) the cycle after it, from a register of the events: an event comes off a block's
    deciding logic, and a 32-bit increment (or a select among the counters) right behind it
    was among the longest paths wherever it was tried. Read by the host, a cycle late."""
    counted = Signal(len(events), name="counted")
    m.d.sync += counted.eq(Cat(events))
    for i in range(len(events)):
        with m.If(counted[i]):
            m.d.sync += counters[i].eq(counters[i] + 1)
