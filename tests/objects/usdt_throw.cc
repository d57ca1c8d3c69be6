// A C++ program for the USDT test of a real shared library: for each integer n it reads it
// throws and catches n std::runtime_error, so the USDT probes libstdc++.so.6 carries
// (libstdcxx:throw "8@%rdi 8@%rsi": the object and its typeinfo) fire n times, then it
// prints n back.
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

int main()
{
	char line[64];

	while (std::fgets(line, sizeof(line), stdin)) {
		int n = std::atoi(line), caught = 0;

		for (int i = 0; i < n; i++) {
			try {
				throw std::runtime_error("tracekit");
			} catch (const std::exception &) {
				caught++;
			}
		}
		std::printf("%d\n", caught);
		std::fflush(stdout);
	}
	return 0;
}
