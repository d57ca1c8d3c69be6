"""Stack traces and symbols: kernel (kallsyms), user (ELF symbol tables per process, JIT
perf maps), stack-trace maps, and BCC's text forms (frames, blocks, folded stacks).

Modules, one concept each: :mod:`.kallsyms`, :mod:`.elfsyms`, :mod:`.procmaps`,
:mod:`.perfmap`, :mod:`.resolver` (per-process symbolizer, ELF cache), :mod:`.stacks`.
"""

from tracekit.symbols.elfsyms import ElfSymbols, Symbol
from tracekit.symbols.kallsyms import KernelSymbol, KernelSymbols, kernel_symbols
from tracekit.symbols.perfmap import PerfMap
from tracekit.symbols.procmaps import Mapping, parse_maps, read_maps
from tracekit.symbols.resolver import ElfCache, Frame, ProcessSymbols, Symbolizer
from tracekit.symbols.stacks import (
    BuildIdFrame,
    StackTraces,
    decode_build_id_stack,
    decode_ips,
    fold,
    format_block,
    format_stack,
    stack_id_missed,
)

__all__ = [
    "ElfSymbols", "Symbol", "KernelSymbol", "KernelSymbols", "kernel_symbols", "PerfMap", "Mapping",
    "parse_maps", "read_maps", "ElfCache", "Frame", "ProcessSymbols", "Symbolizer", "BuildIdFrame",
    "StackTraces", "decode_build_id_stack", "decode_ips", "fold", "format_block", "format_stack",
    "stack_id_missed",
]
