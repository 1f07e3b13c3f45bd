# SPDX-License-Identifier: MIT OR Apache-2.0
# libuffd: build, test and install.
#
#   make              build build/libuffd.so.1.x.y (+ symlinks), build/libuffd.a, build/uffd.pc
#                     (stripped; the debug info is kept in build/debug/)
#   make test         every test: Rust, C, ABI, install, unprivileged, examples, probe, man (not the benchmark)
#   make example      build and run c-examples/userfaultfd_demo
#   make examples     build every program of c-examples/ into build/examples/ (make test runs them)
#   make probe        build build/libuffd-probe (tools/libuffd-probe.c; also built by make)
#   make install      copy what `make` built (runs no cargo and builds nothing); PREFIX, LIBDIR,
#                     BINDIR, INCLUDEDIR, PKGCONFIGDIR, CMAKEDIR, MANDIR, DOCDIR, DESTDIR honoured
#   make install-debug  the shared library's separate debug info (DEBUGDIR)
#   make header       regenerate include/libuffd.h with cbindgen
#   make bench        benchmark libuffd against the hand-rolled loops (uffd_bench, handoff_bench, dirty_bench,
#                     budget_bench; three to four minutes)
#   make bench-quick  the same as a smoke run (tiny sizes, one repetition)
#   make check-abi    compare the built library with abi/libuffd.abi (abidiff); make abi-baseline rewrites it
#   make fuzz-quick   fuzz the C ABI for a minute (libFuzzer; needs clang)
#   make fuzz         the same for FUZZ_SECONDS (default 600)
#   make sanitize     C tests under ASan+UBSan, Rust tests under ASan (nightly)
#   make soak         stress: fork bursts, late handles, source errors, stop/restart

VERSION   := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
MAJOR     := $(firstword $(subst ., ,$(VERSION)))

CARGO   ?= cargo
CC      ?= cc
OBJCOPY ?= objcopy
CFLAGS  ?= -O2 -g
WARN    := -std=c11 -Wall -Wextra -Werror
BUILD   := build

# Install directories. LIBDIR follows the host's convention: the multiarch
# directory on Debian and its derivatives (lib/x86_64-linux-gnu), lib64
# where 64-bit libraries live in a real /usr/lib64 (Fedora, openSUSE),
# else lib. Every one can be overridden on the command line.
MULTIARCH   := $(shell $(CC) -print-multiarch 2>/dev/null)
HOST_LIBDIR := $(shell if [ -f /etc/debian_version ] && [ -n "$(MULTIARCH)" ]; then echo lib/$(MULTIARCH); \
                 elif [ -d /usr/lib64 ] && [ ! -L /usr/lib64 ] && [ "$$(getconf LONG_BIT 2>/dev/null)" = 64 ]; then echo lib64; \
                 else echo lib; fi)
SIZEOF_VOID_P := $(shell echo __SIZEOF_POINTER__ | $(CC) -E -P - 2>/dev/null | tail -n 1)

PREFIX       ?= /usr/local
LIBDIR       ?= $(PREFIX)/$(HOST_LIBDIR)
INCLUDEDIR   ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
CMAKEDIR     ?= $(LIBDIR)/cmake/uffd
DOCDIR       ?= $(PREFIX)/share/doc/libuffd
BINDIR       ?= $(PREFIX)/bin
DEBUGDIR     ?= $(LIBDIR)/.debug
DESTDIR      ?=
# yes: uffd.pc and uffdConfig.cmake find the prefix from their own place
# (${pcfiledir}/../..), so a staged or moved tree works; no: PREFIX as is.
RELOCATABLE  ?= yes

SONAME    := libuffd.so.$(MAJOR)
REALNAME  := libuffd.so.$(VERSION)
MAPFILE   := src/ffi/libuffd.map
SHLIB     := $(BUILD)/$(REALNAME)
DEBUG     := $(BUILD)/debug
# The C artefacts are built here with `cargo rustc --crate-type staticlib`:
# Cargo.toml itself declares only an rlib, so a Rust crate that depends on
# libuffd builds no staticlib or cdylib. The archive cargo writes is copied
# to build/debug/libuffd.a (only when it changed: cargo runs every time).
RUST_A    := target/release/libuffd.a
FULL_A    := $(DEBUG)/libuffd.a
FULL_SO   := $(DEBUG)/$(REALNAME)
SO_DEBUG  := $(DEBUG)/$(REALNAME).debug
# The native libraries a static link of libuffd.a needs, as rustc prints
# them (NATIVE), and as uffd.pc / uffdConfig.cmake give them (PC_LIBS:
# without -lgcc_s, which no static link can use and which the compiler
# driver adds by itself to a dynamic link, nor -lc, which it always adds).
NATIVE    := $(BUILD)/native-static-libs.txt
PC_LIBS   := $(BUILD)/libs-private.txt

EXAMPLES  := $(BUILD)/userfaultfd_demo
# libuffd-probe: what this kernel and this user can do (tools/libuffd-probe.c),
# linked with libuffd.a so that the installed tool runs wherever it is put.
PROBE     := $(BUILD)/libuffd-probe

.PHONY: all lib cargo header example examples probe test-examples test-probe test test-rust test-c test-abi test-install \
        test-unprivileged test-consumers test-all install install-lib install-cmake install-doc install-bin install-debug uninstall clean \
        bench bench-quick test-licence check-arch check-abi abi-baseline check-msrv

all: lib $(EXAMPLES) $(PROBE)

lib: $(SHLIB) $(BUILD)/libuffd.a $(BUILD)/uffd.pc

# Cargo decides whether anything changed; rustc prints the native libraries
# a static link needs only when it actually compiles, so keep the last list.
cargo:
	@mkdir -p $(DEBUG)
	$(CARGO) rustc --release --locked --lib --crate-type staticlib -- --print native-static-libs 2> $(BUILD)/cargo.log \
	  || { cat $(BUILD)/cargo.log; exit 1; }
	@sed -n 's/.*native-static-libs: //p' $(BUILD)/cargo.log | tail -n 1 > $(NATIVE).new
	@if [ -s $(NATIVE).new ]; then cmp -s $(NATIVE).new $(NATIVE) && rm -f $(NATIVE).new || mv $(NATIVE).new $(NATIVE); \
	 else rm -f $(NATIVE).new; fi
	@test -s $(NATIVE) || echo "-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc" > $(NATIVE)
	@cmp -s $(RUST_A) $(FULL_A) || cp $(RUST_A) $(FULL_A)

$(FULL_A) $(NATIVE): cargo ;

$(PC_LIBS): $(NATIVE)
	tr ' ' '\n' < $< | grep -v -x -e '-lgcc_s' -e '-lc' -e '' | tr '\n' ' ' | sed 's/ $$//' > $@

# rustc's own version script cannot carry named version nodes, so the
# shared library is linked here from the static archive, then split into
# the stripped library (build/) and its debug info (build/debug/, found by
# gdb through the .gnu_debuglink section).
$(FULL_SO): $(FULL_A) $(MAPFILE) $(NATIVE)
	$(CC) -shared -o $@ \
	  -Wl,--whole-archive $(FULL_A) -Wl,--no-whole-archive \
	  -Wl,--version-script=$(MAPFILE) -Wl,--no-undefined-version \
	  -Wl,-soname,$(SONAME) -Wl,-z,defs -Wl,--gc-sections -Wl,-Bsymbolic -Wl,--build-id \
	  $$(cat $(NATIVE))

$(SHLIB): $(FULL_SO)
	$(OBJCOPY) --only-keep-debug $< $(SO_DEBUG)
	$(OBJCOPY) --strip-unneeded --remove-section=.comment --add-gnu-debuglink=$(SO_DEBUG) $< $@
	ln -sf $(REALNAME) $(BUILD)/$(SONAME)
	ln -sf $(SONAME) $(BUILD)/libuffd.so

$(BUILD)/libuffd.a: $(FULL_A)
	$(OBJCOPY) --strip-debug --remove-section=.comment --enable-deterministic-archives $< $@

# Generated for PREFIX (make install writes its own for the paths it installs to).
$(BUILD)/uffd.pc: pkgconfig/uffd.pc.in pkgconfig/subst.sh Cargo.toml $(PC_LIBS)
	sh pkgconfig/subst.sh $< $(PKGCONFIGDIR) $(PREFIX) $(LIBDIR) $(INCLUDEDIR) $(VERSION) \
	  "$$(cat $(PC_LIBS))" $(RELOCATABLE) > $@

header:
	LIBUFFD_BLESS=1 $(CARGO) test --locked --test header_fresh

$(BUILD)/userfaultfd_demo: c-examples/userfaultfd_demo.c include/libuffd.h $(SHLIB)
	$(CC) $(WARN) $(CFLAGS) -Iinclude -o $@ $< -L$(BUILD) -luffd -Wl,-rpath,$(abspath $(BUILD)) -lpthread

$(BUILD)/uffd_bench: bench/uffd_bench.c include/libuffd.h $(SHLIB)
	$(CC) -std=gnu11 -O2 -g -Wall -Wextra -Werror -Iinclude -o $@ $< -L$(BUILD) -luffd -Wl,-rpath,$(abspath $(BUILD)) -lpthread

$(BUILD)/handoff_bench: bench/handoff_bench.c include/libuffd.h $(SHLIB)
	$(CC) -std=gnu11 -O2 -g -Wall -Wextra -Werror -Iinclude -o $@ $< -L$(BUILD) -luffd -Wl,-rpath,$(abspath $(BUILD)) -lpthread

$(BUILD)/dirty_bench: bench/dirty_bench.c include/libuffd.h $(SHLIB)
	$(CC) -std=gnu11 -O2 -g -Wall -Wextra -Werror -Iinclude -o $@ $< -L$(BUILD) -luffd -Wl,-rpath,$(abspath $(BUILD)) -lpthread

$(BUILD)/budget_bench: bench/budget_bench.c include/libuffd.h $(SHLIB)
	$(CC) -std=gnu11 -O2 -g -Wall -Wextra -Werror -Iinclude -o $@ $< -L$(BUILD) -luffd -Wl,-rpath,$(abspath $(BUILD)) -lpthread

BENCHES := $(BUILD)/uffd_bench $(BUILD)/handoff_bench $(BUILD)/dirty_bench $(BUILD)/budget_bench

bench: $(BENCHES)
	$(BUILD)/uffd_bench $(BENCH_ARGS) --json $(BUILD)/bench.json
	$(BUILD)/handoff_bench
	$(BUILD)/dirty_bench
	$(BUILD)/budget_bench
	$(BUILD)/budget_bench --scan

bench-quick: $(BENCHES)
	timeout 120 $(BUILD)/dirty_bench --quick
	timeout 120 $(BUILD)/budget_bench --quick
	timeout 120 $(BUILD)/budget_bench --quick --scan
	timeout 300 $(BUILD)/uffd_bench --quick --json $(BUILD)/bench-quick.json
	timeout 120 $(BUILD)/handoff_bench --quick
	python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; \
		assert len(r) >= 65 and all(x["median_s"] > 0 for x in r), "bad bench JSON"; \
		assert sum(x["scenario"].startswith("register") for x in r) == 6, "no register results"; \
		print("bench-quick: JSON has", len(r), "results")' $(BUILD)/bench-quick.json

example: $(BUILD)/userfaultfd_demo
	timeout 60 $(BUILD)/userfaultfd_demo 3

# The example programs: every c-examples/NAME.c (C, gnu11) and
# c-examples/NAME.cpp (C++17) becomes build/examples/NAME, linked with
# libuffd.so; tests/examples.sh runs each (one line per example there) and
# checks what it prints. A new example is one file here and one line there.
CXX       ?= c++
CXXFLAGS  ?= -O2 -g
EX_DIR    := $(BUILD)/examples
EX_C      := $(sort $(wildcard c-examples/*.c))
EX_CXX    := $(sort $(wildcard c-examples/*.cpp))
# Without a C++ compiler (g++ is optional) the C++ examples are not built;
# tests/examples.sh says SKIP for them.
HAVE_CXX  := $(shell command -v $(CXX) >/dev/null 2>&1 && echo yes)
EX_BINS   := $(patsubst c-examples/%.c,$(EX_DIR)/%,$(EX_C)) \
             $(if $(HAVE_CXX),$(patsubst c-examples/%.cpp,$(EX_DIR)/%,$(EX_CXX)))
EX_LINK   := -L$(BUILD) -luffd -Wl,-rpath,$(abspath $(BUILD)) -lpthread

$(EX_DIR)/%: c-examples/%.c include/libuffd.h $(SHLIB)
	@mkdir -p $(EX_DIR)
	$(CC) -std=gnu11 -Wall -Wextra -Werror $(CFLAGS) -Iinclude -o $@ $< $(EX_LINK)

$(EX_DIR)/%: c-examples/%.cpp include/libuffd.h $(SHLIB)
	@mkdir -p $(EX_DIR)
	$(CXX) -std=c++17 -Wall -Wextra -Werror $(CXXFLAGS) -Iinclude -o $@ $< $(EX_LINK)

examples: $(EX_BINS)

test-examples: examples $(PROBE)
	BUILD=$(abspath $(BUILD)) CXX="$(CXX)" bash tests/examples.sh

test-all: test-examples

$(PROBE): tools/libuffd-probe.c include/libuffd.h $(BUILD)/libuffd.a $(NATIVE)
	$(CC) -std=gnu11 -Wall -Wextra -Werror $(CFLAGS) -Iinclude -o $@ $< $(BUILD)/libuffd.a $$(cat $(NATIVE))

probe: $(PROBE)

# libuffd-probe as this user and as uid 65534, its JSON, --require, bad
# arguments and its man page (tests/probe.sh).
test-probe: $(PROBE)
	BUILD=$(abspath $(BUILD)) bash tests/probe.sh

test-all: test-probe

# Huge pages for the hugetlb tests: reserved for the run when root (the
# old value is put back after), else those tests skip with the reason.
test:
	@bash tests/with-hugepages.sh $(MAKE) --no-print-directory test-all

test-all: test-rust test-c test-abi test-install test-unprivileged example

test-rust:
	timeout 1200 $(CARGO) test --locked -- --test-threads=2

test-c: lib
	BUILD=$(abspath $(BUILD)) CC="$(CC)" bash tests/c/run.sh

test-abi: lib
	BUILD=$(abspath $(BUILD)) bash tests/abi.sh

test-install: lib $(PROBE)
	BUILD=$(abspath $(BUILD)) MAKE="$(MAKE)" bash tests/install.sh

test-unprivileged: lib
	BUILD=$(abspath $(BUILD)) CC="$(CC)" bash tests/unprivileged.sh

# make install with a minimal PATH into a DESTDIR, then shared, fully
# static, Meson and CMake consumers built from that tree and run.
test-consumers: lib $(PROBE)
	BUILD=$(abspath $(BUILD)) MAKE="$(MAKE)" CC="$(CC)" bash tests/install-consumers.sh

test-all: test-consumers

# The ABI gate: abidiff (abigail-tools) of the built library and of the
# header's C view against abi/libuffd.abi and abi/libuffd-types.abi; fails
# on removed symbols and changed types, signatures or constants, passes on
# functions added under a new version node (docs/ABI.md). abi-baseline
# rewrites the baseline from the current build (commit it with a release).
check-abi: lib
	BUILD=$(abspath $(BUILD)) CC="$(CC)" bash tests/check-abi.sh

abi-baseline: lib
	BUILD=$(abspath $(BUILD)) CC="$(CC)" bash tests/check-abi.sh --baseline

# The minimum Rust version (Cargo.toml's rust-version) builds the library
# and every test with the locked dependencies (rustup toolchain install
# <version>; .ci/run does).
MSRV := $(shell sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
check-msrv:
	@if ! $(CARGO) +$(MSRV) --version >/dev/null 2>&1; then \
	  echo "SKIP    check-msrv: Rust $(MSRV) is not installed (rustup toolchain install $(MSRV) --profile minimal)"; \
	else \
	  echo "== cargo +$(MSRV) build --locked --all-targets (rust-version = $(MSRV))"; \
	  CARGO_TARGET_DIR=$(abspath target/msrv) $(CARGO) +$(MSRV) build --locked --all-targets -q && \
	  echo "check-msrv: Rust $(MSRV) builds the library and every test"; \
	fi

# cargo check for each Linux architecture (x86_64, aarch64, arm, ppc64le,
# ppc64, s390x, riscv64; mips64el with nightly): src/sys/arch.rs asserts
# its ioctl encoding and syscall number per target. Targets that are not
# installed are skipped, visibly (.ci/run installs them).
check-arch:
	CARGO="$(CARGO)" bash tests/cross-check.sh

# LICENSE-MIT, LICENSE-APACHE and an SPDX line in every source file, the
# header and the man pages.
test-licence:
	bash tests/licence.sh

test-all: test-licence

# Installing copies what `make` built and writes uffd.pc and the CMake
# files for the install paths (with sh and sed): no cargo, no compiler, so
# `sudo make install` works after `make` ran as a user.
BUILT := $(SHLIB) $(BUILD)/libuffd.a $(PC_LIBS) include/libuffd.h

install: install-lib install-cmake install-doc install-bin

install-bin:
	@[ -f $(PROBE) ] || { echo "make install: $(PROBE) is missing: run 'make' first" >&2; exit 1; }
	install -d $(DESTDIR)$(BINDIR)
	install -m 0755 $(PROBE) $(DESTDIR)$(BINDIR)/libuffd-probe

install-lib:
	@for f in $(BUILT); do [ -f $$f ] || { echo "make install: $$f is missing: run 'make' first" >&2; exit 1; }; done
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR)
	install -m 0755 $(SHLIB) $(DESTDIR)$(LIBDIR)/$(REALNAME)
	ln -sf $(REALNAME) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libuffd.so
	install -m 0644 $(BUILD)/libuffd.a $(DESTDIR)$(LIBDIR)/libuffd.a
	install -m 0644 include/libuffd.h $(DESTDIR)$(INCLUDEDIR)/libuffd.h
	sh pkgconfig/subst.sh pkgconfig/uffd.pc.in $(PKGCONFIGDIR) $(PREFIX) $(LIBDIR) $(INCLUDEDIR) \
	  $(VERSION) "$$(cat $(PC_LIBS))" $(RELOCATABLE) > $(DESTDIR)$(PKGCONFIGDIR)/uffd.pc
	chmod 0644 $(DESTDIR)$(PKGCONFIGDIR)/uffd.pc

install-cmake:
	@[ -f $(PC_LIBS) ] || { echo "make install: $(PC_LIBS) is missing: run 'make' first" >&2; exit 1; }
	install -d $(DESTDIR)$(CMAKEDIR)
	for f in uffdConfig uffdConfigVersion; do \
	  sh pkgconfig/subst.sh cmake/$$f.cmake.in $(CMAKEDIR) $(PREFIX) $(LIBDIR) $(INCLUDEDIR) \
	    $(VERSION) "$$(cat $(PC_LIBS))" $(RELOCATABLE) $(SIZEOF_VOID_P) > $(DESTDIR)$(CMAKEDIR)/$$f.cmake && \
	  chmod 0644 $(DESTDIR)$(CMAKEDIR)/$$f.cmake || exit 1; \
	done

# The licence texts (which a binary package must ship) and the changelog.
DOCS := LICENSE-MIT LICENSE-APACHE CHANGELOG.md

install-doc:
	install -d $(DESTDIR)$(DOCDIR)
	install -m 0644 $(DOCS) $(DESTDIR)$(DOCDIR)

# The debug info of libuffd.so, where gdb looks for it by default
# ($(LIBDIR)/.debug; distributions: DEBUGDIR=/usr/lib/debug$(LIBDIR)).
install-debug:
	@[ -f $(SO_DEBUG) ] || { echo "make install-debug: $(SO_DEBUG) is missing: run 'make' first" >&2; exit 1; }
	install -d $(DESTDIR)$(DEBUGDIR)
	install -m 0644 $(SO_DEBUG) $(DESTDIR)$(DEBUGDIR)/$(REALNAME).debug

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/$(REALNAME) $(DESTDIR)$(LIBDIR)/$(SONAME) \
	      $(DESTDIR)$(LIBDIR)/libuffd.so $(DESTDIR)$(LIBDIR)/libuffd.a \
	      $(DESTDIR)$(INCLUDEDIR)/libuffd.h $(DESTDIR)$(PKGCONFIGDIR)/uffd.pc \
	      $(DESTDIR)$(CMAKEDIR)/uffdConfig.cmake $(DESTDIR)$(CMAKEDIR)/uffdConfigVersion.cmake \
	      $(DESTDIR)$(DEBUGDIR)/$(REALNAME).debug $(addprefix $(DESTDIR)$(DOCDIR)/,$(DOCS)) \
	      $(DESTDIR)$(BINDIR)/libuffd-probe

clean:
	rm -rf $(BUILD)
	$(CARGO) clean

# Man pages: man/man3/<function>.3 and man/man7/libuffd.7, generated from
# include/libuffd.h by man/gen_man.py and committed.
#   make man          regenerate them (after `make header`)
#   make test-man     check they are fresh, complete and render without warnings
#   make install      also installs them into $(MANDIR) (MANDIR ?= $(PREFIX)/share/man)
MANDIR   ?= $(PREFIX)/share/man
PYTHON3  ?= python3
MANPAGES := $(sort $(wildcard man/man3/*.3)) man/man7/libuffd.7 man/man1/libuffd-probe.1

.PHONY: man test-man install-man uninstall-man

man:
	$(PYTHON3) man/gen_man.py

test-all: test-man

test-man:
	PYTHON3="$(PYTHON3)" CC="$(CC)" bash tests/man.sh

install: install-man

install-man:
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man3 $(DESTDIR)$(MANDIR)/man7
	install -m 0644 $(filter man/man1/%,$(MANPAGES)) $(DESTDIR)$(MANDIR)/man1
	install -m 0644 $(filter man/man3/%,$(MANPAGES)) $(DESTDIR)$(MANDIR)/man3
	install -m 0644 $(filter man/man7/%,$(MANPAGES)) $(DESTDIR)$(MANDIR)/man7

uninstall: uninstall-man

uninstall-man:
	rm -f $(patsubst man/%,$(DESTDIR)$(MANDIR)/%,$(MANPAGES))

# Fuzzing the C ABI (tests/fuzz/fuzz_capi.c, a libFuzzer target built with
# clang -fsanitize=fuzzer,address,undefined against libuffd.a). Installs
# nothing: without clang it fails and says so (.ci/run installs clang).
#   make fuzz-quick    one minute from the committed corpus (CI)
#   make fuzz          FUZZ_SECONDS (600) more; FUZZ_ARGS are passed on
#   make fuzz-replay   the committed corpus replayed by a plain-C build (make test)
# New inputs go to build/fuzz/work, crashes to build/fuzz/artifacts.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 600
FUZZ_DIR     := $(BUILD)/fuzz
FUZZ_FLAGS   := -std=gnu11 -Wall -Wextra -Werror -O1 -g -Iinclude

.PHONY: fuzz fuzz-quick fuzz-replay sanitize soak

# With a nightly toolchain the library itself is built with libFuzzer's
# coverage instrumentation (as cargo-fuzz does), plus debug assertions and
# overflow checks, so that the fuzzer is guided by the library's branches
# and an overflow panics (a panic caught at the boundary is
# -ENOTRECOVERABLE, which the target reports). Without nightly the plain
# build/libuffd.a is used and only the driver's coverage guides it.
FUZZ_RUSTFLAGS := -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=3 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions=on -Coverflow-checks=on

.PHONY: fuzz-lib
fuzz-lib: lib
	@mkdir -p $(FUZZ_DIR)
	@if $(CARGO) +nightly --version >/dev/null 2>&1; then \
	  host=$$(rustc -vV | sed -n 's/^host: //p'); \
	  echo "fuzz: libuffd.a with coverage instrumentation (cargo +nightly, target/fuzzcov)"; \
	  RUSTFLAGS="$(FUZZ_RUSTFLAGS)" CARGO_TARGET_DIR=$(abspath target/fuzzcov) \
	    $(CARGO) +nightly rustc --release --locked --lib --crate-type staticlib --target $$host -q && \
	  cmp -s target/fuzzcov/$$host/release/libuffd.a $(FUZZ_DIR)/libuffd-fuzz.a || \
	    cp target/fuzzcov/$$host/release/libuffd.a $(FUZZ_DIR)/libuffd-fuzz.a; \
	else \
	  echo "fuzz: no nightly toolchain: libuffd.a is not coverage-instrumented (only the driver guides libFuzzer)"; \
	  cmp -s $(BUILD)/libuffd.a $(FUZZ_DIR)/libuffd-fuzz.a || cp $(BUILD)/libuffd.a $(FUZZ_DIR)/libuffd-fuzz.a; \
	fi

$(FUZZ_DIR)/fuzz_capi: tests/fuzz/fuzz_capi.c include/libuffd.h fuzz-lib
	@command -v $(FUZZ_CC) >/dev/null 2>&1 || { echo "fuzz: $(FUZZ_CC) not found; install clang (apt-get install clang)"; exit 1; }
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	  -o $@ $< $(FUZZ_DIR)/libuffd-fuzz.a $$(cat $(NATIVE)) -lpthread

$(FUZZ_DIR)/replay: tests/fuzz/fuzz_capi.c include/libuffd.h $(SHLIB)
	@mkdir -p $(FUZZ_DIR)
	$(CC) $(FUZZ_FLAGS) -DFUZZ_STANDALONE -o $@ $< -L$(BUILD) -luffd -Wl,-rpath,$(abspath $(BUILD)) -lpthread

fuzz-quick: $(FUZZ_DIR)/fuzz_capi
	BUILD=$(abspath $(BUILD)) bash tests/fuzz/run.sh 60 $(FUZZ_ARGS)

fuzz: $(FUZZ_DIR)/fuzz_capi
	BUILD=$(abspath $(BUILD)) bash tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_ARGS)

fuzz-replay: $(FUZZ_DIR)/replay
	timeout 120 $(FUZZ_DIR)/replay tests/fuzz/corpus

test-all: fuzz-replay

# C tests under ASan+UBSan, Rust tests under ASan (tests/sanitize.sh).
sanitize: lib
	BUILD=$(abspath $(BUILD)) CC="$(CC)" CARGO="$(CARGO)" bash tests/sanitize.sh

# Soak (minutes, not in CI): tests/soak/soak.c against libuffd.so, four
# phases (fork bursts, late handles, fd sources with errors, stop/restart),
# each in a child process under a watchdog. SOAK_SECONDS in total (240).
SOAK_SECONDS ?= 240

$(BUILD)/soak/soak: tests/soak/soak.c include/libuffd.h $(SHLIB)
	@mkdir -p $(BUILD)/soak
	$(CC) -std=gnu11 -O2 -g -Wall -Wextra -Werror -Iinclude -o $@ $< -L$(BUILD) -luffd \
	  -Wl,-rpath,$(abspath $(BUILD)) -lpthread

soak: $(BUILD)/soak/soak
	$(BUILD)/soak/soak $(SOAK_SECONDS) $(SOAK_PHASE)
# Issue 14: 1000-fork storms with 4 faulting threads, STORM_RUNS times
# (minutes; not in CI). Prints each run's figures.
soak-fork:
	STORM_RUNS=$${STORM_RUNS:-20} cargo test --release --test monitor_fork_storm -- --nocapture
