// SPDX-License-Identifier: Apache-2.0
/*
 * hist_front: the smallest libbpf front end for the bundled runqlat object, the C side
 * of bench/bench_side_by_side.py (issue 14).
 *
 *   hist_front OBJ [INTERVAL]
 *
 * Opens and loads OBJ with only the tp_btf programs (tracekit-runqlat prefers tp_btf and
 * falls back to raw_tp; both front ends must run the same programs to be compared),
 * attaches them, prints tracekit-runqlat's banner once attached (the "ready" moment),
 * then waits INTERVAL seconds or until SIGINT/SIGTERM, reads and clears the `hists` map
 * and prints the key-0 histogram in BCC's print_log2_hist layout (what tracekit-runqlat
 * prints), then exits.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/types.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "runqlat.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig) { (void)sig; stop = 1; }

static int print_fn(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	return level == LIBBPF_DEBUG ? 0 : vfprintf(stderr, fmt, ap);
}

/* BCC's layout: one row per slot up to the last non-empty one, 40-column bars scaled to
 * the largest slot (truncating, as BCC's int(val * 40 / max)). */
static void print_hist(const __u32 *slots, int n, const char *unit)
{
	int last = -1;
	__u32 max = 0;

	for (int i = 0; i < n; i++) {
		if (slots[i])
			last = i;
		if (slots[i] > max)
			max = slots[i];
	}
	if (last < 0)
		return;
	printf("     %-19s : count     distribution\n", unit);
	for (int i = 0; i <= last; i++) {
		unsigned long long low = (1ULL << (i + 1)) >> 1, high = (1ULL << (i + 1)) - 1;
		int stars = (int)((unsigned long long)slots[i] * 40 / max);

		if (low == high)
			low--;
		printf("%10llu -> %-10llu : %-8u |", low, high, slots[i]);
		for (int s = 0; s < 40; s++)
			putchar(s < stars ? '*' : ' ');
		printf("|\n");
	}
}

int main(int argc, char **argv)
{
	struct bpf_link *links[8];
	struct bpf_program *prog;
	struct bpf_object *obj;
	struct hist h, total;
	int nlinks = 0, err, fd;
	double interval = 0;
	__u32 key, next;
	int have;

	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: %s OBJ [INTERVAL]\n", argv[0]);
		return 2;
	}
	if (argc == 3)
		interval = strtod(argv[2], NULL);
	libbpf_set_print(print_fn);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	obj = bpf_object__open_file(argv[1], NULL);
	if (!obj) {
		fprintf(stderr, "open %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	bpf_object__for_each_program(prog, obj)
		if (strncmp(bpf_program__section_name(prog), "tp_btf/", 7))
			bpf_program__set_autoload(prog, false);
	err = bpf_object__load(obj);
	if (err) {
		fprintf(stderr, "load %s: %s\n", argv[1], strerror(-err));
		return 1;
	}
	bpf_object__for_each_program(prog, obj) {
		if (!bpf_program__autoload(prog) || nlinks == 8)
			continue;
		links[nlinks] = bpf_program__attach(prog);
		if (!links[nlinks]) {
			fprintf(stderr, "attach %s: %s\n", bpf_program__name(prog), strerror(errno));
			return 1;
		}
		nlinks++;
	}
	fd = bpf_map__fd(bpf_object__find_map_by_name(obj, "hists"));
	printf("Tracing run queue latency... Hit Ctrl-C to end.\n");
	fflush(stdout);  /* the ready line: the benchmark waits for it */

	if (interval > 0) {
		struct timespec ts = {(time_t)interval, (long)((interval - (time_t)interval) * 1e9)};

		while (!stop && nanosleep(&ts, &ts) && errno == EINTR)
			;
	} else {
		while (!stop)
			pause();
	}

	/* read and clear every key (tracekit-runqlat does the same), printing key 0 */
	memset(&total, 0, sizeof(total));
	have = bpf_map_get_next_key(fd, NULL, &key) == 0;
	while (have) {
		have = bpf_map_get_next_key(fd, &key, &next) == 0;
		if (bpf_map_lookup_elem(fd, &key, &h) == 0 && key == 0)
			total = h;
		bpf_map_delete_elem(fd, &key);
		key = next;
	}
	printf("\n");
	print_hist(total.slots, RUNQLAT_MAX_SLOTS, "usecs");
	fflush(stdout);
	for (int i = 0; i < nlinks; i++)
		bpf_link__destroy(links[i]);
	bpf_object__close(obj);
	return 0;
}
