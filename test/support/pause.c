/*
 * The pod sandbox's process for the test suite's pause image (test/integration/harness/cri.ts),
 * what Kubernetes' pause container does, written for moat: it holds the pod's namespaces open
 * and does nothing else. As PID 1 of a pod that shares its PID namespace it reaps the orphans
 * that are reparented to it; SIGINT and SIGTERM end it with status 0 (PID 1 has no default
 * action for them, so they are handled). Static, so that the image needs nothing else.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int signo) {
    (void)signo;
    _exit(0);
}

static void reap(int signo) {
    (void)signo;
    int saved = errno; /* a handler must not change errno under the interrupted code */
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    errno = saved;
}

static int handle(int signo, void (*handler)(int)) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = handler;
    action.sa_flags = signo == SIGCHLD ? SA_NOCLDSTOP | SA_RESTART : 0;
    sigemptyset(&action.sa_mask);
    return sigaction(signo, &action, NULL);
}

int main(int argc, char **argv) {
    if (argc > 1) {
        fprintf(stderr, "%s: takes no arguments, got %s\n", argv[0], argv[1]);
        return 2;
    }
    if (handle(SIGINT, stop) < 0 || handle(SIGTERM, stop) < 0 || handle(SIGCHLD, reap) < 0) {
        perror("pause: sigaction");
        return 1;
    }
    for (;;) pause();
}
