// Property checks for the libFuzzer targets: a failed check prints what was
// expected and aborts, which libFuzzer reports as a crash with the input.
#pragma once

#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(cond)                                                                          \
	do {                                                                                          \
		if (!(cond)) {                                                                            \
			std::fprintf(stderr, "%s:%d: property violated: %s\n", __FILE__, __LINE__, #cond); \
			std::abort();                                                                         \
		}                                                                                         \
	} while (0)
