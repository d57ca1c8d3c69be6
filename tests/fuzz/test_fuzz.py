"""Hostile input is an error, never a crash or a hang (issue 10, item 4).

* Every input that ever failed (tests/fuzz/corpus/) must now give a result or a
  TracekitError, within the per-input time limit, under RLIMIT_AS.
* The seeded mutation loop runs for ``TRACEKIT_FUZZ_SECONDS`` (default 60) with seed
  ``TRACEKIT_FUZZ_SEED`` (default: a new one each run, printed); new findings are kept in
  build/fuzz-findings/<seed>/ and the test names them: copy them into the corpus once fixed.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import pytest

from tests.fuzz import harness

#: a few test objects with maps, globals, CO-RE, externs, calls, as extra seeds (built
#: with clang when it is there; the bundled probes are always seeds)
SEED_SOURCES = ("elf_full.bpf.c", "globals.bpf.c", "core_conformance.bpf.c", "events_types.bpf.c",
                "map_slots.bpf.c", "plan_calls.bpf.c", "extern_kconfig.bpf.c", "attach_perfbuf.bpf.c")


def _build_seeds() -> None:
    if shutil.which(os.environ.get("CLANG", "clang-19")) is None:
        return
    from tests.support import build_bpf_object

    for src in SEED_SOURCES:
        try:
            build_bpf_object(src)
        except Exception as e:  # noqa: BLE001 - fewer seeds, not a failure of this test
            print(f"seed {src} not built: {e}")


def _summary(stdout: str) -> dict[str, object]:
    for line in stdout.splitlines():
        if line.startswith("SUMMARY {"):
            got: dict[str, object] = json.loads(line.removeprefix("SUMMARY "))
            return got
    return {}


def test_corpus_replays_as_results_or_errors() -> None:
    paths = sorted(harness.CORPUS.glob("*.bin"))
    assert paths, "tests/fuzz/corpus/ is empty"
    cp = harness.spawn(["replay", "--here", *map(str, paths)], timeout=120 + 5 * len(paths))
    bad = list(harness.iter_findings(cp.stdout))
    assert not bad, "corpus inputs that crash, hang or exhaust memory again:\n" + "\n".join(map(json.dumps, bad))
    assert cp.returncode == 0, cp.stderr[-3000:]
    assert f"SUMMARY {len(paths)} inputs, 0 failures" in cp.stdout


def test_mutation_loop_finds_nothing() -> None:
    seconds = float(os.environ.get("TRACEKIT_FUZZ_SECONDS", "60"))
    seed = int(os.environ.get("TRACEKIT_FUZZ_SEED", str(random.randrange(1 << 30))))
    print(f"fuzz seed {seed}, {seconds:.0f} s (TRACEKIT_FUZZ_SEED / TRACEKIT_FUZZ_SECONDS)")
    _build_seeds()
    out = Path(harness.ROOT) / "build" / "fuzz-findings" / str(seed)
    cp = harness.spawn(["worker", "--seed", str(seed), "--seconds", str(seconds), "--out", str(out)],
                       timeout=seconds + 180)
    findings = list(harness.iter_findings(cp.stdout))
    summary = _summary(cp.stdout)
    assert summary, f"the fuzz worker died: rc={cp.returncode}\n{cp.stderr[-3000:]}"
    print(f"fuzz: {summary['inputs']} inputs, {summary['ok']} results, {summary['error']} TracekitErrors")
    assert summary["inputs"], "no input was executed"
    if findings:
        sigs = sorted({f["signature"] for f in findings})
        pytest.fail(
            f"seed {seed}: {len(sigs)} signature(s) of non-TracekitError outcomes:\n  "
            + "\n  ".join(sigs)
            + "\nexamples (fix, then copy them into tests/fuzz/corpus/):\n  "
            + "\n  ".join(f"{f['file']}  ({f['status']}: {f['detail']})" for f in findings[:10])
        )
    shutil.rmtree(out, ignore_errors=True)


def test_atheris_entry_point_takes_corpus_inputs() -> None:
    """The atheris target (run without atheris here) accepts the corpus without raising."""
    from tests.fuzz import atheris_target

    for p in sorted(harness.CORPUS.glob("*.bin"))[:30]:
        atheris_target.test_one_input(p.read_bytes())
