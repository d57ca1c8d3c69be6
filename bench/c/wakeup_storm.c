// SPDX-License-Identifier: Apache-2.0
/*
 * wakeup_storm: the run-queue workload of bench/bench_side_by_side.py (issue 14).
 *
 *   wakeup_storm N
 *
 * Two threads pass a byte back and forth over two pipes N times: every hand-over blocks
 * one thread and wakes the other, so each round trip is two sched_wakeup + two
 * sched_switch-to-a-woken-task events, the events runqlat turns into histogram counts.
 * Prints `done=N elapsed_ns=T`.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static int ping[2], pong[2];
static long n;

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void *echo(void *arg)
{
	char c;

	(void)arg;
	for (long i = 0; i < n; i++)
		if (read(ping[0], &c, 1) != 1 || write(pong[1], &c, 1) != 1)
			break;
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t t;
	long long t0;
	long i;
	char c = 'x';

	if (argc != 2) {
		fprintf(stderr, "usage: %s N\n", argv[0]);
		return 2;
	}
	n = strtol(argv[1], NULL, 0);
	if (pipe(ping) || pipe(pong) || pthread_create(&t, NULL, echo, NULL)) {
		perror("wakeup_storm");
		return 1;
	}
	t0 = now_ns();
	for (i = 0; i < n; i++)
		if (write(ping[1], &c, 1) != 1 || read(pong[0], &c, 1) != 1)
			break;
	pthread_join(t, NULL);
	printf("done=%ld elapsed_ns=%lld\n", i, now_ns() - t0);
	return 0;
}
