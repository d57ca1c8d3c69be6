// SPDX-License-Identifier: Apache-2.0
/*
 * probe_events: load a bundled probe with libbpf, attach it, run a command, print events.
 *
 *   probe_events [-u UID] [-x] [-m MAX_ARGS] [-p PID] OBJ [--] COMMAND [ARGS...]
 *
 * A cross-check for tracekit's bundled objects that does not depend on tracekit: it
 * shows that execsnoop.bpf.o / opensnoop.bpf.o load, attach and emit the expected
 * records.  Events of the `events` ring buffer are decoded with the probes' own headers
 * (chosen by the object's file name); every 8-byte .bss global is printed at the end as
 * `bss.<name>=<value>`.  Tracepoints need tracefs (mount -t tracefs tracefs /sys/kernel/tracing).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
#include <linux/types.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

/* Both probes call their record `struct event`: rename each on inclusion. */
#define event exec_event
#include "execsnoop.h"
#undef event
#define event open_event
#include "opensnoop.h"
#undef event

enum kind { KIND_RAW, KIND_EXEC, KIND_OPEN };

static enum kind kind;

static int print_fn(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	return level == LIBBPF_DEBUG ? 0 : vfprintf(stderr, fmt, ap);
}

static int on_event(void *ctx, void *data, size_t size)
{
	(void)ctx;
	if (kind == KIND_EXEC && size >= offsetof(struct exec_event, args)) {
		const struct exec_event *e = data;
		printf("exec pid=%d ppid=%d uid=%u ret=%d comm=%.16s args_count=%d args=",
		       e->pid, e->ppid, e->uid, e->retval, e->comm, e->args_count);
		for (unsigned int i = 0; i < e->args_size && offsetof(struct exec_event, args) + i < size; i++)
			putchar(e->args[i] ? e->args[i] : ' ');
		putchar('\n');
	} else if (kind == KIND_OPEN && size >= sizeof(struct open_event)) {
		const struct open_event *e = data;
		printf("open pid=%d tid=%d uid=%u ret=%d flags=0x%x mode=0%o comm=%.16s fname=%.255s\n",
		       e->pid, e->tid, e->uid, e->ret, e->flags, e->mode, e->comm, e->fname);
	} else {
		printf("record size=%zu\n", size);
	}
	return 0;
}

static bool tracepoint_exists(const char *sec)
{
	char path[512];

	if (strncmp(sec, "tracepoint/", 11))
		return true;
	snprintf(path, sizeof(path), "/sys/kernel/tracing/events/%s", sec + 11);
	return access(path, F_OK) == 0;
}

static void print_bss(struct bpf_object *obj)
{
	const struct btf_var_secinfo *vs;
	const struct btf_type *sec;
	struct bpf_map *map = NULL, *m;
	struct btf *btf = bpf_object__btf(obj);
	unsigned char *val;
	__u32 zero = 0;
	int id;

	bpf_object__for_each_map(m, obj) {
		const char *name = bpf_map__name(m);
		size_t len = strlen(name);
		if (len >= 4 && !strcmp(name + len - 4, ".bss"))
			map = m;
	}
	if (!map || !btf || (id = btf__find_by_name_kind(btf, ".bss", BTF_KIND_DATASEC)) < 0)
		return;
	val = calloc(1, bpf_map__value_size(map));
	if (!val || bpf_map_lookup_elem(bpf_map__fd(map), &zero, val))
		return;
	sec = btf__type_by_id(btf, id);
	vs = btf_var_secinfos(sec);
	for (int i = 0; i < btf_vlen(sec); i++, vs++) {
		const struct btf_type *var = btf__type_by_id(btf, vs->type);
		if (vs->size == 8)
			printf("bss.%s=%llu\n", btf__name_by_offset(btf, var->name_off),
			       *(unsigned long long *)(val + vs->offset));
	}
	free(val);
}

int main(int argc, char **argv)
{
	long uid = -1, max_args = -1, pid = 0;
	bool failed = false;
	struct bpf_link *links[16];
	struct bpf_program *prog;
	struct bpf_object *obj;
	struct ring_buffer *rb;
	struct bpf_map *events;
	int nlinks = 0, opt, status, err;
	const char *path;
	pid_t child;

	while ((opt = getopt(argc, argv, "+u:xm:p:")) != -1) {
		switch (opt) {
		case 'u': uid = strtol(optarg, NULL, 0); break;
		case 'x': failed = true; break;
		case 'm': max_args = strtol(optarg, NULL, 0); break;
		case 'p': pid = strtol(optarg, NULL, 0); break;
		default: goto usage;
		}
	}
	if (optind >= argc)
		goto usage;
	path = argv[optind++];
	if (optind < argc && !strcmp(argv[optind], "--"))
		optind++;
	if (optind >= argc)
		goto usage;
	kind = strstr(path, "execsnoop") ? KIND_EXEC : strstr(path, "opensnoop") ? KIND_OPEN : KIND_RAW;
	libbpf_set_print(print_fn);

	obj = bpf_object__open_file(path, NULL);
	if (!obj) {
		fprintf(stderr, "open %s: %s\n", path, strerror(errno));
		return 1;
	}
	/* Knobs live in .rodata: set them before load, through the map's initial value. */
	{
		struct bpf_map *m;
		bpf_object__for_each_map(m, obj) {
			const char *name = bpf_map__name(m);
			size_t len = strlen(name), sz;
			struct btf *btf = bpf_object__btf(obj);
			const struct btf_var_secinfo *vs;
			const struct btf_type *sec;
			unsigned char *data;
			int id;

			if (len < 7 || strcmp(name + len - 7, ".rodata") || !btf)
				continue;
			data = (unsigned char *)bpf_map__initial_value(m, &sz);
			id = btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC);
			if (!data || id < 0)
				continue;
			sec = btf__type_by_id(btf, id);
			vs = btf_var_secinfos(sec);
			for (int i = 0; i < btf_vlen(sec); i++, vs++) {
				const char *vn = btf__name_by_offset(btf, btf__type_by_id(btf, vs->type)->name_off);
				if (uid >= 0 && !strcmp(vn, "targ_uid"))
					*(__u32 *)(data + vs->offset) = uid;
				else if (!strcmp(vn, "targ_failed") || !strcmp(vn, "ignore_failed"))
					*(bool *)(data + vs->offset) = vn[0] == 't' ? failed : !failed;
				else if (max_args > 0 && !strcmp(vn, "max_args"))
					*(int *)(data + vs->offset) = max_args;
				else if (pid > 0 && !strcmp(vn, "targ_tgid"))
					*(__u32 *)(data + vs->offset) = pid;
			}
		}
	}
	bpf_object__for_each_program(prog, obj)
		if (!tracepoint_exists(bpf_program__section_name(prog)))
			bpf_program__set_autoload(prog, false);
	err = bpf_object__load(obj);
	if (err) {
		fprintf(stderr, "load %s: %s\n", path, strerror(-err));
		return 1;
	}
	bpf_object__for_each_program(prog, obj) {
		if (!bpf_program__autoload(prog) || nlinks == 16)
			continue;
		links[nlinks] = bpf_program__attach(prog);
		if (!links[nlinks]) {
			fprintf(stderr, "attach %s: %s\n", bpf_program__name(prog), strerror(errno));
			return 1;
		}
		nlinks++;
	}
	events = bpf_object__find_map_by_name(obj, "events");
	if (!events) {
		fprintf(stderr, "%s has no `events` map\n", path);
		return 1;
	}
	rb = ring_buffer__new(bpf_map__fd(events), on_event, NULL, NULL);
	if (!rb)
		return 1;

	child = fork();
	if (child == 0) {
		execvp(argv[optind], argv + optind);
		_exit(127);
	}
	while (waitpid(child, &status, WNOHANG) == 0)
		ring_buffer__poll(rb, 50);
	ring_buffer__poll(rb, 100);   /* records submitted just before the exit */
	ring_buffer__consume(rb);
	printf("child_pid=%d\n", child);
	print_bss(obj);
	ring_buffer__free(rb);
	for (int i = 0; i < nlinks; i++)
		bpf_link__destroy(links[i]);
	bpf_object__close(obj);
	return 0;
usage:
	fprintf(stderr, "usage: %s [-u UID] [-x] [-m MAX_ARGS] [-p PID] OBJ [--] COMMAND [ARGS...]\n", argv[0]);
	return 2;
}
