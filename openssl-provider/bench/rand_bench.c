/* RAND_bytes throughput and latency through whatever OPENSSL_CONF configures.
 * Usage: rand_bench LABEL SECONDS SIZE... ; prints one line per size:
 *   LABEL SIZE calls/s MB/s p50_ns p99_ns
 * Each size runs for SECONDS; latency is sampled on every call (clock_gettime, ~20 ns overhead,
 * included in both columns alike for every configuration). */
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s LABEL SECONDS SIZE...\n", argv[0]);
        return 2;
    }
    double secs = atof(argv[2]);
    unsigned char buf[4096];
    size_t cap = 1 << 24;
    float *lat = malloc(cap * sizeof(float));
    if (lat == NULL || !OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CONFIG, NULL))
        return 2;
    /* Warm-up: instantiation, first fetch. */
    if (RAND_bytes(buf, 32) != 1) {
        ERR_print_errors_fp(stderr);
        return 1;
    }
    for (int a = 3; a < argc; a++) {
        int size = atoi(argv[a]);
        if (size < 1 || size > (int)sizeof(buf))
            return 2;
        size_t calls = 0;
        double start = now(), end = start + secs, t0 = start, t1;
        do {
            if (RAND_bytes(buf, size) != 1) {
                ERR_print_errors_fp(stderr);
                return 1;
            }
            t1 = now();
            if (calls < cap)
                lat[calls] = (float)((t1 - t0) * 1e9);
            calls++;
            t0 = t1;
        } while (t1 < end);
        double el = t1 - start;
        size_t m = calls < cap ? calls : cap;
        qsort(lat, m, sizeof(float), cmp);
        printf("%s %d %.0f %.2f %.0f %.0f\n", argv[1], size, calls / el, calls * (double)size / el / 1e6,
               lat[m / 2], lat[(size_t)(m * 0.99)]);
        fflush(stdout);
    }
    free(lat);
    return 0;
}
