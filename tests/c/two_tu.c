/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * two_tu: libuffd.h included by two translation units linked into one
 * program (two_tu.c and its companion two_tu_tu2.c, linked together by
 * run.sh). Nothing the header defines may clash at link time.
 */
#include "harness.h"

/* Defined in two_tu_tu2.c. */
uint32_t tu2_version(void);
size_t tu2_event_size(void);
const char *tu2_last_error_after_failure(void);

int main(void)
{
	CHECK_EQ(tu2_version(), libuffd_version());
	CHECK_EQ(tu2_event_size(), sizeof(struct libuffd_event));
	CHECK_CONTAINS(tu2_last_error_after_failure(), "libuffd_handle_fd");
	/* The last error is per thread, shared by both units. */
	CHECK_CONTAINS(libuffd_last_error(), "libuffd_handle_fd");
	return h_finish();
}
