/* Pid recycling: P draws (the provider keeps the rest of its batch), forks C, draws again and
 * exits. C, which never drew, makes its next child take P's pid (through ns_last_pid, as CRIU
 * does) and that grandchild G draws. A provider that tells processes apart by pid alone hands G
 * the bytes P drew after the fork. Prints "tag hex" lines; exit 0 when every draw succeeded,
 * 4 when G could not be given P's pid. Usage: recycle [BYTES]. Needs root. */
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
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
    printf("%s ", tag);
    for (int i = 0; i < n; i++)
        printf("%02x", b[i]);
    printf("\n");
    fflush(stdout);
    return 1;
}

static int set_last_pid(pid_t p)
{
    int fd = open("/proc/sys/kernel/ns_last_pid", O_WRONLY);
    char s[32];
    int len = snprintf(s, sizeof(s), "%d", (int)p);
    int ok = fd >= 0 && write(fd, s, (size_t)len) == len;
    if (fd >= 0)
        close(fd);
    return ok;
}

int main(int argc, char **argv)
{
    n = argc > 1 ? atoi(argv[1]) : 32;
    if (!OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CONFIG, NULL)) {
        ERR_print_errors_fp(stderr);
        return 2;
    }
    /* C is reparented to us when P exits, so we can wait for it. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    int go[2];
    if (pipe(go) != 0)
        return 2;
    pid_t p = fork();
    if (p < 0)
        return 2;
    if (p == 0) {
        pid_t me = getpid();
        if (!draw("parent-before"))
            _exit(1);
        pid_t c = fork();
        if (c == 0) {
            char x;
            if (read(go[0], &x, 1) != 1) /* P has exited and been reaped */
                _exit(2);
            for (int tries = 0; tries < 50; tries++) {
                if (!set_last_pid(me - 1)) {
                    perror("ns_last_pid");
                    _exit(4);
                }
                pid_t g = fork();
                if (g == 0) {
                    if (getpid() != me)
                        _exit(3);
                    _exit(draw("grandchild") ? 0 : 1);
                }
                int st = 0;
                if (g < 0 || waitpid(g, &st, 0) != g)
                    _exit(2);
                if (WIFEXITED(st) && WEXITSTATUS(st) == 3)
                    continue; /* another process took the pid first */
                _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 1);
            }
            _exit(4);
        }
        _exit(c > 0 && draw("parent-after") ? 0 : 1);
    }
    int st = 0, rc = 0;
    if (waitpid(p, &st, 0) != p || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        rc = 1;
    if (write(go[1], "x", 1) != 1)
        return 2;
    /* C, now our child. */
    pid_t w;
    while ((w = wait(&st)) > 0)
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            rc = WIFEXITED(st) ? WEXITSTATUS(st) : 1;
    return rc;
}
