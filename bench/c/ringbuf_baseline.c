// SPDX-License-Identifier: Apache-2.0
/*
 * ringbuf_baseline: libbpf's ring buffer throughput with an in-kernel producer.
 *
 *   ringbuf_baseline PRODUCER.bpf.o [-n RECORDS] [-r ROUNDS]
 *
 * Each round runs ringbuf_producer.bpf.o's SEC("syscall") program once with
 * bpf_prog_test_run_opts() (it writes RECORDS 48-byte records), then drains the ring
 * with ring_buffer__consume() and a callback that only counts.  Prints key=value lines
 * (median over rounds, records per second):
 *   libbpf_ringbuf_produce_rps=<x>  libbpf_ringbuf_consume_rps=<x>
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

struct run_args {
	__u64 nr;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int count_record(void *ctx, void *data, size_t size)
{
	(void)data;
	(void)size;
	(*(unsigned long long *)ctx)++;
	return 0;
}

int main(int argc, char **argv)
{
	unsigned long long nr = 1000000, seen = 0;
	int rounds = 10, opt, prog_fd, err;
	double *prod_rps, *cons_rps;
	struct ring_buffer *rb;
	struct bpf_object *obj;
	struct bpf_program *prog;
	struct bpf_map *map;
	size_t ring_size;

	while ((opt = getopt(argc, argv, "n:r:")) != -1) {
		switch (opt) {
		case 'n': nr = strtoull(optarg, NULL, 0); break;
		case 'r': rounds = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: %s PRODUCER.bpf.o [-n RECORDS] [-r ROUNDS]\n", argv[0]);
			return 2;
		}
	}
	if (optind >= argc || rounds < 1 || nr < 1 || nr > (1u << 23)) {
		fprintf(stderr, "usage: %s PRODUCER.bpf.o [-n RECORDS (1..8388608)] [-r ROUNDS]\n", argv[0]);
		return 2;
	}
	obj = bpf_object__open_file(argv[optind], NULL);
	if (!obj) {
		fprintf(stderr, "open %s: %s\n", argv[optind], strerror(errno));
		return 1;
	}
	map = bpf_object__find_map_by_name(obj, "records");
	prog = bpf_object__find_program_by_name(obj, "produce");
	if (!map || !prog) {
		fprintf(stderr, "%s: no `records` map or `produce` program\n", argv[optind]);
		return 1;
	}
	/* Room for a whole round (8-byte header + 48-byte record each), rounded to 2^k. */
	ring_size = 4096;
	while (ring_size < nr * 56)
		ring_size <<= 1;
	bpf_map__set_max_entries(map, ring_size);
	err = bpf_object__load(obj);
	if (err) {
		fprintf(stderr, "load: %s\n", strerror(-err));
		return 1;
	}
	prog_fd = bpf_program__fd(prog);
	rb = ring_buffer__new(bpf_map__fd(map), count_record, &seen, NULL);
	if (!rb) {
		fprintf(stderr, "ring_buffer__new: %s\n", strerror(errno));
		return 1;
	}
	prod_rps = calloc(rounds, sizeof(double));
	cons_rps = calloc(rounds, sizeof(double));
	for (int it = -1; it < rounds; it++) {     /* round -1 warms up page tables and caches */
		struct run_args args = { .nr = nr };
		LIBBPF_OPTS(bpf_test_run_opts, topts, .ctx_in = &args, .ctx_size_in = sizeof(args));
		unsigned long long before = seen;
		double t0, t1, t2;
		int got;

		t0 = now_s();
		err = bpf_prog_test_run_opts(prog_fd, &topts);
		t1 = now_s();
		if (err) {
			fprintf(stderr, "test_run: %s\n", strerror(-err));
			return 1;
		}
		got = ring_buffer__consume(rb);
		t2 = now_s();
		if (got < 0) {
			fprintf(stderr, "consume: %s\n", strerror(-got));
			return 1;
		}
		if (seen - before != nr) {
			fprintf(stderr, "round %d: consumed %llu of %llu records\n", it, seen - before, nr);
			return 1;
		}
		if (it >= 0) {
			prod_rps[it] = nr / (t1 - t0);
			cons_rps[it] = nr / (t2 - t1);
		}
	}
	printf("libbpf_ringbuf_records=%llu\nlibbpf_ringbuf_record_size=48\nlibbpf_ringbuf_rounds=%d\n", nr, rounds);
	printf("libbpf_ringbuf_produce_rps=%.0f\n", median(prod_rps, rounds));
	printf("libbpf_ringbuf_consume_rps=%.0f\n", median(cons_rps, rounds));
	ring_buffer__free(rb);
	bpf_object__close(obj);
	return 0;
}
