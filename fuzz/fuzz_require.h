/* fuzz_require.h — REQUIRE(cond) for the fuzz targets: a promise of the code under test (a
 * refused input leaves nothing behind, a parsed one is within bounds, ...) that, broken, prints
 * the target's source file and the condition and aborts, which libFuzzer reports as a crash. */
#ifndef QKV_FUZZ_REQUIRE_H
#define QKV_FUZZ_REQUIRE_H

#include <stdio.h>
#include <stdlib.h>

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: broken promise: %s\n", __FILE__, __LINE__, #cond);             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
