// SPDX-License-Identifier: Apache-2.0
/*
 * btf_baseline: how long libbpf takes to parse the kernel's BTF, and to look a name up.
 *
 *   btf_baseline [-n N] [-f FILE] [-s NAME]
 *
 * Prints key=value lines (milliseconds): libbpf_btf_parse_ms (median of N btf__parse()
 * calls, mean and min alongside), libbpf_btf_types, libbpf_btf_find_ms for one
 * btf__find_by_name_kind(NAME, STRUCT) lookup (default task_struct), and
 * libbpf_btf_find_missing_ms for a name that does not exist: libbpf 1.1 scans every
 * type linearly, so that is its worst-case lookup.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static void summarize(const char *key, double *v, int n)
{
	double sum = 0;

	qsort(v, n, sizeof(*v), cmp_double);
	for (int i = 0; i < n; i++)
		sum += v[i];
	printf("%s_ms=%.3f\n%s_mean_ms=%.3f\n%s_min_ms=%.3f\n", key,
	       n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2, key, sum / n, key, v[0]);
}

int main(int argc, char **argv)
{
	const char *file = "/sys/kernel/btf/vmlinux", *name = "task_struct";
	double *parse_t, *find_t, *miss_t;
	int n = 20, opt, types = 0;

	while ((opt = getopt(argc, argv, "n:f:s:")) != -1) {
		switch (opt) {
		case 'n': n = atoi(optarg); break;
		case 'f': file = optarg; break;
		case 's': name = optarg; break;
		default:
			fprintf(stderr, "usage: %s [-n N] [-f FILE] [-s NAME]\n", argv[0]);
			return 2;
		}
	}
	if (n < 1)
		return 2;
	parse_t = calloc(n, sizeof(double));
	find_t = calloc(n, sizeof(double));
	miss_t = calloc(n, sizeof(double));
	if (!parse_t || !find_t || !miss_t)
		return 1;
	for (int it = -1; it < n; it++) {   /* one warm-up round fills the page cache */
		double t0, t1, t2, t3;
		struct btf *btf;
		int id;

		t0 = now_ms();
		btf = btf__parse(file, NULL);
		t1 = now_ms();
		if (!btf) {
			fprintf(stderr, "btf__parse(%s): %s\n", file, strerror(errno));
			return 1;
		}
		id = btf__find_by_name_kind(btf, name, BTF_KIND_STRUCT);
		t2 = now_ms();
		if (id < 0) {
			fprintf(stderr, "%s: no struct %s\n", file, name);
			return 1;
		}
		btf__find_by_name_kind(btf, "tracekit_no_such_type", BTF_KIND_STRUCT);
		t3 = now_ms();
		types = btf__type_cnt(btf) - 1;
		btf__free(btf);
		if (it >= 0) {
			parse_t[it] = t1 - t0;
			find_t[it] = t2 - t1;
			miss_t[it] = t3 - t2;
		}
	}
	printf("libbpf_btf_file=%s\nlibbpf_btf_types=%d\nlibbpf_iterations=%d\n", file, types, n);
	summarize("libbpf_btf_parse", parse_t, n);
	summarize("libbpf_btf_find", find_t, n);
	summarize("libbpf_btf_find_missing", miss_t, n);
	return 0;
}
