/* Fork while another thread is inside a refill: a thread calls RAND_bytes, which the provider
 * answers with a GET the (fake) daemon holds for a while; meanwhile the main thread forks and the
 * child draws. The child must get bytes of its own, not block on a lock the refilling thread held
 * at fork time; alarm() turns such a hang into SIGALRM. Prints "tag hex" lines and, for a child
 * that did not exit normally, "child killed by signal N". Usage: forkthread [BYTES] [SLEEP_MS]. */
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static int n = 32;

static int draw(const char *tag)
{
    unsigned char b[4096];
    if (n < 1 || n > (int)sizeof(b) || RAND_bytes(b, n) != 1) {
        fprintf(stderr, "%s: RAND_bytes failed\n", tag);
        ERR_print_errors_fp(stderr);
        return 0;
    }
    flockfile(stdout);
    printf("%s ", tag);
    for (int i = 0; i < n; i++)
        printf("%02x", b[i]);
    printf("\n");
    fflush(stdout);
    funlockfile(stdout);
    return 1;
}

static void *refill(void *arg)
{
    (void)arg;
    return (void *)(long)draw("thread");
}

int main(int argc, char **argv)
{
    int status = 0;
    n = argc > 1 ? atoi(argv[1]) : 32;
    int sleep_ms = argc > 2 ? atoi(argv[2]) : 500;
    if (!OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CONFIG, NULL)) {
        ERR_print_errors_fp(stderr);
        return 2;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, refill, NULL) != 0)
        return 2;
    /* The thread is now waiting for the daemon's answer, inside the provider. */
    usleep((useconds_t)sleep_ms * 1000);
    pid_t pid = fork();
    if (pid < 0)
        return 2;
    if (pid == 0) {
        alarm(20);
        _exit(draw("child") ? 0 : 1);
    }
    void *ok = NULL;
    pthread_join(t, &ok);
    if (waitpid(pid, &status, 0) != pid)
        return 2;
    if (WIFSIGNALED(status))
        printf("child killed by signal %d\n", WTERMSIG(status));
    if (!draw("parent-after") || !ok)
        return 1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
