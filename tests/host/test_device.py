"""Device over PcieTransport on an ordinary file: registers by name, wide values, commits, the
card check, and the errors for bad names, values, addresses and URLs."""

from pathlib import Path

import pytest

from host.device import Device, DeviceError, PcieTransport, open_device
from host.model.regbank import image
from host.regmap import RegMap, RegMapError

RM = RegMap.load()


@pytest.fixture
def bar(tmp_path: Path) -> Path:
    """A file holding the register space of a card just out of reset."""
    path = tmp_path / "resource0"
    path.write_bytes(image(RM))
    return path


def word_at(path: Path, addr: int) -> int:
    return int.from_bytes(path.read_bytes()[addr:addr + 4], "little")


def test_write_and_read_by_name(bar: Path) -> None:
    with open_device(f"pcie://{bar}") as dev:
        dev.write("limits.max_order_qty", 800)
        dev.write("triggers[3].buy_below", 2924000)
        assert dev.read("limits.max_order_qty") == 800
        assert dev.read("triggers[3].buy_below") == 2924000
        assert dev.read("triggers[2].buy_below") == 0
        assert dev.read("order.ttl") == 64                      # the reset image's init
    # Where the JSON says, little-endian, rows a stride apart.
    assert word_at(bar, RM["limits.max_order_qty"].addr) == 800
    t = RM.blocks["triggers"]
    assert word_at(bar, t.registers["buy_below"].addr + 3 * t.stride) == 2924000


def test_wide_values_low_word_first(bar: Path) -> None:
    with open_device(f"pcie://{bar}") as dev:
        dev.write("limits.max_order_notional", 0x1_2345_6789)
        session = int.from_bytes(b"TESTSESS01", "big")
        dev.write("subscriptions[2].session", session)
        assert dev.read("limits.max_order_notional") == 0x1_2345_6789
        assert dev.read("subscriptions[2].session") == session
    notional = RM["limits.max_order_notional"].addr
    assert (word_at(bar, notional), word_at(bar, notional + 4)) == (0x2345_6789, 1)
    at = RM["subscriptions[2].session"].addr
    assert [word_at(bar, at + 4 * k) for k in range(3)] == \
        [session & 0xFFFF_FFFF, session >> 32 & 0xFFFF_FFFF, session >> 64]


def test_commit_live_and_labels(bar: Path) -> None:
    with open_device(f"pcie://{bar}") as dev:
        dev.commit("triggers[5]")
        dev.commit("limits")
        assert word_at(bar, RM["triggers[5].commit"].addr) == 1
        assert word_at(bar, RM["limits.commit"].addr) == 1
        with pytest.raises(RegMapError, match="block feed is not shadowed"):
            dev.commit("feed")
        # live=True reads the live copy's address (a file has no bank behind it to copy)
        dev.transport.write32(RM["limits.max_order_qty"].live_addr or 0, 77)
        assert dev.read("limits.max_order_qty", live=True) == 77
        dev.transport.write32(RM["feed.drops[mac_fcs]"].addr, 5)
        assert dev.read("feed.drops[5]") == 5


@pytest.mark.parametrize("name, message", [
    ("limits.max_order_qtty", "no register 'max_order_qtty' in block limits; did you mean "
                              "limits.max_order_qty"),
    ("limit.kill", "no block 'limit'; did you mean limits"),
    ("watchlist.symbol", "block watchlist has 16 rows: name one, as in watchlist[0].symbol"),
    ("watchlist[16].symbol", "watchlist row must be between 0 and 15, not 16"),
    ("limits[0].kill", "block limits has no rows: write limits.kill"),
    ("feed.drops", "feed.drops has 22 elements: name one, as in feed.drops[0]"),
    ("feed.drops[mac_fsc]", "did you mean mac_fcs"),
    ("feed.gaps[1]", "feed.gaps is not an array"),
    ("kill", "a register name looks like BLOCK.REG"),
    ("a.b.c", "a register name looks like BLOCK.REG"),
])
def test_bad_names(name: str, message: str) -> None:
    with pytest.raises(RegMapError) as info:
        RM[name]
    assert message in str(info.value) and "\n" not in str(info.value)


def test_bad_accesses(bar: Path) -> None:
    with open_device(f"pcie://{bar}") as dev:
        with pytest.raises(ValueError, match="host_op.slot takes an integer "
                                             "between 0 and 255, not 256"):
            dev.write("host_op.slot", 256)
        with pytest.raises(ValueError, match="not -1"):
            dev.write("limits.max_order_qty", -1)
        with pytest.raises(ValueError, match="not True"):
            dev.write("limits.kill", True)
        with pytest.raises(RegMapError, match="feed.frames_ok is read-only"):
            dev.write("feed.frames_ok", 0)
        with pytest.raises(RegMapError, match="limits.commit is write-only"):
            dev.read("limits.commit")
        with pytest.raises(RegMapError, match="limits.kill has no live copy"):
            dev.read("limits.kill", live=True)
        size = f"0x{dev.regmap.size:x}"     # the BAR file is the map's size
        with pytest.raises(DeviceError, match=f"must be a multiple of 4 below {size}"):
            dev.transport.read32(2)
        with pytest.raises(DeviceError, match=f"must be a multiple of 4 below {size}"):
            dev.transport.write32(dev.regmap.size, 0)


@pytest.mark.parametrize("url, message", [
    ("foo", "a device URL is sim://HOST:PORT or pcie://PATH, not 'foo'"),
    ("pcie://", "a device URL is sim://HOST:PORT or pcie://PATH, not 'pcie://'"),
    ("sim://localhost", "a sim device URL is sim://HOST:PORT"),
    ("sim://localhost:0", "a port between 1 and 65535"),
    ("pcie:///no/such/resource0", "cannot open /no/such/resource0"),
])
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(DeviceError) as info:
        open_device(url)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_check_refuses_what_is_not_this_card(tmp_path: Path, bar: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(DeviceError, match="cannot map"):
        PcieTransport(empty)

    zeros = tmp_path / "zeros"
    zeros.write_bytes(bytes(RM.size))
    with pytest.raises(DeviceError, match="no ticknic card at pcie://.*word 0 is 0x00000000"):
        open_device(f"pcie://{zeros}")
    open_device(f"pcie://{zeros}", check=False).close()

    with Device(PcieTransport(bar), RM) as dev:
        dev.write("id.scratch", 0x5A5A)     # not part of the identity
        dev.check()
        hash_at = RM["id.map_hash"].addr
        dev.transport.write32(hash_at, RM.hash ^ 1)
        with pytest.raises(DeviceError, match="use the export built with the card's bitstream"):
            dev.check()
        dev.transport.write32(hash_at, RM.hash)
        triggers = RM.blocks["triggers"].base
        header = dev.transport.read32(triggers)
        dev.transport.write32(triggers, header ^ 1 << 16)       # one row fewer
        with pytest.raises(DeviceError, match="block headers differ from the map"):
            dev.check()
        dev.transport.write32(triggers, header)
        dev.transport.write32(triggers + 4, triggers)           # a loop
        with pytest.raises(DeviceError, match="broken block header chain"):
            dev.check()
