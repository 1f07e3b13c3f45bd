// SPDX-License-Identifier: MIT OR Apache-2.0
//
// raii: libuffd from C++17, with small RAII wrappers over the C API.
//
//  - uffd::Handle and uffd::Monitor own a libuffd_handle / libuffd_monitor
//    (std::unique_ptr with the library's free functions as deleters);
//  - uffd::Mapping owns an mmap()ed range;
//  - failures become std::system_error carrying the errno and
//    libuffd_last_error()'s text;
//  - Monitor::on_fault takes any callable; the C callback that calls it is
//    noexcept and turns an exception into -EIO (an exception must never
//    unwind through the library's frames: libuffd_monitor_ops).
//
// The program serves two regions of one mapping: the first from a
// std::vector (LIBUFFD_SOURCE_BUFFER), the second computed by a lambda
// (LIBUFFD_SOURCE_CALLBACK), reads them back, checks them, and prints
// "verified N pages". Destruction order does the cleanup: the monitor
// (declared last) stops and goes first, then the mapping.
//
// Usage: raii

#include <libuffd.h>

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

namespace uffd {

// Throws for a negative errno, returns anything else.
template <typename T> T check(T rc, const char *what)
{
	if (rc < 0)
		throw std::system_error(static_cast<int>(-rc), std::generic_category(),
					std::string(what) + ": " + libuffd_last_error());
	return rc;
}

class Handle {
public:
	explicit Handle(const libuffd_open_opts &opts)
	{
		libuffd_handle *h = nullptr;
		check(libuffd_open(&opts, &h), "libuffd_open");
		h_.reset(h);
	}
	libuffd_handle *get() const { return h_.get(); }
	uint64_t features() const
	{
		uint64_t f = 0;
		check(libuffd_handle_features(h_.get(), &f), "libuffd_handle_features");
		return f;
	}

private:
	struct Free {
		void operator()(libuffd_handle *h) const noexcept { libuffd_handle_free(h); }
	};
	std::unique_ptr<libuffd_handle, Free> h_;
};

class Mapping {
public:
	explicit Mapping(size_t len) : len_(len)
	{
		void *p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			throw std::system_error(errno, std::generic_category(), "mmap");
		p_ = static_cast<char *>(p);
	}
	~Mapping() { munmap(p_, len_); }
	Mapping(const Mapping &) = delete;
	Mapping &operator=(const Mapping &) = delete;
	char *data() const { return p_; }
	size_t size() const { return len_; }

private:
	char *p_;
	size_t len_;
};

class Monitor {
public:
	// f(fault, page) fills page (fault.page_size bytes) for the fault.
	using FaultFn = std::function<void(const libuffd_fault &, char *)>;

	Monitor()
	{
		LIBUFFD_OPTS(libuffd_monitor_ops, ops, .on_fault = &Monitor::trampoline);
		libuffd_monitor *m = nullptr;
		check(libuffd_monitor_new(nullptr, &ops, this, nullptr, &m), "libuffd_monitor_new");
		m_.reset(m);
	}
	Monitor(const Monitor &) = delete; // callbacks hold `this`
	Monitor &operator=(const Monitor &) = delete;

	uint32_t add(const Handle &h)
	{
		uint32_t id = 0;
		check(libuffd_monitor_add_handle(m_.get(), h.get(), &id), "libuffd_monitor_add_handle");
		return id;
	}
	// Register [start, start+len) and serve it from buffer (kept alive by
	// the caller for as long as the monitor serves it).
	void serve_buffer(uint32_t id, char *start, size_t len, const std::vector<char> &buffer)
	{
		LIBUFFD_OPTS(libuffd_region_opts, ro, .source = LIBUFFD_SOURCE_BUFFER,
			     .register_mode = LIBUFFD_REGISTER_MISSING, .buffer = buffer.data(),
			     .buffer_len = buffer.size());
		check(libuffd_monitor_add_region(m_.get(), id, start, len, &ro),
		      "libuffd_monitor_add_region");
	}
	// Register [start, start+len) and serve it with fn.
	void serve_callback(uint32_t id, char *start, size_t len, FaultFn fn)
	{
		on_fault_ = std::move(fn);
		LIBUFFD_OPTS(libuffd_region_opts, ro, .source = LIBUFFD_SOURCE_CALLBACK,
			     .register_mode = LIBUFFD_REGISTER_MISSING);
		check(libuffd_monitor_add_region(m_.get(), id, start, len, &ro),
		      "libuffd_monitor_add_region");
	}
	void start() { check(libuffd_monitor_start(m_.get()), "libuffd_monitor_start"); }
	// Stop and wait for the run to end (the destructor does it too).
	void stop()
	{
		check(libuffd_monitor_stop(m_.get()), "libuffd_monitor_stop");
		check(libuffd_monitor_wait(m_.get()), "libuffd_monitor_wait");
	}
	// The counters; complete once the run has ended (stop()): a fault's
	// thread may resume before its fault is counted.
	libuffd_monitor_stats stats() const
	{
		libuffd_monitor_stats s{};
		s.sz = sizeof(s);
		check(libuffd_monitor_get_stats(m_.get(), &s), "libuffd_monitor_get_stats");
		return s;
	}

private:
	static int32_t trampoline(void *self, libuffd_monitor *m, const libuffd_fault *f) noexcept
	{
		auto *me = static_cast<Monitor *>(self);
		try {
			std::vector<char> page(f->page_size);
			me->on_fault_(*f, page.data());
			int32_t rc = libuffd_monitor_copy(m, f, page.data());
			return rc < 0 ? rc : LIBUFFD_ON_FAULT_HANDLED;
		} catch (...) {
			return -EIO; // the error policy releases the thread (SIGBUS)
		}
	}
	// libuffd_monitor_free stops the monitor, joins its threads and frees it.
	struct Free {
		void operator()(libuffd_monitor *m) const noexcept { libuffd_monitor_free(m); }
	};
	FaultFn on_fault_;
	std::unique_ptr<libuffd_monitor, Free> m_;
};

} // namespace uffd

int main()
{
	try {
		const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
		const size_t half = 32 * page;

		uffd::Mapping mem(2 * half);
		std::vector<char> snapshot(half);
		for (size_t i = 0; i < half; i++)
			snapshot[i] = static_cast<char>('a' + (i / page) % 26);

		LIBUFFD_OPTS(libuffd_open_opts, oo, .flags = LIBUFFD_OPEN_USER_ONLY);
		uffd::Handle h(oo);
		uffd::Monitor mon; // declared after mem: destroyed (stopped) first
		uint32_t id = mon.add(h);
		mon.serve_buffer(id, mem.data(), half, snapshot);
		mon.serve_callback(id, mem.data() + half, half,
				   [page](const libuffd_fault &f, char *out) {
					   // The page number, written all over the page.
					   uint64_t n = f.region_offset / page;
					   for (size_t i = 0; i < page; i += sizeof n)
						   std::memcpy(out + i, &n, sizeof n);
				   });
		mon.start();

		size_t bad = 0;
		for (size_t i = 0; i < half; i += 512)
			bad += mem.data()[i] != snapshot[i];
		for (size_t i = 0; i < half; i += 512) {
			uint64_t n;
			std::memcpy(&n, mem.data() + half + i, sizeof n);
			bad += n != i / page;
		}
		// Errors are exceptions carrying the library's explanation.
		bool refused = false;
		try {
			mon.serve_buffer(id, mem.data(), half, snapshot); // overlaps: refused
		} catch (const std::system_error &e) {
			refused = true;
			std::printf("raii: overlapping region refused: errno %d (%s)\n",
				    e.code().value(), libuffd_strerror(e.code().value()));
		}
		mon.stop();
		libuffd_monitor_stats st = mon.stats();
		std::printf("raii: %llu faults, %llu bytes placed, %llu failed\n",
			    static_cast<unsigned long long>(st.faults),
			    static_cast<unsigned long long>(st.bytes),
			    static_cast<unsigned long long>(st.failed));
		if (bad || st.failed || !refused || st.bytes != 2 * half) {
			std::printf("raii: FAILED: %zu wrong reads%s\n", bad,
				    refused ? "" : ", an overlapping region accepted");
			return 1;
		}
		std::printf("raii: verified %zu pages (buffer and callback regions)\n", 2 * half / page);
	} catch (const std::exception &e) {
		std::fprintf(stderr, "raii: %s\n", e.what());
		return 1;
	}
	return 0;
}
