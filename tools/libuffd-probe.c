/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * libuffd-probe: what this kernel and this user can do with userfaultfd.
 *
 *   libuffd-probe [--json] [--require NAME[,NAME...]]
 *
 * Reports, as a table (or one JSON object with --json):
 *  - each way of creating a userfaultfd (the userfaultfd(2) system call,
 *    /dev/userfaultfd), for user-mode faults only and for kernel-mode
 *    faults too, and why each that failed did (errno and libuffd's reason);
 *  - whether kernel-mode faults are allowed, with what decides it
 *    (vm.unprivileged_userfaultfd, CAP_SYS_PTRACE);
 *  - every feature bit (names from libuffd_feature_name());
 *  - per memory kind (anonymous, shmem, hugetlb, a regular file), the
 *    ioctls the kernel allows after registering each mode, or its errno;
 *  - the huge pages reserved, and whether PAGEMAP_SCAN and PROCMAP_QUERY
 *    exist.
 * Exit status: 0, or with --require, 0 when every named feature (or
 * KERNEL_FAULTS) is available and 1 when not; 2 for a usage error.
 * See libuffd-probe(1).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <libuffd.h>

/* ------------------------------------------------------------ helpers */

static const char *errno_name(int e)
{
	switch (e) {
#define N(x) case x: return #x
	N(EPERM); N(ENOENT); N(ESRCH); N(EINTR); N(EIO); N(ENXIO); N(E2BIG); N(EBADF);
	N(EAGAIN); N(ENOMEM); N(EACCES); N(EFAULT); N(EBUSY); N(EEXIST); N(ENODEV);
	N(EINVAL); N(ENFILE); N(EMFILE); N(ENOTTY); N(ENOSPC); N(ENOSYS); N(EOPNOTSUPP);
	N(ENOTRECOVERABLE);
#undef N
	}
	static char buf[16];
	snprintf(buf, sizeof(buf), "E%d", e);
	return buf;
}

static char *dupstr(const char *s)
{
	char *d = strdup(s ? s : "");
	if (!d)
		exit(3);
	return d;
}

/* A value from /proc/meminfo ("HugePages_Free"), or -1. */
static long meminfo(const char *key)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[256];
	long v = -1;
	size_t n = strlen(key);
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, n) == 0 && line[n] == ':') {
			v = strtol(line + n + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

static long read_long(const char *path)
{
	FILE *f = fopen(path, "r");
	long v = -1;
	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

/* Whether CAP_SYS_PTRACE (19) is in the effective set. */
static int has_cap_sys_ptrace(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	unsigned long long eff = 0;
	int found = 0;
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "CapEff: %llx", &eff) == 1) {
			found = 1;
			break;
		}
	fclose(f);
	return found ? (int)((eff >> 19) & 1) : -1;
}

/* ------------------------------------------------------------ facts */

struct creation {
	const char *path; /* "syscall", "dev" */
	const char *faults; /* "user", "kernel" */
	int rc;
	char *error;
};

struct mode_result {
	const char *mode;
	int rc;
	uint64_t ioctls;
	char *error;
};

struct kind {
	const char *name;
	const char *what;
	int available; /* the memory could be mapped */
	char *unavailable; /* why not */
	long page_size;
	struct mode_result modes[3];
};

static struct creation creations[4];
static int kernel_faults_allowed;
static long unpriv_sysctl;
static int cap_ptrace;
static int dev_exists;
static int feat_rc;
static uint64_t features;
static char *feat_error;
static struct kind kinds[4];
static int n_kinds;
static long huge_total, huge_free, huge_kib;
static int pagemap_scan = -1, procmap_query = -1;
static char *pagemap_error, *procmap_error;

static void probe_creation(void)
{
	static const struct { const char *path; uint32_t flag; } paths[] = {
		{ "syscall", LIBUFFD_OPEN_NO_DEV },
		{ "dev", LIBUFFD_OPEN_NO_SYSCALL },
	};
	int k = 0;
	for (int p = 0; p < 2; p++)
		for (int user = 1; user >= 0; user--) {
			LIBUFFD_OPTS(libuffd_open_opts, oo,
				     .flags = paths[p].flag | (user ? LIBUFFD_OPEN_USER_ONLY : 0));
			libuffd_handle *h = NULL;
			struct creation *c = &creations[k++];
			c->path = paths[p].path;
			c->faults = user ? "user" : "kernel";
			c->rc = libuffd_open(&oo, &h);
			c->error = c->rc < 0 ? dupstr(libuffd_last_error()) : NULL;
			if (c->rc == 0 && !user)
				kernel_faults_allowed = 1;
			libuffd_handle_free(h);
		}
	unpriv_sysctl = read_long("/proc/sys/vm/unprivileged_userfaultfd");
	cap_ptrace = has_cap_sys_ptrace();
	dev_exists = access("/dev/userfaultfd", F_OK) == 0;
}

static void probe_features(void)
{
	feat_rc = libuffd_probe_features(&features);
	if (feat_rc < 0)
		feat_error = dupstr(libuffd_last_error());
}

/* Map one page (or huge page) of a kind of memory; NULL with *why set. */
static void *map_kind(const char *name, size_t *len, char **why)
{
	long ps = sysconf(_SC_PAGESIZE);
	int fd = -1;
	void *p = MAP_FAILED;
	char buf[256];

	*len = (size_t)ps;
	if (strcmp(name, "anon") == 0) {
		p = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	} else if (strcmp(name, "shmem") == 0) {
		fd = memfd_create("libuffd-probe", MFD_CLOEXEC);
	} else if (strcmp(name, "hugetlb") == 0) {
		*len = huge_kib > 0 ? (size_t)huge_kib << 10 : 2UL << 20;
		if (huge_free <= 0) {
			*why = dupstr("no free huge page (/proc/sys/vm/nr_hugepages)");
			return NULL;
		}
		fd = memfd_create("libuffd-probe", MFD_CLOEXEC | MFD_HUGETLB);
	} else {
		/* A regular file: in $TMPDIR or /var/tmp, unlinked at once. */
		const char *dir = getenv("TMPDIR");
		fd = open(dir && *dir ? dir : "/var/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	}
	if (fd >= 0 || strcmp(name, "anon") != 0) {
		if (fd < 0 || ftruncate(fd, (off_t)*len) < 0) {
			snprintf(buf, sizeof(buf), "%s: %s", fd < 0 ? "open/memfd_create" : "ftruncate",
				 strerror(errno));
			*why = dupstr(buf);
			if (fd >= 0)
				close(fd);
			return NULL;
		}
		p = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		close(fd);
	}
	if (p == MAP_FAILED) {
		snprintf(buf, sizeof(buf), "mmap: %s", strerror(errno));
		*why = dupstr(buf);
		return NULL;
	}
	return p;
}

static void probe_memory(void)
{
	static const struct { const char *name, *what; } list[] = {
		{ "anon", "anonymous private memory" },
		{ "shmem", "shmem (memfd, MAP_SHARED)" },
		{ "hugetlb", "hugetlb (memfd MFD_HUGETLB, MAP_SHARED)" },
		{ "file", "a regular file (MAP_SHARED)" },
	};
	static const struct { const char *name; uint64_t mode; } modes[] = {
		{ "MISSING", LIBUFFD_REGISTER_MISSING },
		{ "WP", LIBUFFD_REGISTER_WP },
		{ "MINOR", LIBUFFD_REGISTER_MINOR },
	};
	/* Every feature offered (MINOR and WP on shmem/hugetlb need theirs),
	 * except EVENT_FORK, which needs CAP_SYS_PTRACE and changes nothing
	 * here. User-mode faults only: any user may. */
	LIBUFFD_OPTS(libuffd_open_opts, oo, .flags = LIBUFFD_OPEN_USER_ONLY,
		     .features = feat_rc == 0 ? features & ~(uint64_t)LIBUFFD_FEATURE_EVENT_FORK : 0);
	libuffd_handle *h = NULL;
	int open_rc = libuffd_open(&oo, &h);
	char *open_error = open_rc < 0 ? dupstr(libuffd_last_error()) : NULL;

	for (size_t i = 0; i < sizeof(list) / sizeof(list[0]); i++) {
		struct kind *k = &kinds[n_kinds++];
		size_t len = 0;
		k->name = list[i].name;
		k->what = list[i].what;
		void *p = map_kind(k->name, &len, &k->unavailable);
		k->available = p != NULL;
		k->page_size = (long)len;
		for (int m = 0; m < 3; m++) {
			struct mode_result *r = &k->modes[m];
			r->mode = modes[m].name;
			if (!p) {
				r->rc = 0;
				continue;
			}
			if (open_rc < 0) {
				r->rc = open_rc;
				r->error = open_error;
				continue;
			}
			r->rc = libuffd_register(h, p, len, modes[m].mode, &r->ioctls);
			if (r->rc < 0)
				r->error = dupstr(libuffd_last_error());
			else
				libuffd_unregister(h, p, len);
		}
		if (p)
			munmap(p, len);
	}
	libuffd_handle_free(h);
}

/* struct pm_scan_arg (PAGEMAP_SCAN, Linux 6.7) and struct procmap_query
 * (PROCMAP_QUERY, Linux 6.11): only their sizes matter to the request
 * numbers; the kernel headers of the build machine may lack them. */
struct pm_scan_arg_ {
	uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
	uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
struct procmap_query_ {
	uint64_t size, query_flags, query_addr, vma_start, vma_end, vma_flags;
	uint64_t vma_page_size, vma_offset, inode;
	uint32_t dev_major, dev_minor, vma_name_size, build_id_size;
	uint64_t vma_name_addr, build_id_addr;
};
#define PAGEMAP_SCAN_ _IOWR('f', 16, struct pm_scan_arg_)
#define PROCMAP_QUERY_ _IOWR('f', 17, struct procmap_query_)

/* 1 present, 0 absent (ENOTTY), -1 unknown (*why says). */
static int probe_ioctl(const char *file, unsigned long req, void *arg, char **why)
{
	char buf[256];
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(buf, sizeof(buf), "open %s: %s", file, strerror(errno));
		*why = dupstr(buf);
		return -1;
	}
	int rc = ioctl(fd, req, arg);
	int e = errno;
	close(fd);
	if (rc >= 0)
		return 1;
	if (e == ENOTTY)
		return 0;
	/* Any other answer comes from the request's own checks: it exists. */
	snprintf(buf, sizeof(buf), "%s (the request exists)", errno_name(e));
	*why = dupstr(buf);
	return 1;
}

static void probe_misc(void)
{
	huge_total = meminfo("HugePages_Total");
	huge_free = meminfo("HugePages_Free");
	huge_kib = meminfo("Hugepagesize");

	static char page[1] = { 1 };
	struct pm_scan_arg_ scan;
	memset(&scan, 0, sizeof(scan));
	scan.size = sizeof(scan);
	scan.start = (uintptr_t)page & ~(uintptr_t)(sysconf(_SC_PAGESIZE) - 1);
	scan.end = scan.start + (uint64_t)sysconf(_SC_PAGESIZE);
	scan.category_mask = 0;
	scan.return_mask = 0;
	pagemap_scan = probe_ioctl("/proc/self/pagemap", PAGEMAP_SCAN_, &scan, &pagemap_error);

	struct procmap_query_ q;
	memset(&q, 0, sizeof(q));
	q.size = sizeof(q);
	q.query_addr = (uintptr_t)page;
	procmap_query = probe_ioctl("/proc/self/maps", PROCMAP_QUERY_, &q, &procmap_error);
}

/* ------------------------------------------------------------ names */

static const struct { uint64_t bit; const char *name; } ioctl_names[] = {
#define I(n) { LIBUFFD_IOCTL_##n, #n }
	I(WAKE), I(COPY), I(ZEROPAGE), I(MOVE), I(WRITEPROTECT), I(CONTINUE), I(POISON),
#undef I
};

/* "WAKE|COPY|..." for an ioctls mask (bits without a name as 0x...). */
static void ioctls_text(uint64_t mask, char *out, size_t n)
{
	out[0] = 0;
	uint64_t rest = mask;
	for (size_t i = 0; i < sizeof(ioctl_names) / sizeof(ioctl_names[0]); i++)
		if (mask & ioctl_names[i].bit) {
			snprintf(out + strlen(out), n - strlen(out), "%s%s", out[0] ? "|" : "",
				 ioctl_names[i].name);
			rest &= ~ioctl_names[i].bit;
		}
	/* Bits 0 and 1 (_UFFDIO_REGISTER, _UFFDIO_UNREGISTER) are not range
	 * operations; any other bit without a name is shown in hex. */
	rest &= ~(uint64_t)0x3;
	if (rest)
		snprintf(out + strlen(out), n - strlen(out), "%s%#llx", out[0] ? "|" : "",
			 (unsigned long long)rest);
}

/* The bit of a feature name (with or without LIBUFFD_FEATURE_), 0 if none. */
static uint64_t feature_bit(const char *name)
{
	if (strncasecmp(name, "LIBUFFD_FEATURE_", 16) == 0)
		name += 16;
	for (int i = 0; i < 64; i++) {
		const char *n = libuffd_feature_name(1ULL << i);
		if (n && strcasecmp(n, name) == 0)
			return 1ULL << i;
	}
	return 0;
}

/* ------------------------------------------------------------ output */

static void json_str(FILE *f, const char *s)
{
	if (!s) {
		fputs("null", f);
		return;
	}
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static const char *creation_label(const struct creation *c)
{
	static char buf[64];
	snprintf(buf, sizeof(buf), "%s, %s-mode faults",
		 strcmp(c->path, "dev") == 0 ? "/dev/userfaultfd" : "userfaultfd(2)",
		 c->faults);
	return buf;
}

static void print_table(const char *require, int req_met, const char *missing)
{
	struct utsname u;
	uname(&u);
	printf("libuffd-probe: libuffd %s, Linux %s %s, uid %d euid %d\n\n",
	       libuffd_version_string(), u.release, u.machine, (int)getuid(), (int)geteuid());

	printf("Creating a userfaultfd\n");
	for (int i = 0; i < 4; i++) {
		const struct creation *c = &creations[i];
		if (c->rc == 0)
			printf("  %-37s ok\n", creation_label(c));
		else
			printf("  %-37s %s: %s\n", creation_label(c), errno_name(-c->rc), c->error);
	}
	printf("  /dev/userfaultfd                      %s\n", dev_exists ? "exists" : "absent");
	printf("Kernel-mode faults (read(2) into registered memory, KVM, vhost): %s\n",
	       kernel_faults_allowed ? "allowed" : "NOT allowed");
	printf("  vm.unprivileged_userfaultfd = %ld, CAP_SYS_PTRACE: %s\n", unpriv_sysctl,
	       cap_ptrace < 0 ? "unknown" : cap_ptrace ? "yes" : "no");

	printf("\nFeatures (libuffd_probe_features)\n");
	if (feat_rc < 0) {
		printf("  none: %s: %s\n", errno_name(-feat_rc), feat_error);
	} else {
		for (int i = 0; i < 64; i++) {
			const char *n = libuffd_feature_name(1ULL << i);
			if (n)
				printf("  %-20s %s\n", n, features & (1ULL << i) ? "yes" : "no");
			else if (features & (1ULL << i))
				printf("  bit%-17d yes (newer than this libuffd)\n", i);
		}
	}

	printf("\nIoctls allowed after registering (per memory kind and mode; a user-mode handle\n"
	       "with every feature offered but EVENT_FORK: WP_ASYNC lets WP register on any memory)\n");
	for (int i = 0; i < n_kinds; i++) {
		const struct kind *k = &kinds[i];
		printf("  %-8s %s", k->name, k->what);
		if (!k->available) {
			printf(": not tested: %s\n", k->unavailable);
			continue;
		}
		printf(", pages of %ld KiB\n", k->page_size >> 10);
		for (int m = 0; m < 3; m++) {
			const struct mode_result *r = &k->modes[m];
			char text[256];
			if (r->rc == 0) {
				ioctls_text(r->ioctls, text, sizeof(text));
				printf("    %-8s %s\n", r->mode, text);
			} else {
				printf("    %-8s %s: %s\n", r->mode, errno_name(-r->rc), r->error);
			}
		}
	}

	printf("\nHuge pages: %ld reserved, %ld free, %ld KiB each\n", huge_total, huge_free, huge_kib);
	printf("PAGEMAP_SCAN (/proc/self/pagemap): %s\n",
	       pagemap_scan > 0 ? "present" : pagemap_scan == 0 ? "absent" : pagemap_error);
	printf("PROCMAP_QUERY (/proc/self/maps):   %s\n",
	       procmap_query > 0 ? "present" : procmap_query == 0 ? "absent" : procmap_error);
	if (require)
		printf("\nRequirement %s: %s%s%s\n", require, req_met ? "met" : "NOT met",
		       req_met ? "" : ", missing ", req_met ? "" : missing);
}

static void print_json(const char *require, int req_met, char **req_names, int n_req,
		       const char *missing)
{
	struct utsname u;
	uname(&u);
	FILE *f = stdout;
	fprintf(f, "{\n  \"libuffd_version\": ");
	json_str(f, libuffd_version_string());
	fprintf(f, ",\n  \"kernel\": ");
	json_str(f, u.release);
	fprintf(f, ",\n  \"machine\": ");
	json_str(f, u.machine);
	fprintf(f, ",\n  \"uid\": %d,\n  \"euid\": %d,\n", (int)getuid(), (int)geteuid());

	fprintf(f, "  \"creation\": [\n");
	for (int i = 0; i < 4; i++) {
		const struct creation *c = &creations[i];
		fprintf(f, "    {\"path\": \"%s\", \"faults\": \"%s\", \"ok\": %s, \"errno\": ",
			c->path, c->faults, c->rc == 0 ? "true" : "false");
		json_str(f, c->rc ? errno_name(-c->rc) : NULL);
		fprintf(f, ", \"error\": ");
		json_str(f, c->error);
		fprintf(f, "}%s\n", i < 3 ? "," : "");
	}
	fprintf(f, "  ],\n  \"dev_userfaultfd_exists\": %s,\n", dev_exists ? "true" : "false");
	fprintf(f, "  \"kernel_faults\": {\"allowed\": %s, \"unprivileged_userfaultfd\": %ld, "
		   "\"cap_sys_ptrace\": %s},\n",
		kernel_faults_allowed ? "true" : "false", unpriv_sysctl,
		cap_ptrace < 0 ? "null" : cap_ptrace ? "true" : "false");

	fprintf(f, "  \"features\": {\"ok\": %s, \"error\": ", feat_rc == 0 ? "true" : "false");
	json_str(f, feat_error);
	fprintf(f, ", \"mask\": \"%#llx\", \"bits\": {", (unsigned long long)(feat_rc == 0 ? features : 0));
	int first = 1;
	for (int i = 0; i < 64; i++) {
		const char *n = libuffd_feature_name(1ULL << i);
		char unnamed[16];
		if (!n) {
			if (feat_rc != 0 || !(features & (1ULL << i)))
				continue;
			snprintf(unnamed, sizeof(unnamed), "bit%d", i);
			n = unnamed;
		}
		fprintf(f, "%s\"%s\": %s", first ? "" : ", ", n,
			feat_rc == 0 && (features & (1ULL << i)) ? "true" : "false");
		first = 0;
	}
	fprintf(f, "}},\n");

	fprintf(f, "  \"memory\": {\n");
	for (int i = 0; i < n_kinds; i++) {
		const struct kind *k = &kinds[i];
		fprintf(f, "    \"%s\": {\"available\": %s, \"reason\": ", k->name,
			k->available ? "true" : "false");
		json_str(f, k->unavailable);
		fprintf(f, ", \"page_size\": %ld, \"modes\": {", k->available ? k->page_size : 0);
		for (int m = 0; k->available && m < 3; m++) {
			const struct mode_result *r = &k->modes[m];
			fprintf(f, "%s\"%s\": {\"ok\": %s, \"ioctls\": \"%#llx\", \"names\": [",
				m ? ", " : "", r->mode, r->rc == 0 ? "true" : "false",
				(unsigned long long)(r->rc == 0 ? r->ioctls : 0));
			int firstn = 1;
			for (size_t j = 0; r->rc == 0 && j < sizeof(ioctl_names) / sizeof(ioctl_names[0]); j++)
				if (r->ioctls & ioctl_names[j].bit) {
					fprintf(f, "%s\"%s\"", firstn ? "" : ", ", ioctl_names[j].name);
					firstn = 0;
				}
			fprintf(f, "], \"errno\": ");
			json_str(f, r->rc ? errno_name(-r->rc) : NULL);
			fprintf(f, ", \"error\": ");
			json_str(f, r->error);
			fprintf(f, "}");
		}
		fprintf(f, "}}%s\n", i < n_kinds - 1 ? "," : "");
	}
	fprintf(f, "  },\n");
	fprintf(f, "  \"hugepages\": {\"total\": %ld, \"free\": %ld, \"size_kib\": %ld},\n", huge_total,
		huge_free, huge_kib);
	fprintf(f, "  \"pagemap_scan\": %s,\n  \"procmap_query\": %s",
		pagemap_scan > 0 ? "true" : pagemap_scan == 0 ? "false" : "null",
		procmap_query > 0 ? "true" : procmap_query == 0 ? "false" : "null");
	if (require) {
		fprintf(f, ",\n  \"require\": {\"names\": [");
		for (int i = 0; i < n_req; i++) {
			fprintf(f, "%s", i ? ", " : "");
			json_str(f, req_names[i]);
		}
		fprintf(f, "], \"met\": %s, \"missing\": [", req_met ? "true" : "false");
		/* missing is "A,B" */
		const char *s = missing;
		int firstm = 1;
		while (s && *s) {
			const char *e = strchr(s, ',');
			size_t n = e ? (size_t)(e - s) : strlen(s);
			fprintf(f, "%s\"%.*s\"", firstm ? "" : ", ", (int)n, s);
			firstm = 0;
			s = e ? e + 1 : NULL;
		}
		fprintf(f, "]}");
	}
	fprintf(f, "\n}\n");
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: libuffd-probe [--json] [--require NAME[,NAME...]]\n"
		"  --json      one JSON object instead of the table\n"
		"  --require   exit 0 if every named feature is offered (names as printed:\n"
		"              MOVE, WP_ASYNC, ...; KERNEL_FAULTS: kernel-mode faults allowed),\n"
		"              1 if not\n"
		"  exit status 2: usage error\n");
}

int main(int argc, char *argv[])
{
	int json = 0;
	const char *require = NULL;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			json = 1;
		} else if (strcmp(argv[i], "--require") == 0 && i + 1 < argc) {
			require = argv[++i];
		} else if (strncmp(argv[i], "--require=", 10) == 0) {
			require = argv[i] + 10;
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		} else {
			fprintf(stderr, "libuffd-probe: %s: %s\n", argv[i],
				strcmp(argv[i], "--require") == 0 ? "needs a list of names"
								   : "unknown argument");
			usage(stderr);
			return 2;
		}
	}

	/* Parse the requirement before probing: a bad name is a usage error. */
	char *req_names[64];
	int n_req = 0;
	if (require) {
		char *copy = dupstr(require), *save = NULL;
		for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
			if (n_req == 64)
				break;
			if (strcasecmp(t, "KERNEL_FAULTS") != 0 && !feature_bit(t)) {
				fprintf(stderr, "libuffd-probe: --require: unknown feature '%s'\n", t);
				usage(stderr);
				return 2;
			}
			req_names[n_req++] = t;
		}
		if (n_req == 0) {
			fprintf(stderr, "libuffd-probe: --require: empty list\n");
			usage(stderr);
			return 2;
		}
	}

	probe_creation();
	probe_features();
	probe_misc();
	probe_memory();

	int met = 1;
	char missing[1024] = "";
	for (int i = 0; i < n_req; i++) {
		int ok = strcasecmp(req_names[i], "KERNEL_FAULTS") == 0
				 ? kernel_faults_allowed
				 : feat_rc == 0 && (features & feature_bit(req_names[i]));
		if (!ok) {
			met = 0;
			snprintf(missing + strlen(missing), sizeof(missing) - strlen(missing), "%s%s",
				 missing[0] ? "," : "", req_names[i]);
		}
	}

	if (json)
		print_json(require, met, req_names, n_req, missing);
	else
		print_table(require, met, missing);
	return require && !met ? 1 : 0;
}
