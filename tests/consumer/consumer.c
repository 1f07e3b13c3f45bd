/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/* tests/consumer/consumer.c: what a packaged libuffd user builds (tests/install.sh,
 * tests/install-consumers.sh): open a userfaultfd, let a thread fault, resolve the fault. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <libuffd.h>

static volatile char *mem;
static char seen;

static void *toucher(void *arg)
{
	(void)arg;
	seen = mem[100];
	return NULL;
}

int main(void)
{
	long page = sysconf(_SC_PAGESIZE);
	struct libuffd_open_opts o = LIBUFFD_OPTS_INIT(libuffd_open_opts, .flags = LIBUFFD_OPEN_NONBLOCK);
	libuffd_handle *h = NULL;
	int rc = libuffd_open(&o, &h);
	if (rc != 0) {
		fprintf(stderr, "libuffd_open: %s\n", libuffd_last_error());
		return 1;
	}
	mem = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *src = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED || src == MAP_FAILED)
		return 1;
	memset(src, 'Z', page);
	if (libuffd_register(h, (void *)mem, page, LIBUFFD_REGISTER_MISSING, NULL) != 0) {
		fprintf(stderr, "libuffd_register: %s\n", libuffd_last_error());
		return 1;
	}
	pthread_t t;
	if (pthread_create(&t, NULL, toucher, NULL) != 0)
		return 1;
	struct libuffd_event ev[1];
	int n = 0;
	for (int i = 0; i < 100 && n == 0; i++)
		n = libuffd_read_events(h, ev, 1, 100);
	if (n != 1 || ev[0].kind != LIBUFFD_EVENT_PAGEFAULT ||
	    ev[0].u.fault.address != (void *)mem) {
		fprintf(stderr, "no fault event (%d): %s\n", n, libuffd_last_error());
		return 1;
	}
	if (libuffd_copy(h, (void *)mem, src, page, 0) != page) {
		fprintf(stderr, "libuffd_copy: %s\n", libuffd_last_error());
		return 1;
	}
	pthread_join(t, NULL);
	if (seen != 'Z')
		return 1;
	printf("consumer: libuffd %s resolved a fault at %p\n", libuffd_version_string(), (void *)mem);
	libuffd_handle_free(h);
	return 0;
}
