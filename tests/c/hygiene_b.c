/*
 * hygiene_b: <linux/userfaultfd.h> first, then <uffd.h> (twice). Built as
 * C11 (and run) and checked as C++17 by run.sh.
 */
#include <linux/userfaultfd.h>
#include <uffd.h>
#include <uffd.h>

#include <stdio.h>
#include <string.h>

int main(void)
{
	struct uffdio_register reg;
	uffd_handle *h = NULL;
	uint64_t mode = LIBUFFD_REGISTER_MISSING | LIBUFFD_REGISTER_WP;

	memset(&reg, 0, sizeof reg);
	reg.mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP;
	if (reg.mode != mode)
		return 1;
	/* Only the declarations matter here; a NULL handle is harmless. */
	if (uffd_handle_fd(h) != -22)
		return 1;
	uffd_handle_free(h);
	printf("hygiene_b: linux/userfaultfd.h then uffd.h: ok (%s)\n", uffd_strerror(0));
	return 0;
}
