/* The second translation unit of two_tu.c: uffd.h alone. */
#include <uffd.h>

uint32_t tu2_version(void);
size_t tu2_event_size(void);
const char *tu2_last_error_after_failure(void);

uint32_t tu2_version(void)
{
	return uffd_version();
}

size_t tu2_event_size(void)
{
	return sizeof(struct uffd_event);
}

const char *tu2_last_error_after_failure(void)
{
	(void)uffd_handle_fd(NULL);
	return uffd_last_error();
}
