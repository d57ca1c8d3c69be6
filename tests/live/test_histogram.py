"""Histograms built in the kernel: tests/objects/typed_hist.bpf.c is run with BPF_PROG_TEST_RUN
once per known input and computes log2 and linear slots in BPF; the printed tables must equal
text the test builds itself from the inputs with BCC's printf formats (not with the code under
test).  The expected text uses BCC's own printf-style formats, hence the % formatting."""
# ruff: noqa: UP031

from __future__ import annotations

from collections.abc import Iterator

import pytest

import tracekit
from tests.support import require_live
from tracekit.kernel.maps import num_possible_cpus

pytestmark = pytest.mark.live

# 0 and 1 share the first row; 7/8 and 1023/1024 sit on row boundaries; 1 << 40 needs
# BCC's wide layout (slot 41 > 32) and is clamped to the last libbpf slot (26).
INPUTS = [0, 1, 1, 2, 3, 7, 8, 15, 16, 100, 199, 200, 1023, 1024, 5000, 65535, 1 << 40] + [
    (i * i * 37) % 3000 for i in range(120)
]
LABELS = [i % 3 for i in range(len(INPUTS))]
TAGS = ["alpha" if i % 4 else "beta" for i in range(len(INPUTS))]


def bcc_slot(v: int) -> int:  # BCC's bpf_log2l
    return max(v.bit_length(), 1)


def libbpf_slot(v: int) -> int:  # libbpf-tools' log2l, clamped to MAX_SLOTS - 1
    return min(max(v.bit_length() - 1, 0), 26)


def expected_log2(vals: dict[int, int], val_type: str) -> str:
    """BCC's _print_log2_hist for slot -> count (slot k: 2^(k-1) .. 2^k - 1)."""
    if not any(vals.values()):
        return ""
    top = max(k for k, c in vals.items() if c)
    vmax = max(vals.values())
    wide = top > 32
    width, stars = (20, 20) if wide else (10, 40)
    head = ("               %-29s : count     distribution" if wide else "     %-19s : count     distribution")
    out = [head % val_type]
    for k in range(1, top + 1):
        c = vals.get(k, 0)
        low, high = (0 if k == 1 else 1 << (k - 1)), (1 << k) - 1
        out.append("%*d -> %-*d : %-8d |%-*s|" % (width, low, width, high, c, stars, "*" * (stars * c // vmax)))
    return "".join(line + "\n" for line in out)


def expected_linear(vals: dict[int, int], val_type: str) -> str:
    top = max(k for k, c in vals.items() if c)
    vmax = max(vals.values())
    out = ["     %-13s : count     distribution" % val_type]
    for k in range(top + 1):
        c = vals.get(k, 0)
        out.append("        %-10d : %-8d |%-*s|" % (k, c, 40, "*" * (40 * c // vmax)))
    return "".join(line + "\n" for line in out)


def count(slots: list[int]) -> dict[int, int]:
    out: dict[int, int] = {}
    for s in slots:
        out[s] = out.get(s, 0) + 1
    return out


@pytest.fixture(scope="module")
def obj_path(bpf_objects) -> str:
    require_live()
    return str(bpf_objects("typed_hist.bpf.c"))


@pytest.fixture
def fed(obj_path: str) -> Iterator[tracekit.Object]:
    with tracekit.open(obj_path) as obj:
        obj.load()
        prog = obj.programs["observe"]
        for v, lab, tag in zip(INPUTS, LABELS, TAGS):
            obj.bss.value = v
            obj.bss.label = lab
            obj.bss.tag = tag
            assert prog.test_run() == 0
        yield obj


def test_slot_keyed_array_prints_bcc_table(fed) -> None:
    want = expected_log2(count([bcc_slot(v) for v in INPUTS]), "usecs")
    assert want.startswith("               usecs")  # 1 << 40 needs BCC's wide layout
    assert fed.maps["dist"].histogram().format("usecs") == want
    # per-CPU counts are summed over CPUs
    assert fed.maps["pc_dist"].histogram().format("usecs") == want
    assert len(fed.maps["pc_dist"].typed[1]) == num_possible_cpus()


def test_linear_histogram(fed) -> None:
    want = expected_linear(count([min(v // 10, 19) for v in INPUTS]), "tens")
    hs = fed.maps["lin"].histogram("linear")
    assert hs.format("tens") == want
    # with the BPF side's step the buckets carry value bounds (object form)
    [h] = fed.maps["lin"].histogram("linear", step=10)
    assert h.buckets()[1].low == 10 and h.buckets()[1].high == 19
    assert h.total == len(INPUTS)


def test_label_and_slot_key_one_section_per_label(fed) -> None:
    hs = fed.maps["keyed"].histogram(sort=True)
    want = ""
    for lab in sorted(set(LABELS)):
        slots = [bcc_slot(v) for v, lb in zip(INPUTS, LABELS) if lb == lab]
        want += "\npid = %s\n" % lab + expected_log2(count(slots), "usecs")
    assert hs.format("usecs") == want
    assert hs.section_header == "pid"
    by = hs.by_label()
    assert sorted(by) == [0, 1, 2] and sum(h.total for h in hs) == len(INPUTS)


def test_slots_in_value_libbpf_layout_with_sum(fed) -> None:
    hs = fed.maps["hists"].histogram(sort=True, section_header="comm")
    want = ""
    for tag in sorted(set(TAGS)):
        vals = [v for v, t in zip(INPUTS, TAGS) if t == tag]
        # libbpf slot k = BCC row k + 1
        want += "\ncomm = %s\n" % tag + expected_log2(count([libbpf_slot(v) + 1 for v in vals]), "msecs")
    assert hs.format("msecs") == want
    d = {h.labels["comm"]: h.to_dict() for h in hs}
    for tag in set(TAGS):
        vals = [v for v, t in zip(INPUTS, TAGS) if t == tag]
        assert d[tag]["sum"] == sum(vals) and d[tag]["count"] == len(vals)
    alpha = hs.by_label()["alpha"]
    cum = alpha.cumulative()
    assert cum[-1][1] == TAGS.count("alpha")
    assert cum[0] == (1.0, sum(1 for v, t in zip(INPUTS, TAGS) if t == "alpha" and v <= 1))


def test_reset_reads_and_clears(fed) -> None:
    first = fed.maps["keyed"].histogram(reset=True)
    assert sum(h.total for h in first) == len(INPUTS)
    assert fed.maps["keyed"].histogram() == [] and fed.maps["keyed"].histogram().format() == ""
    arr = fed.maps["dist"].histogram(reset=True)
    assert arr[0].total == len(INPUTS)
    assert fed.maps["dist"].histogram()[0].total == 0 and fed.maps["dist"].histogram().format() == ""
    # the next interval counts only what came after the reset
    fed.bss.value = 5
    fed.programs["observe"].test_run()
    assert fed.maps["dist"].histogram().format("usecs") == expected_log2({3: 1}, "usecs")
