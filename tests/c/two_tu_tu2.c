/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/* The second translation unit of two_tu.c: libuffd.h alone. */
#include <libuffd.h>

uint32_t tu2_version(void);
size_t tu2_event_size(void);
const char *tu2_last_error_after_failure(void);

uint32_t tu2_version(void)
{
	return libuffd_version();
}

size_t tu2_event_size(void)
{
	return sizeof(struct libuffd_event);
}

const char *tu2_last_error_after_failure(void)
{
	(void)libuffd_handle_fd(NULL);
	return libuffd_last_error();
}
