/* Helper process for tests/live/test_tool_funccount.py.
 *
 * Prints "ready", then for each line read on stdin calls tick() argv[1] times (default
 * 1000) and prints "done".  tick() is noinline and does nothing, so funccount's count of
 * its calls must be exactly that number.
 */
#include <stdio.h>
#include <stdlib.h>

volatile unsigned long tick_sink;

__attribute__((noinline)) void tick(void)
{
	tick_sink++;
	__asm__ volatile("" ::: "memory");
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1000;
	char line[64];

	printf("ready\n");
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin)) {
		for (long i = 0; i < n; i++)
			tick();
		printf("done\n");
		fflush(stdout);
	}
	return 0;
}
