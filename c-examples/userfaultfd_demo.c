/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * userfaultfd_demo: the example program of userfaultfd(2), on libuffd.
 *
 * Maps N pages of anonymous memory that are never filled by the kernel,
 * registers them for missing-page faults, and starts a handler thread.
 * The main thread then reads a byte every 1 KiB of the region; each first
 * touch of a page faults, and the handler resolves the fault by copying in
 * a page full of one letter ('A' for the first fault, 'B' for the next...).
 *
 * Usage: userfaultfd_demo NUM_PAGES
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <libuffd.h>

static long page_size;

static void die(const char *what, long err)
{
	fprintf(stderr, "%s: %s\n  %s\n", what, libuffd_strerror((int)err), libuffd_last_error());
	exit(EXIT_FAILURE);
}

/* Serve faults until the main thread has touched every page. */
static void *fault_handler(void *arg)
{
	libuffd_handle *h = arg;
	char *page = mmap(NULL, page_size, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int fault_cnt = 0;

	if (page == MAP_FAILED) {
		perror("mmap");
		exit(EXIT_FAILURE);
	}
	for (;;) {
		struct libuffd_event ev[16];
		int n = libuffd_read_events(h, ev, 16, -1);

		if (n < 0)
			die("libuffd_read_events", n);
		for (int i = 0; i < n; i++) {
			if (ev[i].kind != LIBUFFD_EVENT_PAGEFAULT) {
				fprintf(stderr, "unexpected event 0x%x\n", ev[i].kind);
				exit(EXIT_FAILURE);
			}
			printf("    fault handler: flags = %u; address = %p\n",
			       ev[i].u.fault.flags, ev[i].u.fault.address);

			/* A new letter for each fault, wrapping after 'T'. */
			memset(page, 'A' + fault_cnt % 20, page_size);
			fault_cnt++;

			void *dst = (void *)((uintptr_t)ev[i].u.fault.address & ~(page_size - 1));
			int64_t done = libuffd_copy(h, dst, page, page_size, 0);
			if (done == -EEXIST) {
				/* Resolved by someone else meanwhile: just wake. */
				libuffd_wake(h, dst, page_size);
			} else if (done < 0) {
				die("libuffd_copy", done);
			}
			printf("        (libuffd_copy copied %lld bytes)\n", (long long)done);
		}
	}
	return NULL;
}

int main(int argc, char *argv[])
{
	if (argc != 2) {
		fprintf(stderr, "Usage: %s num-pages\n", argv[0]);
		return EXIT_FAILURE;
	}
	page_size = sysconf(_SC_PAGESIZE);
	size_t len = strtoul(argv[1], NULL, 0) * page_size;

	/* No flags: like userfaultfd(O_CLOEXEC), faults taken inside the kernel
	 * (read(2) into this memory, a KVM guest, vhost) are trapped too, which
	 * a VMM or a lazy restore needs; it takes CAP_SYS_PTRACE,
	 * vm.unprivileged_userfaultfd=1 or access to /dev/userfaultfd. A
	 * program whose memory only its own threads touch (a garbage
	 * collector) passes LIBUFFD_OPEN_USER_ONLY, which anyone may use. */
	libuffd_handle *h;
	int rc = libuffd_open(NULL, &h);
	if (rc < 0)
		die("libuffd_open", rc);

	char *addr = mmap(NULL, len, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (addr == MAP_FAILED) {
		perror("mmap");
		return EXIT_FAILURE;
	}
	printf("Address returned by mmap() = %p\n", (void *)addr);

	rc = libuffd_register(h, addr, len, LIBUFFD_REGISTER_MISSING, NULL);
	if (rc < 0)
		die("libuffd_register", rc);

	pthread_t thr;
	if ((rc = pthread_create(&thr, NULL, fault_handler, h)) != 0) {
		errno = rc;
		perror("pthread_create");
		return EXIT_FAILURE;
	}

	/* Touch a byte every 1 KiB: several reads per page, one fault each. */
	for (size_t l = 0xf; l < len; l += 1024) {
		char c = addr[l];
		printf("Read address %p in main(): ", (void *)(addr + l));
		printf("%c\n", c);
		if (c != 'A' + (int)(l / page_size) % 20) {
			fprintf(stderr, "unexpected byte %c at offset %zu\n", c, l);
			return EXIT_FAILURE;
		}
	}
	/* The handler thread is still blocked reading; exiting ends it. */
	return EXIT_SUCCESS;
}
