"""Histogram printing (tracekit.data.histogram) with hand-made counts.

The expected tables are written out by hand from BCC's table.py algorithm
(``_print_log2_hist`` / ``_print_linear_hist``): header ``"     %-19s : count     distribution"``,
rows ``"%10d -> %-10d : %-8d |%-40s|"``, a star for each i >= 0 with
``i <= 40*val/max - 1`` (so floor(40*val/max) stars), rows 1..idx_max for BCC's slots.
"""

from __future__ import annotations

import json
import math

import pytest

from tracekit.data.histogram import (
    Bucket,
    Histogram,
    HistogramError,
    HistogramSet,
)

# BCC slots (index k holds 2^(k-1) .. 2^k - 1): 1 value in 0..1, 3 in 4..7, 10 in 8..15,
# 7 in 16..31, 2 in 64..127.  max = 10, so stars = 4, 0, 12, 40, 28, 0, 8.
REF_VALS = [0, 1, 0, 3, 10, 7, 0, 2]
REF_TABLE = (
    "     usecs               : count     distribution\n"
    "         0 -> 1          : 1        |****                                    |\n"
    "         2 -> 3          : 0        |                                        |\n"
    "         4 -> 7          : 3        |************                            |\n"
    "         8 -> 15         : 10       |****************************************|\n"
    "        16 -> 31         : 7        |****************************            |\n"
    "        32 -> 63         : 0        |                                        |\n"
    "        64 -> 127        : 2        |********                                |\n"
)


def test_bcc_log2_reference_table() -> None:
    assert Histogram(REF_VALS, slots="bcc").format("usecs") == REF_TABLE


def test_libbpf_convention_prints_the_same_bcc_table() -> None:
    # libbpf's log2l puts 0..1 in slot 0: the same data shifted by one slot
    h = Histogram(REF_VALS[1:], slots="libbpf", unit="usecs")
    assert h.format() == REF_TABLE


def test_star_rounding_is_floor() -> None:
    # 40*1/3 = 13.33 -> 13 stars; 40*2/3 = 26.67 -> 26 stars
    out = Histogram([0, 1, 2, 3], slots="bcc").format("msecs").splitlines()
    assert out == [
        "     msecs               : count     distribution",
        "         0 -> 1          : 1        |*************                           |",
        "         2 -> 3          : 2        |**************************              |",
        "         4 -> 7          : 3        |****************************************|",
    ]


def test_trimming_like_bcc() -> None:
    assert Histogram([], slots="bcc").format() == ""
    assert Histogram([0, 0, 0], slots="bcc").format() == ""
    # BCC prints nothing when only its (never written) slot 0 holds a count
    assert Histogram([5], slots="bcc").format() == ""
    # leading empty rows are printed ... unless strip_leading_zero
    h = Histogram([0, 0, 0, 4], slots="bcc")
    assert h.format().splitlines()[1:] == [
        "         0 -> 1          : 0        |                                        |",
        "         2 -> 3          : 0        |                                        |",
        "         4 -> 7          : 4        |****************************************|",
    ]
    assert h.format(strip_leading_zero=True).splitlines()[1:] == [
        "         4 -> 7          : 4        |****************************************|",
    ]


def test_wide_table_above_slot_32() -> None:
    vals = [0] * 34
    vals[1], vals[33] = 2, 1  # slot 33: 2^32 .. 2^33 - 1
    lines = Histogram(vals, slots="bcc").format("nsecs").splitlines()
    assert lines[0] == "               nsecs                         : count     distribution"
    assert lines[1] == "                   0 -> 1                    : 2        |********************|"
    assert lines[2] == "                   2 -> 3                    : 0        |                    |"
    assert lines[-1] == "          4294967296 -> 8589934591           : 1        |**********          |"
    assert len(lines) == 34


def test_bcc_linear() -> None:
    h = Histogram([0, 2, 0, 8], kind="linear")
    assert h.format("slot") == (
        "     slot          : count     distribution\n"
        "        0          : 0        |                                        |\n"
        "        1          : 2        |**********                              |\n"
        "        2          : 0        |                                        |\n"
        "        3          : 8        |****************************************|\n"
    )
    assert h.format("slot", strip_leading_zero=True).splitlines()[1] == (
        "        1          : 2        |**********                              |")
    assert Histogram([0, 0], kind="linear").format() == ""
    # base/step label rows by value (BCC itself only has base 0, step 1)
    assert Histogram([1, 1], kind="linear", base=100, step=10).format().splitlines()[2].startswith(
        "        110        : 1 ")


def test_libbpf_style() -> None:
    h = Histogram([1, 0, 2], slots="libbpf")
    assert h.format("usecs", style="libbpf") == (
        "     usecs               : count    distribution\n"
        "         0 -> 1          : 1        |********************                    |\n"
        "         2 -> 3          : 0        |                                        |\n"
        "         4 -> 7          : 2        |****************************************|\n"
    )


def test_keyed_sections() -> None:
    hs = HistogramSet([
        Histogram([0, 1], labels={"disk": "vda"}),
        Histogram([0, 0, 2], labels={"disk": "vdb"}),
    ], section_header="disk", keyed=True)
    assert hs.format("usecs") == (
        "\ndisk = vda\n"
        "     usecs               : count     distribution\n"
        "         0 -> 1          : 1        |****************************************|\n"
        "\ndisk = vdb\n"
        "     usecs               : count     distribution\n"
        "         0 -> 1          : 0        |                                        |\n"
        "         2 -> 3          : 2        |****************************************|\n"
    )
    assert hs.format(section_header="dev", section_print_fn=lambda d: d.upper()).startswith("\ndev = VDA\n")
    assert set(hs.by_label()) == {"vda", "vdb"}


def test_object_json_and_prometheus_forms() -> None:
    h = Histogram(REF_VALS, slots="bcc", labels={"comm": "bash"}, sum=1234, unit="usecs")
    assert h.buckets() == [Bucket(0, 1, 1), Bucket(2, 3, 0), Bucket(4, 7, 3), Bucket(8, 15, 10),
                           Bucket(16, 31, 7), Bucket(32, 63, 0), Bucket(64, 127, 2)]
    assert h.total == 23
    assert h.cumulative() == [(1.0, 1), (3.0, 1), (7.0, 4), (15.0, 14), (31.0, 21), (63.0, 21), (127.0, 23),
                              (math.inf, 23)]
    d = json.loads(h.to_json())
    assert d == {"kind": "log2", "unit": "usecs", "labels": {"comm": "bash"}, "count": 23, "sum": 1234,
                 "buckets": [{"low": b.low, "high": b.high, "count": b.count} for b in h.buckets()]}
    lin = Histogram([3, 0, 1], kind="linear", base=10, step=5)
    assert lin.buckets() == [Bucket(10, 14, 3), Bucket(15, 19, 0), Bucket(20, 24, 1)]
    # BCC's -j dict
    assert h.bcc_json(ts="2026-12-01 10:00:00", section=("comm", "bash")) == {
        "ts": "2026-12-01 10:00:00", "val_type": "usecs", "comm": "bash",
        "data": [{"interval-start": s, "interval-end": e, "count": c}
                 for s, e, c in [(0, 1, 1), (2, 3, 0), (4, 7, 3), (8, 15, 10), (16, 31, 7), (32, 63, 0),
                                 (64, 127, 2)]]}


def test_bad_options() -> None:
    with pytest.raises(HistogramError, match="use 'log2' or 'linear'"):
        Histogram([1], kind="exp")
    with pytest.raises(HistogramError, match="slot convention"):
        Histogram([1], slots="bpftrace")
    with pytest.raises(HistogramError, match="style"):
        Histogram([0, 1]).format(style="fancy")


def test_adding_intervals() -> None:
    a = Histogram([0, 1, 2], labels={"pid": 1}, sum=10)
    b = Histogram([0, 0, 1, 4], labels={"pid": 1}, sum=30)
    c = a + b
    assert c.counts == [0, 1, 3, 4] and c.sum == 40 and c.labels == {"pid": 1}
    assert (a + Histogram([0, 1], labels={"pid": 1})).sum is None  # unknown once one side lacks it
    with pytest.raises(HistogramError, match="cannot add"):
        a + Histogram([0, 1], labels={"pid": 2})


def test_set_bcc_json() -> None:
    hs = HistogramSet([Histogram([0, 1], labels={"disk": "vda"}, unit="usecs")], section_header="disk", keyed=True)
    assert hs.bcc_json(ts="t") == [{"ts": "t", "val_type": "usecs", "disk": "vda",
                                   "data": [{"interval-start": 0, "interval-end": 1, "count": 1}]}]
    single = HistogramSet([Histogram([0, 0, 3])])
    assert single.bcc_json(ts="t")[0]["data"][-1] == {"interval-start": 2, "interval-end": 3, "count": 3}
    assert "disk" not in single.bcc_json(ts="t")[0]
