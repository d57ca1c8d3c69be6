// SPDX-License-Identifier: Apache-2.0
/*
 * load_baseline: how long libbpf takes to open and load a BPF object.
 *
 *   load_baseline OBJ [-n N] [-a] [-w WARMUP] [-v]
 *
 * Each iteration runs bpf_object__open_file() + bpf_object__load() (which includes
 * reading the kernel BTF, CO-RE relocation, map creation and verification) and, with -a,
 * bpf_program__attach() for every program; close is timed separately.  Programs whose
 * tracepoint does not exist on this kernel are switched off before load, as tools do.
 * Prints machine-readable key=value lines (milliseconds):
 *   libbpf_open_load_ms=<median>  libbpf_open_load_mean_ms=<mean>  libbpf_open_load_min_ms=<min>
 * This is a benchmark baseline and a test tool; tracekit never links libbpf.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <bpf/libbpf.h>

static int verbose;

static int print_fn(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_DEBUG && verbose < 2)
		return 0;
	if (!verbose && level != LIBBPF_WARN)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

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

/* "tracepoint/<cat>/<name>" (or "tp/...") whose tracefs event is missing: do not load it. */
static int tracepoint_missing(const char *sec)
{
	static const char *roots[] = { "/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events" };
	const char *rest = NULL;
	char path[512];
	int have_root = 0;

	if (!strncmp(sec, "tracepoint/", 11))
		rest = sec + 11;
	else if (!strncmp(sec, "tp/", 3))
		rest = sec + 3;
	if (!rest)
		return 0;
	for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
		snprintf(path, sizeof(path), "%s", roots[i]);
		if (access(path, F_OK))
			continue;
		have_root = 1;
		snprintf(path, sizeof(path), "%s/%s", roots[i], rest);
		if (!access(path, F_OK))
			return 0;
	}
	return have_root;   /* without tracefs we cannot tell: keep the program */
}

static double summarize(const char *key, double *v, int n)
{
	double sum = 0, med;

	qsort(v, n, sizeof(*v), cmp_double);
	for (int i = 0; i < n; i++)
		sum += v[i];
	med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
	printf("%s_ms=%.3f\n%s_mean_ms=%.3f\n%s_min_ms=%.3f\n", key, med, key, sum / n, key, v[0]);
	return med;
}

int main(int argc, char **argv)
{
	int n = 20, warmup = 2, attach = 0, opt;
	double *open_load, *attach_t, *close_t;
	const char *path;

	while ((opt = getopt(argc, argv, "n:w:av")) != -1) {
		switch (opt) {
		case 'n': n = atoi(optarg); break;
		case 'w': warmup = atoi(optarg); break;
		case 'a': attach = 1; break;
		case 'v': verbose++; break;
		default:
			fprintf(stderr, "usage: %s OBJ [-n N] [-w WARMUP] [-a] [-v]\n", argv[0]);
			return 2;
		}
	}
	if (optind >= argc || n < 1 || warmup < 0) {
		fprintf(stderr, "usage: %s OBJ [-n N] [-w WARMUP] [-a] [-v]\n", argv[0]);
		return 2;
	}
	path = argv[optind];
	libbpf_set_print(print_fn);
	open_load = calloc(n, sizeof(double));
	attach_t = calloc(n, sizeof(double));
	close_t = calloc(n, sizeof(double));
	if (!open_load || !attach_t || !close_t)
		return 1;

	for (int it = -warmup; it < n; it++) {
		struct bpf_link *links[64];
		struct bpf_program *prog;
		struct bpf_object *obj;
		int nlinks = 0, err;
		double t0, t1, t2, t3;

		t0 = now_ms();
		obj = bpf_object__open_file(path, NULL);
		if (!obj) {
			fprintf(stderr, "open %s: %s\n", path, strerror(errno));
			return 1;
		}
		bpf_object__for_each_program(prog, obj)
			if (tracepoint_missing(bpf_program__section_name(prog)))
				bpf_program__set_autoload(prog, false);
		err = bpf_object__load(obj);
		t1 = now_ms();
		if (err) {
			fprintf(stderr, "load %s: %s\n", path, strerror(-err));
			return 1;
		}
		if (attach) {
			bpf_object__for_each_program(prog, obj) {
				if (!bpf_program__autoload(prog))
					continue;
				if (nlinks == 64)
					break;
				links[nlinks] = bpf_program__attach(prog);
				if (!links[nlinks]) {
					fprintf(stderr, "attach %s: %s\n", bpf_program__name(prog), strerror(errno));
					return 1;
				}
				nlinks++;
			}
		}
		t2 = now_ms();
		for (int i = 0; i < nlinks; i++)
			bpf_link__destroy(links[i]);
		bpf_object__close(obj);
		t3 = now_ms();
		if (it >= 0) {
			open_load[it] = t1 - t0;
			attach_t[it] = t2 - t1;
			close_t[it] = t3 - t2;
		}
	}
	printf("libbpf_object=%s\nlibbpf_iterations=%d\n", path, n);
	summarize("libbpf_open_load", open_load, n);
	if (attach)
		summarize("libbpf_attach", attach_t, n);
	summarize("libbpf_close", close_t, n);
	return 0;
}
