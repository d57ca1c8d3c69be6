// The semaphore-guarded probe of usdt_target: with _SDT_HAS_SEMAPHORES every probe of this
// translation unit gets a semaphore (tk_sema_semaphore in .probes) that a tracer increments
// while attached.  The program prints the semaphore's value so the test sees the kernel
// maintain it (uprobe ref_ctr_offset), and fires tk:sema only when it is nonzero.
#define _SDT_HAS_SEMAPHORES 1
#include <sys/sdt.h>
#include <stdio.h>

unsigned short tk_sema_semaphore __attribute__((unused)) __attribute__((section(".probes")));

__attribute__((noinline)) void tk_fire_sema(int x)
{
	if (tk_sema_semaphore)
		STAP_PROBE2(tk, sema, x, tk_sema_semaphore);
	printf("%d %u\n", x, (unsigned)tk_sema_semaphore);
}
