// The pod sandbox process: holds a pod's namespaces open and reaps zombies until it is told
// to stop. Kind's node image imports registry.k8s.io/pause, which cannot be pulled here, so
// the node image carries this static build under that name instead.
#include <signal.h>
#include <stdio.h>
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
  if (getpid() != 1) {
    fprintf(stderr, "pause: warning: not pid 1\n");
  }
  struct sigaction term = {.sa_handler = stop};
  struct sigaction chld = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
  if (sigaction(SIGINT, &term, NULL) < 0 || sigaction(SIGTERM, &term, NULL) < 0 ||
      sigaction(SIGCHLD, &chld, NULL) < 0) {
    return 1;
  }
  for (;;) {
    pause();
  }
}
