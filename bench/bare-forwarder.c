// bench:lab's latency floor (issue 10 item 6, docs/PERFORMANCE.md "Latency"): the least a userspace TUN-to-TUN
// forwarder can do. It opens two TUNs (tun(4): IFF_TUN | IFF_NO_PI, one whole IP packet per read and write), prints
// "ready", then forever sleeps in poll() on both, reads one packet from whichever is readable and writes it into
// the other: no parsing, no lookup, no NAT, routing by which descriptor it came from. What a packet pays through
// it (two TUN crossings, one process wakeup, one read and one write) is what any forwarder in a process pays at
// least; bench/lab.ts measures it in the same run as tether and the kernel edge. Compiled by the bench (cc -O2)
// into a temporary directory; never shipped.
//
// Usage: bare-forwarder TUN_A TUN_B   (run inside the namespace the TUNs belong to; they vanish with it)
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

// The largest IP packet (RFC 791 total length, 16 bits): without offloads a TUN never hands over more.
#define MAX_PACKET 65535

static int open_tun(const char *name) {
  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    perror("open /dev/net/tun");
    return -1;
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    fprintf(stderr, "TUNSETIFF %s: %s\n", name, strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s TUN_A TUN_B\n", argv[0]);
    return 2;
  }
  const int fd[2] = {open_tun(argv[1]), open_tun(argv[2])};
  if (fd[0] < 0 || fd[1] < 0) return 1;
  printf("ready\n");
  fflush(stdout);
  static unsigned char packet[MAX_PACKET];
  struct pollfd p[2] = {{fd[0], POLLIN, 0}, {fd[1], POLLIN, 0}};
  unsigned long forwarded = 0, write_errors = 0;
  for (;;) {
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      perror("poll");
      return 1;
    }
    for (int i = 0; i < 2; i++) {
      if ((p[i].revents & (POLLERR | POLLHUP | POLLNVAL)) != 0) {
        fprintf(stderr, "%s: device gone (forwarded %lu, write errors %lu)\n", argv[1 + i], forwarded, write_errors);
        return 1;
      }
      if ((p[i].revents & POLLIN) == 0) continue;
      const ssize_t n = read(fd[i], packet, sizeof packet);
      if (n <= 0) continue;
      if (write(fd[1 - i], packet, (size_t)n) == n) forwarded++;
      else write_errors++;
    }
  }
}
