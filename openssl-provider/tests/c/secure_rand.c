/* A privileged program that uses the provider, as a setuid or file-capability program would:
 * loads the OpenSSL configuration file named by argv[1] (a program's own choice: OpenSSL itself
 * ignores OPENSSL_CONF under AT_SECURE) and prints RAND_bytes(argv[2]) as hex. The attack tests
 * install it setuid root and run it as an unprivileged user who controls the environment. */
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/auxv.h>

int main(int argc, char **argv)
{
    unsigned char b[256];
    int n = argc > 2 ? atoi(argv[2]) : 32;
    if (argc < 2 || n < 1 || n > (int)sizeof(b))
        return 64;
    fprintf(stderr, "AT_SECURE=%lu\n", getauxval(AT_SECURE));
    OPENSSL_INIT_SETTINGS *s = OPENSSL_INIT_new();
    OPENSSL_INIT_set_config_filename(s, argv[1]);
    if (!OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CONFIG, s) || RAND_bytes(b, n) != 1) {
        ERR_print_errors_fp(stderr);
        return 1;
    }
    for (int i = 0; i < n; i++)
        printf("%02x", b[i]);
    printf("\n");
    return 0;
}
