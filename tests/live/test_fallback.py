"""Fallback chains in Probe declarations (issue 12 item 6), on the real kernel.

On this host fentry is refused and there are no kprobes, so the unlinkat() chains end at
the tracepoint; in the 6.1/6.12 guests (tests/vm/test_in_guest_attach.py runs this file)
fentry is taken, and a function missing under its first name falls back to the kprobe on
its real name.  The choice is visible in ``probe.chosen`` and only the chosen program of
a chain is loaded.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time

import pytest

import tracekit
from tests.support import KNOWN_FEATURES, SERIES, kernel_function, prebuilt, require_live
from tracekit.hooks import fallback

pytestmark = pytest.mark.live

HAS_FENTRY = SERIES in KNOWN_FEATURES["fentry"]
HAS_KPROBES = SERIES in KNOWN_FEATURES["kprobes"]
#: the object's SEC("fentry/do_unlinkat") etc.; 7.x renamed the function filename_unlinkat
UNLINKAT = kernel_function("do_unlinkat")


def _probe_class() -> type[tracekit.Probe]:
    class Chains(tracekit.Probe):
        object = prebuilt("fallback_chain.bpf.c")
        event = None
        fallbacks = {
            "unlink": [("fe_unlink", UNLINKAT), ("kp_unlink", UNLINKAT), "tp_unlink"],
            "renamed": [("fe_renamed", "do_unlinkat_v99"), ("kp_renamed", "do_unlinkat_v99"),
                        ("kp_renamed", UNLINKAT), "tp_renamed"],
            "switch": ["btf_switch", "raw_switch", "tp_switch"],
        }

    return Chains


def test_chains_pick_the_first_supported_hook(caplog: pytest.LogCaptureFixture) -> None:
    require_live()
    fallback.reset()
    with caplog.at_level(logging.INFO, logger="tracekit.probe"), _probe_class()() as probe:
        d = tempfile.mkdtemp()
        dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for i in range(5):
                open(os.path.join(d, f"f{i}"), "w").close()
                os.unlink(f"f{i}", dir_fd=dfd)  # unlinkat(2): do_unlinkat and sys_enter_unlinkat
            # a context switch for the tp_btf/sched_switch program: without one, a guest whose
            # other vCPU idles can run the whole loop without any (seen once on 6.12)
            time.sleep(0.01)
        finally:
            os.close(dfd)
            os.rmdir(d)
        bss = probe.obj.bss
        loaded = {name for name, p in probe.obj.programs.items() if p.loaded}
        hits = {k: getattr(bss, k) for k in ("hits_fentry", "hits_kprobe", "hits_tp", "hits_renamed_fentry",
                                             "hits_renamed_kprobe", "hits_renamed_tp", "hits_tp_btf",
                                             "hits_raw_tp", "hits_sched_tp")}
    if HAS_FENTRY:
        want_unlink, want_renamed = ("fe_unlink", f"fentry/{UNLINKAT}"), ("kp_renamed", f"kprobe/{UNLINKAT}")
    elif HAS_KPROBES:
        want_unlink, want_renamed = ("kp_unlink", f"kprobe/{UNLINKAT}"), ("kp_renamed", f"kprobe/{UNLINKAT}")
    else:  # this host: fentry refused (EPERM), no kprobes
        want_unlink = ("tp_unlink", "tracepoint/syscalls/sys_enter_unlinkat")
        want_renamed = ("tp_renamed", "tracepoint/syscalls/sys_enter_unlinkat")
    assert probe.chosen == {"unlink": want_unlink, "renamed": want_renamed,
                            "switch": ("btf_switch", "tp_btf/sched_switch")}
    assert loaded == {want_unlink[0], want_renamed[0], "btf_switch"}
    by_prog = {"fe_unlink": "hits_fentry", "kp_unlink": "hits_kprobe", "tp_unlink": "hits_tp",
               "kp_renamed": "hits_renamed_kprobe", "tp_renamed": "hits_renamed_tp"}
    # The chosen programs ran (>= 5: other processes may unlink too); the others never loaded.
    assert hits[by_prog[want_unlink[0]]] >= 5 and hits[by_prog[want_renamed[0]]] >= 5
    assert hits["hits_tp_btf"] > 0 and hits["hits_raw_tp"] == hits["hits_sched_tp"] == 0
    assert sum(v for k, v in hits.items() if k not in (by_prog[want_unlink[0]], by_prog[want_renamed[0]],
                                                       "hits_tp_btf")) == 0
    text = caplog.text
    assert "hook 'unlink' uses " + want_unlink[0] in text
    if not HAS_FENTRY:
        assert f"skipped fe_unlink (fentry/{UNLINKAT})" in text
    assert "no function 'do_unlinkat_v99'" in text


def test_a_chain_with_no_supported_hook_says_what_was_tried() -> None:
    require_live()

    class Nothing(tracekit.Probe):
        object = prebuilt("fallback_chain.bpf.c")
        event = None
        fallbacks = {"unlink": [("fe_unlink", "no_such_fn_a"), ("kp_unlink", "no_such_fn_b")]}

    with pytest.raises(tracekit.NotSupportedError) as ei:
        Nothing().start()
    msg = str(ei.value)
    assert "no hook for 'unlink'" in msg and "fe_unlink (fentry/no_such_fn_a)" in msg
    assert "kp_unlink (kprobe/no_such_fn_b)" in msg

    class Typo(tracekit.Probe):
        object = prebuilt("fallback_chain.bpf.c")
        event = None
        fallbacks = {"unlink": ["fe_unlnk"]}

    with pytest.raises(tracekit.TracekitError, match="'fe_unlnk', not a program"):
        Typo().start()


def test_btf_target_is_for_core_only_attach_ids_come_from_the_kernel(tmp_path) -> None:
    """btf= (libbpf's btf_custom_path) steers CO-RE; tp_btf's attach id is the kernel's."""
    require_live()
    from tracekit.btf.types import INT_SIGNED, Kind, Type
    from tracekit.btf.writer import BTFBuilder

    b = BTFBuilder()
    b.add_type(Type(Kind.INT, "int", size=4, encoding=INT_SIGNED, bits=32))
    custom = tmp_path / "other-kernel.btf"  # a "kernel" with no tracepoints at all
    custom.write_bytes(b.encode())
    obj = tracekit.open(prebuilt("fallback_chain.bpf.c"), btf=custom)
    with obj:
        for p in obj.programs.values():
            p.autoload = p.name == "btf_switch"
        obj.load()
        obj.attach()
        import time

        deadline = time.monotonic() + 5
        while obj.bss.hits_tp_btf == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert obj.bss.hits_tp_btf > 0
