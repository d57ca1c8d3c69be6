// SPDX-License-Identifier: Apache-2.0
/*
 * snoop_front: the smallest libbpf front end for the bundled opensnoop / execsnoop
 * objects, the C baseline of bench/bench_tools.py (issue 13).
 *
 *   snoop_front OBJ
 *
 * Opens and loads OBJ (programs of missing tracepoints switched off, as the tools do),
 * attaches every program, prints the tool's header once attached (the "ready" moment the
 * benchmark times), then prints one row per `events` ring-buffer record, formatted like
 * libbpf-tools' opensnoop/execsnoop (stdio's default buffering: a pipe or file is block
 * buffered), until SIGINT/SIGTERM.  At exit it prints `events=N` to stderr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/types.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#define event exec_event
#include "execsnoop.h"
#undef event
#define event open_event
#include "opensnoop.h"
#undef event

static volatile sig_atomic_t stop;
static unsigned long long nevents;
static bool is_exec;

static void on_signal(int sig) { (void)sig; stop = 1; }

static int print_fn(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	return level == LIBBPF_DEBUG ? 0 : vfprintf(stderr, fmt, ap);
}

static int on_event(void *ctx, void *data, size_t size)
{
	(void)ctx;
	nevents++;
	if (is_exec && size >= offsetof(struct exec_event, args)) {
		const struct exec_event *e = data;
		printf("%-16s %-6d %-6d %3d ", e->comm, e->pid, e->ppid, e->retval);
		for (unsigned int i = 0; i < e->args_size && offsetof(struct exec_event, args) + i < size; i++)
			putchar(e->args[i] ? e->args[i] : ' ');
		putchar('\n');
	} else if (!is_exec && size >= sizeof(struct open_event)) {
		const struct open_event *e = data;
		int fd = e->ret >= 0 ? e->ret : -1, err = e->ret >= 0 ? 0 : -e->ret;
		printf("%-6d %-16s %3d %3d %s\n", e->pid, e->comm, fd, err, e->fname);
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

int main(int argc, char **argv)
{
	struct bpf_link *links[16];
	struct bpf_program *prog;
	struct bpf_object *obj;
	struct ring_buffer *rb;
	struct bpf_map *events;
	int nlinks = 0, err;

	if (argc != 2) {
		fprintf(stderr, "usage: %s OBJ\n", argv[0]);
		return 2;
	}
	is_exec = strstr(argv[1], "execsnoop") != NULL;
	libbpf_set_print(print_fn);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	obj = bpf_object__open_file(argv[1], NULL);
	if (!obj) {
		fprintf(stderr, "open %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	bpf_object__for_each_program(prog, obj)
		if (!tracepoint_exists(bpf_program__section_name(prog)))
			bpf_program__set_autoload(prog, false);
	err = bpf_object__load(obj);
	if (err) {
		fprintf(stderr, "load %s: %s\n", argv[1], strerror(-err));
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
	rb = events ? ring_buffer__new(bpf_map__fd(events), on_event, NULL, NULL) : NULL;
	if (!rb) {
		fprintf(stderr, "%s: no `events` ring buffer\n", argv[1]);
		return 1;
	}
	if (is_exec)
		printf("%-16s %-6s %-6s %3s %s\n", "PCOMM", "PID", "PPID", "RET", "ARGS");
	else
		printf("%-6s %-16s %3s %3s %s\n", "PID", "COMM", "FD", "ERR", "PATH");
	fflush(stdout);  /* the ready line: the benchmark waits for it */
	while (!stop) {
		err = ring_buffer__poll(rb, 100);
		if (err < 0 && err != -EINTR)
			break;
	}
	ring_buffer__consume(rb);
	fflush(stdout);
	fprintf(stderr, "events=%llu\n", nevents);
	ring_buffer__free(rb);
	for (int i = 0; i < nlinks; i++)
		bpf_link__destroy(links[i]);
	bpf_object__close(obj);
	return 0;
}
