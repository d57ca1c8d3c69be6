"""tracekit.uapi agrees with the running kernel's own enums (from its BTF).

The uapi values are append-only, so any disagreement is a typo in uapi.py; a kernel newer
than the one uapi.py was written from may add values past our last one, which is allowed.
"""

from __future__ import annotations

from enum import IntEnum

import pytest

from tests.support import require_live
from tracekit import uapi
from tracekit.btf import BTF, Kind

# our enum -> (kernel enum name, prefix of its enumerators)
ENUMS: dict[type[IntEnum], tuple[str, str]] = {
    uapi.Cmd: ("bpf_cmd", "BPF_"),
    uapi.MapType: ("bpf_map_type", "BPF_MAP_TYPE_"),
    uapi.ProgType: ("bpf_prog_type", "BPF_PROG_TYPE_"),
    uapi.AttachType: ("bpf_attach_type", "BPF_"),
    uapi.LinkType: ("bpf_link_type", "BPF_LINK_TYPE_"),
    uapi.Helper: ("bpf_func_id", "BPF_FUNC_"),
}


@pytest.fixture(scope="module")
def vmlinux() -> BTF:
    require_live()
    return BTF.from_file("/sys/kernel/btf/vmlinux")


def kernel_enum(btf: BTF, name: str) -> dict[str, int]:
    ids = btf.find(name, Kind.ENUM) or btf.find(name, Kind.ENUM64)
    assert ids, f"enum {name} is not in the kernel's BTF"
    return {v.name: v.value for v in btf.type(ids[0]).values}


@pytest.mark.parametrize("ours", list(ENUMS), ids=lambda e: e.__name__)
def test_enum_matches_kernel(vmlinux: BTF, ours: type[IntEnum]) -> None:
    require_live()
    kname, prefix = ENUMS[ours]
    kernel = kernel_enum(vmlinux, kname)
    # Every name we define (aliases included) exists in the kernel with the same value.
    for name, member in ours.__members__.items():
        kernel_name = prefix + name  # helper names stay lowercase: BPF_FUNC_map_lookup_elem
        assert kernel_name in kernel, f"{ours.__name__}.{name}: no {kernel_name} in enum {kname}"
        assert kernel[kernel_name] == int(member), (
            f"{ours.__name__}.{name} = {int(member)}, kernel {kernel_name} = {kernel[kernel_name]}")
    # Every kernel value up to our largest is covered (no holes; newer kernels may add more).
    top = max(int(m) for m in ours)
    ours_values = {int(m) for m in ours}
    missing = {n: v for n, v in kernel.items() if v <= top and v not in ours_values and not n.startswith("__")}
    assert not missing, f"{ours.__name__} lacks kernel values {missing}"


def test_helper_max_id(vmlinux: BTF) -> None:
    kernel = kernel_enum(vmlinux, "bpf_func_id")
    ours = getattr(uapi.Helper, "_Helper__BPF_FUNC_MAX_ID", None)
    if ours is not None:
        assert ours >= 0 and ours <= kernel["__BPF_FUNC_MAX_ID"]


def test_flag_constants_match_kernel(vmlinux: BTF) -> None:
    # Flags live in anonymous enums in the uapi header; collect every enumerator once.
    enumerators: dict[str, int] = {}
    for tid in vmlinux.ids():
        if vmlinux.kind_of(tid) == Kind.ENUM:
            for v in vmlinux.type(tid).values:
                enumerators.setdefault(v.name, v.value)
    checked = []
    for name in dir(uapi):
        value = getattr(uapi, name)
        if name.startswith("BPF_") and isinstance(value, int) and name in enumerators:
            assert enumerators[name] == value, f"uapi.{name} = {value}, kernel says {enumerators[name]}"
            checked.append(name)
    # #define-only constants (prog_flags, BPF_OBJ_NAME_LEN) have no BTF; the enum ones must be there.
    for must in ("BPF_F_NO_PREALLOC", "BPF_F_MMAPABLE", "BPF_F_RDONLY_PROG", "BPF_F_INNER_MAP",
                 "BPF_ANY", "BPF_NOEXIST", "BPF_EXIST", "BPF_F_LOCK"):
        assert must in checked, must
