// SPDX-License-Identifier: Apache-2.0
/*
 * libbpf_core_dump: what libbpf (1.1.x) makes of an object's CO-RE relocations against a
 * given target BTF -- the reference side of tests/unit/test_core_differential.py.
 *
 *   libbpf_core_dump [-v] OBJECT TARGET_BTF [PROGRAM...]
 *
 * libbpf only applies CO-RE inside bpf_object__load(), which also creates maps and loads
 * programs.  libbpf 1.1 has no "prepare" step and its gen_loader leaves CO-RE to the
 * kernel, so this tool lets the real bpf_object__load() run but answers every bpf()
 * system call itself (libbpf issues them through libc's syscall(), which this executable
 * interposes): object-creating commands get a /dev/null fd, everything else succeeds.
 * Nothing reaches the kernel, no privileges are needed, and libbpf's relocation code
 * runs unmodified.  Feature probes then all "succeed", so libbpf sanitizes nothing.
 *
 * With PROGRAM arguments only those programs are loaded (autoload off for the rest).
 * Output, per program: "prog NAME N" then N lines "IDX CODE DST SRC OFF IMM" (decimal,
 * imm as signed 32-bit), taken from the BPF_PROG_LOAD attribute libbpf built.  If the
 * load fails: "error ERRNO MESSAGE" and exit status 1.  -v prints libbpf's debug log to
 * stderr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <bpf/libbpf.h>

static int verbose;

struct captured {
	char name[BPF_OBJ_NAME_LEN];
	struct bpf_insn *insns;
	unsigned int cnt;
	int used;
};
static struct captured cap[256];
static int ncap;
static int capturing;

static int fake_fd(void)
{
	return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static long fake_bpf(int cmd, union bpf_attr *attr)
{
	switch (cmd) {
	case BPF_PROG_LOAD:
		if (capturing && ncap < (int)(sizeof(cap) / sizeof(cap[0]))) {
			struct captured *c = &cap[ncap++];

			memcpy(c->name, attr->prog_name, sizeof(c->name));
			c->cnt = attr->insn_cnt;
			c->insns = malloc(c->cnt * sizeof(struct bpf_insn));
			memcpy(c->insns, (void *)(unsigned long)attr->insns, c->cnt * sizeof(struct bpf_insn));
		}
		return fake_fd();
	case BPF_MAP_CREATE:
	case BPF_BTF_LOAD:
	case BPF_OBJ_GET:
	case BPF_LINK_CREATE:
	case BPF_RAW_TRACEPOINT_OPEN:
	case BPF_PROG_GET_FD_BY_ID:
	case BPF_MAP_GET_FD_BY_ID:
	case BPF_BTF_GET_FD_BY_ID:
	case BPF_LINK_GET_FD_BY_ID:
		return fake_fd();
	default:
		return 0;
	}
}

/* Interposes libc's syscall(): libbpf's sys_bpf() calls it with __NR_bpf. */
long syscall(long nr, ...)
{
	long a[6];
	va_list ap;

	va_start(ap, nr);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	if (nr == __NR_bpf)
		return fake_bpf((int)a[0], (union bpf_attr *)a[1]);
	errno = ENOSYS;	/* libbpf makes no other raw system calls on this path */
	return -1;
}

static int print_fn(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (!verbose && level == LIBBPF_DEBUG)
		return 0;
	return vfprintf(stderr, fmt, args);
}

int main(int argc, char **argv)
{
	LIBBPF_OPTS(bpf_object_open_opts, opts);
	struct bpf_object *obj;
	struct bpf_program *prog;
	int argi = 1, err;

	if (argi < argc && !strcmp(argv[argi], "-v")) {
		verbose = 1;
		argi++;
	}
	if (argc - argi < 2) {
		fprintf(stderr, "usage: %s [-v] OBJECT TARGET_BTF [PROGRAM...]\n", argv[0]);
		return 2;
	}
	libbpf_set_print(print_fn);
	opts.btf_custom_path = argv[argi + 1];
	obj = bpf_object__open_file(argv[argi], &opts);
	if (!obj) {
		printf("error %d open failed\n", errno);
		return 1;
	}
	if (argc - argi > 2) {
		bpf_object__for_each_program(prog, obj) {
			int want = 0;

			for (int i = argi + 2; i < argc; i++)
				want |= !strcmp(argv[i], bpf_program__name(prog));
			bpf_program__set_autoload(prog, want);
		}
	}
	capturing = 1;
	err = bpf_object__load(obj);
	capturing = 0;
	if (err) {
		printf("error %d %s\n", -err, strerror(-err));
		bpf_object__close(obj);
		return 1;
	}
	bpf_object__for_each_program(prog, obj) {
		const char *name = bpf_program__name(prog);
		struct captured *c = NULL;

		if (!bpf_program__autoload(prog))
			continue;
		/* The kernel-visible name is truncated to BPF_OBJ_NAME_LEN - 1, so several
		 * programs can share it: libbpf loads them in object order, so take the first
		 * capture with that name not given to an earlier program. */
		for (int i = 0; i < ncap; i++)
			if (!cap[i].used && !strncmp(cap[i].name, name, BPF_OBJ_NAME_LEN - 1)) {
				c = &cap[i];
				c->used = 1;
				break;
			}
		if (!c) {
			printf("error %d program %s was not loaded\n", ENOENT, name);
			return 1;
		}
		printf("prog %s %u\n", name, c->cnt);
		for (unsigned int i = 0; i < c->cnt; i++) {
			struct bpf_insn *in = &c->insns[i];

			printf("%u %u %u %u %d %d\n", i, in->code, in->dst_reg, in->src_reg, in->off, in->imm);
		}
	}
	bpf_object__close(obj);
	return 0;
}
