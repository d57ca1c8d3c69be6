"""Feature probes against the running kernel, the CLI, and forced BTF sanitization.

Sanitization is exercised by pretending kinds are missing (features.override): the
object must still load and run, and the BTF the kernel holds (read back by fd) must not
contain any of the kinds we said it lacks.
"""

from __future__ import annotations

import json
import os

import pytest

import tracekit
from tests.support import build_bpf_object, require_live
from tracekit.btf.types import LINKAGE_GLOBAL, Kind
from tracekit.cli import main as cli_main
from tracekit.kernel import features
from tracekit.kernel.kconfig import kernel_version


@pytest.fixture(autouse=True)
def _live() -> None:
    require_live()


def _kv(a: int, b: int) -> int:
    return (a << 16) + (b << 8)


#: probe -> first kernel with the feature (upstream); backports could only make these True earlier
SINCE = {
    "btf": _kv(4, 18), "btf_func": _kv(5, 0), "btf_datasec": _kv(5, 2), "btf_func_global": _kv(5, 6),
    "btf_float": _kv(5, 13), "bpf_cookie": _kv(5, 15), "btf_decl_tag": _kv(5, 16), "btf_type_tag": _kv(5, 17),
    "btf_enum64": _kv(6, 0), "arg_ctx_tag": _kv(6, 8),
}


def test_probes_match_kernel_version() -> None:
    kv = kernel_version()
    got = features.probe_all()
    for name, since in SINCE.items():
        if kv >= since:
            assert got[name] is True, name
        elif name == "arg_ctx_tag":
            assert got[name] is False  # the old-kernel path of the __arg_ctx fallback depends on it
    assert got["prog_type"]["syscall"] and got["prog_type"]["raw_tracepoint"] and got["prog_type"]["tracepoint"]
    assert got["map_type"]["ringbuf"] and got["map_type"]["array"] and got["map_type"]["hash_of_maps"]
    assert got["syscall_wrapper"] is (os.uname().machine == "x86_64")
    assert got["attach_type"]["trace_kprobe_multi"] is (kv >= _kv(5, 18))
    # memoized: a second call asks the kernel nothing and agrees
    assert features.probe_all() == got


def test_override_and_restore() -> None:
    real = features.btf_float()
    with features.override(btf_float=not real, prog_type_kprobe=False):
        assert features.btf_float() is (not real)
        assert features.prog_type("kprobe") is False
        assert features.btf_features().float is (not real)
    assert features.btf_float() is real
    with pytest.raises(ValueError, match="unknown feature"):
        with features.override(no_such_thing=True):
            pass


def test_cli_features(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["features", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data == json.loads(json.dumps(features.probe_all()))
    assert cli_main(["features", "btf_enum64", "map_type_ringbuf"]) == 0
    out = capsys.readouterr().out.split()
    assert out == ["btf_enum64", "yes" if features.btf_enum64() else "no", "map_type_ringbuf", "yes"]
    assert cli_main(["features", "nope"]) == 2


# --- sanitization, forced ----------------------------------------------------------------

MISSING_KINDS = {
    "btf_datasec": {Kind.VAR, Kind.DATASEC},
    "btf_func": {Kind.FUNC, Kind.FUNC_PROTO},
    "btf_decl_tag": {Kind.DECL_TAG},
    "btf_float": {Kind.FLOAT},
    "btf_type_tag": {Kind.TYPE_TAG},
    "btf_enum64": {Kind.ENUM64},
}


def _kernel_btf_kinds(obj: tracekit.Object) -> tuple[set[Kind], bool]:
    from tracekit.kernel.syscalls import bpf

    assert obj._btf_fd is not None, "the kernel refused the sanitized BTF"
    btf = tracekit.BTF(bpf.btf_data(obj._btf_fd.fd))
    kinds = {btf.kind_of(t) for t in range(1, len(btf))}
    has_global = any(btf.type(t).linkage == LINKAGE_GLOBAL for t in range(1, len(btf)) if btf.kind_of(t) == Kind.FUNC)
    return kinds, has_global


EXPECTED = 0x3FF8000000000000 ^ 0x100000000 ^ 6  # bits of 1.5, TK_BIG_A, add_one(5); tagged_ptr NULL


@pytest.mark.parametrize("missing", [*MISSING_KINDS, "btf_func_global", "all"])
def test_sanitized_object_loads_and_runs(missing: str) -> None:
    off = {k: False for k in [*MISSING_KINDS, "btf_func_global", "btf_qmark_datasec"]} if missing == "all" else {missing: False}
    if missing == "btf_datasec":
        # kernels without DATASEC (< 5.2) predate DECL_TAG (5.16); a tag on a VAR turned INT is invalid
        off["btf_decl_tag"] = False
    path = build_bpf_object("extern_sanitize.bpf.c")
    with features.override(**off), tracekit.open(path) as obj:
        local = obj.spec.btf
        local_kinds = {local.kind_of(t) for t in range(1, len(local))}
        obj.load()
        kinds, has_global = _kernel_btf_kinds(obj)
        for feat in off:
            gone = MISSING_KINDS.get(feat, set())
            assert gone <= local_kinds or feat == "btf_qmark_datasec"  # the object really has them
            assert not (kinds & gone), (feat, kinds)
        if "btf_func_global" in off:
            assert not has_global
        assert obj.programs["sanitize_prog"].test_run() == 0
        assert obj.bss.result == EXPECTED
    # and without pretending: the same result from the unsanitized object
    with tracekit.open(path) as obj:
        obj.load()
        kinds, has_global = _kernel_btf_kinds(obj)
        assert {Kind.FLOAT, Kind.ENUM64, Kind.TYPE_TAG, Kind.DECL_TAG} <= kinds and has_global
        obj.programs["sanitize_prog"].test_run()
        assert obj.bss.result == EXPECTED
