#!/bin/sh
# Build the libbpf C baselines and test tools into bench/c/build/ (not committed).
# Needs: gcc (or $CC), libbpf-dev (Debian's libbpf 1.1.2 is what the figures assume),
# clang-19 for the BPF producer object.  These link libbpf; tracekit itself never does.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
OUT="$HERE/build"
CC=${CC:-cc}
CLANG=${CLANG:-clang-19}
CFLAGS=${CFLAGS:--O2 -g -Wall -Wextra -Wno-unused-parameter}
mkdir -p "$OUT"

for tool in load_baseline btf_baseline ringbuf_baseline probe_events snoop_front storm hist_front wakeup_storm; do
	[ -f "$HERE/$tool.c" ] || continue
	$CC $CFLAGS -I "$HERE/../../tracekit/probes" -o "$OUT/$tool" "$HERE/$tool.c" -lbpf -lpthread
done

# The producer has no CO-RE needs: build it against the UAPI headers, not vmlinux.h.
$CLANG -g -O2 -target bpf -Wall -Werror -I /usr/include/$(uname -m)-linux-gnu \
	-ffile-prefix-map="$HERE"=bench/c \
	-c "$HERE/ringbuf_producer.bpf.c" -o "$OUT/ringbuf_producer.bpf.o"

echo "built into $OUT: $(cd "$OUT" && ls | tr '\n' ' ')"
