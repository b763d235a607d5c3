/*
 * Frame bridge for the bench's namespace: the C twin of test/tap-bridge.mjs, standing where QEMU's
 * stream netdev stands in a worker VM (guest frames in, 4-byte big-endian length + frame out to the
 * stack's unix socket, and back). Like QEMU's net code it is plain C doing read()/write() syscalls,
 * so the bench's round trip pays what the product's path pays for this hop and no JavaScript
 * (koffi calls, worker-thread scheduling) on top. Two threads, one per direction:
 *   tap -> socket: drains the TAP without blocking and sends each burst in one write (poll() when empty);
 *   socket -> tap: one blocking read of the stream, one write() per whole frame.
 * Usage (inside the namespace): tap-bridge TAP SOCKET. Prints "ready" once both sides are open.
 * Exits when either side closes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define CAP (1 << 20)
#define MAX_FRAME 65536

static int tun, sock;

static int write_all(int fd, const uint8_t *p, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static void *tap_to_socket(void *arg) {
  (void)arg;
  static uint8_t buf[CAP + MAX_FRAME + 4];
  size_t used = 0;
  struct pollfd pfd = {.fd = tun, .events = POLLIN};
  for (;;) {
    ssize_t n = read(tun, buf + used + 4, MAX_FRAME);
    if (n > 0) {
      buf[used] = (uint8_t)(n >> 24);
      buf[used + 1] = (uint8_t)(n >> 16);
      buf[used + 2] = (uint8_t)(n >> 8);
      buf[used + 3] = (uint8_t)n;
      used += 4 + (size_t)n;
      if (used < CAP) continue;
    } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
      break;
    }
    if (used > 0) {
      if (write_all(sock, buf, used) < 0) break;
      used = 0;
      continue;
    }
    poll(&pfd, 1, -1);
  }
  exit(0);
}

static void *socket_to_tap(void *arg) {
  (void)arg;
  static uint8_t buf[CAP];
  size_t have = 0;
  for (;;) {
    ssize_t n = read(sock, buf + have, CAP - have);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    have += (size_t)n;
    size_t off = 0;
    while (have - off >= 4) {
      uint32_t len = (uint32_t)buf[off] << 24 | (uint32_t)buf[off + 1] << 16 | (uint32_t)buf[off + 2] << 8 | buf[off + 3];
      if (len == 0 || len > CAP - 4) {
        fprintf(stderr, "tap-bridge: bad frame length %u\n", len);
        exit(1);
      }
      if (have - off - 4 < len) break;
      (void)!write(tun, buf + off + 4, len);
      off += 4 + len;
    }
    if (off > 0) {
      memmove(buf, buf + off, have - off);
      have -= off;
    }
  }
  exit(0);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: tap-bridge TAP SOCKET\n");
    return 2;
  }
  tun = open("/dev/net/tun", O_RDWR);
  if (tun < 0) return perror("open /dev/net/tun"), 1;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strncpy(ifr.ifr_name, argv[1], IFNAMSIZ - 1);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  if (ioctl(tun, TUNSETIFF, &ifr) < 0) return perror("TUNSETIFF"), 1;
  fcntl(tun, F_SETFL, O_NONBLOCK);
  sock = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  strncpy(addr.sun_path, argv[2], sizeof addr.sun_path - 1);
  if (connect(sock, (struct sockaddr *)&addr, sizeof addr) < 0) return perror("connect"), 1;
  pthread_t a, b;
  pthread_create(&a, NULL, tap_to_socket, NULL);
  pthread_create(&b, NULL, socket_to_tap, NULL);
  printf("ready\n");
  fflush(stdout);
  pthread_join(a, NULL);
  return 0;
}
