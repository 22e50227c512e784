/* Fork test driver: loads the configuration named by OPENSSL_CONF, draws with RAND_bytes, forks,
 * then the child and the parent each draw again. Prints one "tag hex" line per draw; exit 0 when
 * every draw succeeded. Usage: fork [BYTES] (default 32). */
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static int draw(const char *tag, int n)
{
    unsigned char b[4096];
    if (n < 1 || n > (int)sizeof(b) || RAND_bytes(b, n) != 1) {
        fprintf(stderr, "%s: RAND_bytes failed\n", tag);
        ERR_print_errors_fp(stderr);
        return 0;
    }
    printf("%s ", tag);
    for (int i = 0; i < n; i++)
        printf("%02x", b[i]);
    printf("\n");
    fflush(stdout);
    return 1;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 32, status = 0;
    if (!OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CONFIG, NULL)) {
        ERR_print_errors_fp(stderr);
        return 2;
    }
    if (!draw("parent-before", n))
        return 1;
    pid_t pid = fork();
    if (pid < 0)
        return 2;
    if (pid == 0)
        _exit(draw("child", n) ? 0 : 1);
    if (waitpid(pid, &status, 0) != pid)
        return 2;
    if (!draw("parent-after", n))
        return 1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
