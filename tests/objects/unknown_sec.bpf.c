// A program in a section no loader knows.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

SEC("nosuchtype/foo")
int prog(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
