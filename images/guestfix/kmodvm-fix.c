// kmodvm-fix SECONDS.NANOSECONDS (nine digits after the point): run in a guest restored from a save (written by kmodvm).
// The guest's clock stood still since the save and its random state is the save's, which
// every restore of that save shares. So it sets the clock to the host's time (the argument),
// mixes the host's random bytes (stdin) into the kernel's pool, has the kernel reseed its
// generator from the pool at once (RNDRESEEDCRNG, Linux 4.17+), and prints the clock it
// ended with, as SECONDS.NANOSECONDS.
//
// It is a static program because under TCG a restored guest translates every program it
// runs afresh: a perl doing the same took a quarter of a second of each restore.
#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

static int fail(const char *what) {
	fprintf(stderr, "kmodvm-fix: %s: %s\n", what, strerror(errno));
	return 1;
}

// parse reads SECONDS.NANOSECONDS: 1 to 18 digits, a point, 9 digits.
static int parse(const char *arg, struct timespec *ts) {
	const char *dot = strchr(arg, '.');
	size_t secs;

	if (dot == NULL)
		return -1;
	secs = (size_t)(dot - arg);
	if (secs < 1 || secs > 18 || strspn(arg, "0123456789") != secs ||
	    strlen(dot + 1) != 9 || strspn(dot + 1, "0123456789") != 9)
		return -1;
	ts->tv_sec = strtoll(arg, NULL, 10);
	ts->tv_nsec = strtol(dot + 1, NULL, 10);
	return 0;
}

int main(int argc, char **argv) {
	struct timespec ts;
	char buf[4096];
	ssize_t n;
	int f;

	if (argc != 2) {
		fputs("usage: kmodvm-fix SECONDS.NANOSECONDS < random-bytes\n", stderr);
		return 2;
	}
	if (parse(argv[1], &ts) != 0) {
		fprintf(stderr, "kmodvm-fix: %s is not SECONDS.NANOSECONDS\n", argv[1]);
		return 2;
	}
	if (clock_settime(CLOCK_REALTIME, &ts) != 0)
		return fail("clock_settime");
	f = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
	if (f < 0)
		return fail("/dev/urandom");
	while ((n = read(0, buf, sizeof buf)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return fail("read the random bytes");
		}
		if (write(f, buf, n) != n)
			return fail("write /dev/urandom");
	}
	if (ioctl(f, RNDRESEEDCRNG) != 0)
		fprintf(stderr, "kmodvm-fix: RNDRESEEDCRNG: %s\n", strerror(errno));
	if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
		return fail("clock_gettime");
	printf("%lld.%09ld\n", (long long)ts.tv_sec, ts.tv_nsec);
	return 0;
}
