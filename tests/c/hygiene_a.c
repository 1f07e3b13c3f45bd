/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * hygiene_a: <libuffd.h> first, then <linux/userfaultfd.h>. No name may
 * clash; libuffd.h may be included twice. Built as C11 (and run) and checked
 * as C++17 by run.sh, so it sticks to the common subset of both.
 */
#include <libuffd.h>
#include <libuffd.h>
#include <linux/userfaultfd.h>

#include <stdio.h>
#include <string.h>

int main(void)
{
	struct libuffd_event ev;
	struct uffd_msg msg;
	struct uffdio_api api;
	struct libuffd_open_opts opts;

	memset(&ev, 0, sizeof ev);
	memset(&msg, 0, sizeof msg);
	memset(&api, 0, sizeof api);
	memset(&opts, 0, sizeof opts);
	opts.sz = sizeof opts;
	api.api = UFFD_API;
	ev.kind = LIBUFFD_EVENT_PAGEFAULT;
	msg.event = UFFD_EVENT_PAGEFAULT;

	if (sizeof ev != sizeof msg || ev.kind != msg.event || api.api != 0xAA)
		return 1;
	if (libuffd_version() != LIBUFFD_VERSION)
		return 1;
	printf("hygiene_a: libuffd.h then linux/userfaultfd.h: ok (libuffd %s)\n",
	       libuffd_version_string());
	return 0;
}
