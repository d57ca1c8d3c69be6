// A user-space program for the USDT and uprobe.multi tests.  It reads integers from stdin,
// one a line; for each x it fires the tk:* USDT probes with arguments derived from x and
// prints "x semaphore" back, so the test decides when the probes fire and knows the value
// of every argument.  Built with gcc -O2 from this file and usdt_target_sema.c (which has
// the semaphore-guarded probe: <sys/sdt.h> decides per translation unit).
//
// The operand forms gcc picks at -O2 (checked against readelf -n by the unit tests):
//   tk:mem     -8@(%rdi) -4@8(%rdi) -2@12(%rdi) 1@14(%rdi)   memory, base register + offset
//   tk:regs    -4@%edi -8@%rsi 1@%dl -4@$42                  registers of 3 sizes, a constant
//   tk:global  -4@tk_counter(%rip) -4@$-7                     %rip-relative symbol, negative constant
//   tk:stack   -4@-4(%rsp)                                    a volatile local on the stack
//   tk:sib     -4@(%rax,%rdi,4)                               scale-index-base (libbpf 1.7+ only)
//   tk:twice   two sites with different specs                 one probe, two locations
#include <sys/sdt.h>
#include <stdio.h>
#include <stdlib.h>

struct pair {
	long a;
	int b;
	short c;
	unsigned char d;
};

int tk_counter;
static int tk_table[8];

void tk_fire_sema(int x);

#define NOINLINE __attribute__((noinline))

NOINLINE void tk_fire_mem(struct pair *p)
{
	STAP_PROBE4(tk, mem, p->a, p->b, p->c, p->d);
}

NOINLINE void tk_fire_regs(int x, long y, unsigned char z)
{
	STAP_PROBE4(tk, regs, x, y, z, 42);
}

NOINLINE void tk_fire_global(void)
{
	STAP_PROBE2(tk, global, tk_counter, -7);
}

NOINLINE void tk_fire_stack(int v)
{
	volatile int s = v;

	STAP_PROBE1(tk, stack, s);
}

NOINLINE void tk_fire_sib(int i)
{
	STAP_PROBE1(tk, sib, tk_table[i]);
}

NOINLINE void tk_fire_twice_a(int x)
{
	STAP_PROBE1(tk, twice, x);
}

NOINLINE void tk_fire_twice_b(struct pair *p)
{
	STAP_PROBE1(tk, twice, p->b);
}

int main(void)
{
	char line[64];

	while (fgets(line, sizeof(line), stdin)) {
		int x = atoi(line);
		struct pair p = { x * 1000L, x + 1, (short)-x, (unsigned char)(x + 100) };

		tk_fire_mem(&p);
		tk_fire_regs(x, -x * 3L, (unsigned char)(x + 200));
		tk_counter = x * 7;
		tk_fire_global();
		tk_fire_stack(-x);
		tk_table[x & 7] = x + 5;
		tk_fire_sib(x & 7);
		tk_fire_twice_a(x);
		tk_fire_twice_b(&p);
		tk_fire_sema(x);
		fflush(stdout);
	}
	return 0;
}
