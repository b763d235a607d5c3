/*
 * Guest-side load for the VM network bench (built static, runs in a busybox guest):
 *   rr HOST PORT rtt COUNT      1-byte ping-pong over one TCP_NODELAY connection; prints "rtt_us MEDIAN P99"
 *   rr HOST PORT conn SECONDS   sequential connect, 1-byte ping-pong, close; prints "conn_per_s N"
 * HOST:PORT is an echo server.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int dial(struct sockaddr_in *a) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  if (fd < 0) return -1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (struct sockaddr *)a, sizeof *a) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static int ping(int fd) {
  char c = 'x';
  if (write(fd, &c, 1) != 1) return -1;
  return read(fd, &c, 1) == 1 ? 0 : -1;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: rr HOST PORT rtt COUNT | rr HOST PORT conn SECONDS\n");
    return 2;
  }
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
  if (inet_pton(AF_INET, argv[1], &a.sin_addr) != 1) return 2;
  int n = atoi(argv[4]);
  if (strcmp(argv[3], "rtt") == 0) {
    int fd = dial(&a);
    if (fd < 0) return perror("connect"), 1;
    double *s = malloc(sizeof(double) * n);
    for (int i = 0; i < n; i++) {
      double t = now_us();
      if (ping(fd) < 0) return perror("ping"), 1;
      s[i] = now_us() - t;
    }
    qsort(s, n, sizeof *s, cmp);
    printf("rtt_us %.1f %.1f\n", s[n / 2], s[(int)(n * 0.99)]);
    return 0;
  }
  double end = now_us() + n * 1e6, t0 = now_us();
  long done = 0;
  while (now_us() < end) {
    int fd = dial(&a);
    if (fd < 0 || ping(fd) < 0) return perror("conn"), 1;
    close(fd);
    done++;
  }
  printf("conn_per_s %.1f\n", done / ((now_us() - t0) / 1e6));
  return 0;
}
