/*
 * The pod sandbox ("pause") image's one program, built from source by the
 * e2e harness because no image registry is reachable here.
 *
 * It holds the Pod's namespaces open: it sleeps in pause(2) until a
 * signal, reaps any child that the Pod's processes leave to it (it is pid 1
 * of the Pod's pid namespace when that is shared), and exits 0 on SIGINT or
 * SIGTERM. Kubernetes' own pause does the same.
 */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) {
    (void)sig;
    _exit(0);
}

static void reap(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(void) {
    struct sigaction stop_action = {.sa_handler = stop};
    struct sigaction reap_action = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
    if (sigaction(SIGINT, &stop_action, NULL) < 0 || sigaction(SIGTERM, &stop_action, NULL) < 0 ||
        sigaction(SIGCHLD, &reap_action, NULL) < 0) {
        return 1;
    }
    for (;;) {
        pause();
    }
}
