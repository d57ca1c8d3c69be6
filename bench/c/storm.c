// SPDX-License-Identifier: Apache-2.0
/*
 * storm: one generator of traced events for bench/bench_tools.py.
 *
 *   storm open N     N x open("/dev/null", O_RDONLY) + close, as fast as it can
 *   storm exec N     N x fork + execve("/bin/true") + wait, one at a time
 *   storm sleep N    N x 10 ms of nothing (an idle reference)
 *
 * Prints `done=N elapsed_ns=T` when finished, so the benchmark knows how many events the
 * tool under test should have seen and how long the storm took.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	long n, i;
	long long t0;

	if (argc != 3) {
		fprintf(stderr, "usage: %s open|exec|sleep N\n", argv[0]);
		return 2;
	}
	n = strtol(argv[2], NULL, 0);
	t0 = now_ns();
	for (i = 0; i < n; i++) {
		if (!strcmp(argv[1], "open")) {
			int fd = open("/dev/null", O_RDONLY);
			if (fd >= 0)
				close(fd);
		} else if (!strcmp(argv[1], "exec")) {
			pid_t pid = fork();
			if (pid == 0) {
				char *args[] = {"/bin/true", "storm", NULL};
				execv(args[0], args);
				_exit(127);
			}
			waitpid(pid, NULL, 0);
		} else {
			usleep(10000);
		}
	}
	printf("done=%ld elapsed_ns=%lld\n", n, now_ns() - t0);
	return 0;
}
