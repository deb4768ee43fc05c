/* The one program of the test bed's images (built static by the test bed with gcc, never shipped):
 *   agent engine [PORT]        a game engine: logs its start, echoes every byte on TCP PORT (7777) to
 *                              each connected player, exits 0 on SIGTERM
 *   agent sidecar VERSION      a sidecar: logs its start and version, exits 0 on SIGTERM
 *   agent crash                starts, logs, exits 1 (CrashLoopBackOff)
 *   agent flaky SECONDS        runs as a sidecar for SECONDS, then exits 1 (a crash after it was ready)
 *   agent slow-ready SECONDS PORT
 *                              listens on PORT only after SECONDS (a readiness probe that takes a while)
 *   agent unready SECONDS PORT listens on PORT at once and stops listening after SECONDS, running on (a
 *                              readiness probe that stops passing: not ready, not restarted)
 * Every line goes to stdout, so that `kubectl logs` shows each start once. */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop = 0;
static void on_term(int s) { (void)s; stop = 1; }

static void say(const char *what, const char *arg) {
    printf("agent %s %s: %s (pid %d, t=%ld)\n", what, arg ? arg : "", stop ? "SIGTERM, exiting" : "started",
           (int)getpid(), (long)time(NULL));
    fflush(stdout);
}

static int listen_on(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    struct sockaddr_in a;
    if (fd < 0) return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 64) < 0) { close(fd); return -1; }
    return fd;
}

/* Accepts players and echoes what each sends, until SIGTERM. */
static int serve(int lfd, int echo) {
    struct pollfd fds[65];
    int n = 1, i;
    fds[0].fd = lfd;
    fds[0].events = POLLIN;
    while (!stop) {
        if (poll(fds, (nfds_t)n, 500) < 0) { if (errno == EINTR) continue; return 1; }
        if ((fds[0].revents & POLLIN) && n < 65) {
            int c = accept(lfd, NULL, NULL);
            if (c >= 0) { fds[n].fd = c; fds[n].events = POLLIN; fds[n].revents = 0; n++; }
        }
        for (i = 1; i < n; i++) {
            if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            char buf[4096];
            ssize_t r = read(fds[i].fd, buf, sizeof buf);
            if (r > 0 && (!echo || write(fds[i].fd, buf, (size_t)r) == r)) continue;
            close(fds[i].fd);
            fds[i] = fds[n - 1];
            n--;
            i--;
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    struct sigaction sa;
    const char *mode = argc > 1 ? argv[1] : "sidecar";
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (strcmp(mode, "engine") == 0) {
        int port = argc > 2 ? atoi(argv[2]) : 7777;
        int fd = listen_on(port);
        say("engine", argc > 2 ? argv[2] : "7777");
        if (fd < 0) { perror("agent engine: listen"); return 1; }
        serve(fd, 1);
        say("engine", NULL);
        return 0;
    }
    if (strcmp(mode, "crash") == 0) {
        say("crash", NULL);
        return 1;
    }
    if (strcmp(mode, "flaky") == 0) {
        int secs = argc > 2 ? atoi(argv[2]) : 5;
        say("flaky", argc > 2 ? argv[2] : "5");
        while (!stop && secs-- > 0) sleep(1);
        if (stop) { say("flaky", NULL); return 0; }
        printf("agent flaky: exiting 1\n");
        fflush(stdout);
        return 1;
    }
    if (strcmp(mode, "slow-ready") == 0) {
        int secs = argc > 2 ? atoi(argv[2]) : 5, port = argc > 3 ? atoi(argv[3]) : 8080, fd;
        say("slow-ready", argc > 2 ? argv[2] : "5");
        while (!stop && secs-- > 0) sleep(1);
        if (stop) { say("slow-ready", NULL); return 0; }
        fd = listen_on(port);
        if (fd < 0) { perror("agent slow-ready: listen"); return 1; }
        printf("agent slow-ready: listening on %d\n", port);
        fflush(stdout);
        serve(fd, 0);
        say("slow-ready", NULL);
        return 0;
    }
    if (strcmp(mode, "unready") == 0) {
        int secs = argc > 2 ? atoi(argv[2]) : 5, port = argc > 3 ? atoi(argv[3]) : 8080;
        int fd = listen_on(port);
        say("unready", argc > 2 ? argv[2] : "5");
        if (fd < 0) { perror("agent unready: listen"); return 1; }
        /* The kernel completes the probe's connections from the backlog: no accept needed. */
        while (!stop && secs-- > 0) sleep(1);
        close(fd);
        printf("agent unready: no longer listening on %d\n", port);
        fflush(stdout);
        while (!stop) pause();
        say("unready", NULL);
        return 0;
    }
    say("sidecar", argc > 2 ? argv[2] : "");
    while (!stop) pause();
    say("sidecar", argc > 2 ? argv[2] : "");
    return 0;
}
