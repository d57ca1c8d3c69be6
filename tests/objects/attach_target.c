// A user-space program for the uprobe tests: reads integers from stdin, one a line, and
// prints tk_uprobe_target(x) for each, so the test decides when the probed function runs.
#include <stdio.h>
#include <stdlib.h>

__attribute__((noinline)) int tk_uprobe_target(int x)
{
	__asm__ volatile("" ::: "memory"); /* keep the call: it is what the test probes */
	return 2 * x + 1;
}

int main(void)
{
	char line[64];

	while (fgets(line, sizeof(line), stdin)) {
		printf("%d\n", tk_uprobe_target(atoi(line)));
		fflush(stdout);
	}
	return 0;
}
