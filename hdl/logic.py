"""Small combinational building blocks shared by the blocks."""

from amaranth import Value

__all__ = ["or_tree"]


def or_tree(values):
    """The OR of `values`, as a balanced tree: a Python fold would be a chain as deep as the
    list, and nothing promises that synthesis rebalances it."""
    values = [Value.cast(v) for v in values]
    while len(values) > 1:
        values = [values[i] | values[i + 1] if i + 1 < len(values) else values[i]
                  for i in range(0, len(values), 2)]
    return values[0]
