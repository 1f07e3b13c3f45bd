/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * hygiene_b: <linux/userfaultfd.h> first, then <libuffd.h> (twice). Built as
 * C11 (and run) and checked as C++17 by run.sh.
 */
#include <linux/userfaultfd.h>
#include <libuffd.h>
#include <libuffd.h>

#include <stdio.h>
#include <string.h>

int main(void)
{
	struct uffdio_register reg;
	libuffd_handle *h = NULL;
	uint64_t mode = LIBUFFD_REGISTER_MISSING | LIBUFFD_REGISTER_WP;

	memset(&reg, 0, sizeof reg);
	reg.mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP;
	if (reg.mode != mode)
		return 1;
	/* Only the declarations matter here; a NULL handle is harmless. */
	if (libuffd_handle_fd(h) != -22)
		return 1;
	libuffd_handle_free(h);
	printf("hygiene_b: linux/userfaultfd.h then libuffd.h: ok (%s)\n", libuffd_strerror(0));
	return 0;
}
