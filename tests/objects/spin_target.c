/* Helper process for tests/{unit,live}/test_symbols.py and test_perf_event.py.
 *
 * Built with gcc -O0 -g -fno-omit-frame-pointer (PIE and -no-pie variants).  It prints
 * the run-time addresses of tracekit_spin_here and of libc's getpid (what the unit tests
 * resolve), then, by argv[1]:
 *   idle  - waits on stdin (nothing is sampled; addresses are resolved from /proc/PID/maps)
 *   spin  - spins in tracekit_spin_here forever (user-mode samples)
 *   read  - also runs a thread reading /dev/zero in tracekit_read_here (kernel-mode samples)
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

volatile unsigned long tracekit_sink;

__attribute__((noinline)) void tracekit_spin_here(void)
{
	for (;;)
		for (unsigned long i = 0; i < 1000000; i++)
			tracekit_sink += i;
}

__attribute__((noinline)) void *tracekit_read_here(void *arg)
{
	static char buf[1 << 16];
	int fd = open("/dev/zero", O_RDONLY);

	(void)arg;
	for (;;)
		if (read(fd, buf, sizeof(buf)) < 0)
			return NULL;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "spin";
	pid_t (*gp)(void) = getpid;

	printf("%lx %lx\n", (unsigned long)&tracekit_spin_here, (unsigned long)gp);
	fflush(stdout);
	if (!strcmp(mode, "idle")) {
		char c;
		while (read(0, &c, 1) > 0)
			;
		return 0;
	}
	if (!strcmp(mode, "read")) {
		pthread_t t;
		pthread_create(&t, NULL, tracekit_read_here, NULL);
	}
	tracekit_spin_here();
	return 0;
}
