/* A fake qeaasd for the provider's attack tests: speaks protocol v1 on a Unix socket and answers
 * every GET with one constant byte, the bytes an attacker would like a victim to use as keys.
 * Usage: fake_daemon SOCKET BYTE [DELAY_MS]. The socket is made 0666; "ready" is printed once it
 * listens. Every GET waits DELAY_MS (to hold a client inside a refill); one thread per client. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static unsigned char byte;
static long delay_ms;

static int read_full(int fd, unsigned char *b, size_t n)
{
    while (n > 0) {
        ssize_t r = read(fd, b, n);
        if (r <= 0)
            return 0;
        b += r;
        n -= (size_t)r;
    }
    return 1;
}

static void *serve(void *arg)
{
    int fd = (int)(long)arg;
    unsigned char h[8], out[4 + 65535];
    while (read_full(fd, h, sizeof(h))) {
        unsigned len = (unsigned)h[4] << 8 | h[5];
        if (h[2] == 1) {
            struct timespec t = {delay_ms / 1000, (delay_ms % 1000) * 1000000L};
            nanosleep(&t, NULL);
        } else {
            len = h[2] == 3 ? 8 : 0; /* MY_STATS: a u64; STATUS: empty */
        }
        out[0] = 0, out[1] = 0, out[2] = (unsigned char)(len >> 8), out[3] = (unsigned char)len;
        memset(out + 4, h[2] == 1 ? byte : 0, len);
        if (write(fd, out, 4 + len) != (ssize_t)(4 + len))
            break;
    }
    close(fd);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 64;
    byte = (unsigned char)strtoul(argv[2], NULL, 16);
    delay_ms = argc > 3 ? atol(argv[3]) : 0;
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path, argv[1], sizeof(a.sun_path) - 1);
    unlink(argv[1]);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) != 0 || chmod(argv[1], 0666) != 0 ||
        listen(l, 64) != 0) {
        perror("fake_daemon");
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        int c = accept(l, NULL, NULL);
        pthread_t t;
        if (c >= 0 && pthread_create(&t, NULL, serve, (void *)(long)c) == 0)
            pthread_detach(t);
    }
}
