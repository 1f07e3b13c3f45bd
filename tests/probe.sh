#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# tests/probe.sh: libuffd-probe (tools/libuffd-probe.c, make probe), run as
# this user (root in CI) and as an unprivileged one (uid/gid 65534 through
# setpriv --reuid=65534 --regid=65534 --clear-groups), part of make test.
#
#   BUILD=<absolute build dir> bash tests/probe.sh
#
# Checks the table and the JSON (parsed with python3) against what the
# machine says by other means (/proc/sys/vm/*, /proc/meminfo,
# /dev/userfaultfd's mode), the two outputs against each other, --require
# met (exit 0) and not met (exit 1), bad arguments (exit 2, a usage text on
# stderr), and the man page man/man1/libuffd-probe.1 (renders without
# warnings, documents every option).
# Prints "probe: N passed, N failed"; exits 1 on any failure.
set -u

cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
BUILD=${BUILD:-$ROOT/build}
PROBE=$BUILD/libuffd-probe
PYTHON3=${PYTHON3:-python3}
USER_ID=65534

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok      $*"; }
notok() { failed=$((failed + 1)); echo "NOT OK  $*"; }
check() { # check DESCRIPTION COMMAND...
  local what=$1
  shift
  if "$@" >"$work/check.out" 2>&1; then ok "$what"; else notok "$what"; sed 's/^/    | /' "$work/check.out"; fi
}
finish() {
  echo
  echo "probe: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
}

work=$(mktemp -d)
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT

if [ ! -x "$PROBE" ]; then
  notok "$PROBE is built (make probe)"
  finish
fi
cp "$PROBE" "$work/libuffd-probe"
chmod 755 "$work/libuffd-probe"

# run NAME [setpriv...] -- ARGS: output in $work/NAME.{out,err}, status in $work/NAME.rc
run() {
  local name=$1
  shift
  local pre=()
  while [ "$1" != "--" ]; do pre+=("$1"); shift; done
  shift
  timeout 60 "${pre[@]}" "$work/libuffd-probe" "$@" >"$work/$name.out" 2>"$work/$name.err"
  echo $? >"$work/$name.rc"
}
rc() { cat "$work/$1.rc"; }

# The JSON checks, in python3: facts against the machine.
# json_check NAME EXPECT_PRIVILEGED UID
json_check() {
  "$PYTHON3" - "$work/$1.out" "$2" "$3" <<'PY'
import json, os, sys
d = json.load(open(sys.argv[1]))
privileged = sys.argv[2] == "1"
fail = []
def want(cond, what):
    if not cond:
        fail.append(what)
for key in ("libuffd_version", "kernel", "creation", "kernel_faults", "features", "memory",
            "hugepages", "pagemap_scan", "procmap_query"):
    want(key in d, "key %s" % key)
want(d["uid"] == int(sys.argv[3]), "uid")
sysctl = int(open("/proc/sys/vm/unprivileged_userfaultfd").read())
want(d["kernel_faults"]["unprivileged_userfaultfd"] == sysctl, "vm.unprivileged_userfaultfd")
meminfo = dict(l.split(":", 1) for l in open("/proc/meminfo"))
want(d["hugepages"]["total"] == int(meminfo["HugePages_Total"]), "HugePages_Total")
want(d["hugepages"]["size_kib"] == int(meminfo["Hugepagesize"].split()[0]), "Hugepagesize")
c = {(x["path"], x["faults"]): x for x in d["creation"]}
want(len(c) == 4, "four creation paths")
want(c[("syscall", "user")]["ok"], "user-mode userfaultfd(2) works for anyone")
for x in d["creation"]:
    want(x["ok"] == (x["errno"] is None) == (x["error"] is None), "errno/error iff failed: %s" % x)
dev = "/dev/userfaultfd"
want(d["dev_userfaultfd_exists"] == os.path.exists(dev), "/dev/userfaultfd exists")
if privileged:
    want(c[("syscall", "kernel")]["ok"], "root: kernel-mode userfaultfd(2)")
    want(d["kernel_faults"]["allowed"] and d["kernel_faults"]["cap_sys_ptrace"], "root: kernel faults allowed")
    if os.path.exists(dev):
        want(c[("dev", "kernel")]["ok"], "root: /dev/userfaultfd")
else:
    want(d["kernel_faults"]["cap_sys_ptrace"] is False, "unprivileged: no CAP_SYS_PTRACE")
    if sysctl == 0:
        k = c[("syscall", "kernel")]
        want(not k["ok"] and k["errno"] == "EPERM" and "unprivileged_userfaultfd" in k["error"],
             "unprivileged, sysctl 0: kernel-mode userfaultfd(2) EPERM naming the sysctl: %s" % k)
    st = os.stat(dev) if os.path.exists(dev) else None
    if st and st.st_uid != d["uid"] and st.st_gid != d["uid"] and st.st_mode & 0o006 != 0o006:
        want(c[("dev", "user")]["errno"] == "EACCES", "unprivileged: /dev/userfaultfd EACCES")
    want(d["kernel_faults"]["allowed"] == any(c[(p, "kernel")]["ok"] for p in ("syscall", "dev")),
         "kernel_faults.allowed follows the kernel-mode paths")
f = d["features"]
want(f["ok"], "features probed")
mask = int(f["mask"], 16)
want(all(v == bool(mask & (1 << i)) for i, (k, v) in enumerate(list(f["bits"].items())[:17])),
     "feature bits follow the mask, in bit order")
want(len(f["bits"]) >= 17 and list(f["bits"])[16] == "MOVE" and list(f["bits"])[0] == "PAGEFAULT_FLAG_WP",
     "feature names from bit 0 (PAGEFAULT_FLAG_WP) to 16 (MOVE)")
m = d["memory"]
want(set(m) == {"anon", "shmem", "hugetlb", "file"}, "memory kinds")
want(m["anon"]["available"] and m["anon"]["modes"]["MISSING"]["ok"], "anon registers MISSING")
want("COPY" in m["anon"]["modes"]["MISSING"]["names"], "anon MISSING allows COPY")
want(not m["anon"]["modes"]["MINOR"]["ok"] and m["anon"]["modes"]["MINOR"]["errno"] == "EINVAL",
     "anon refuses MINOR with EINVAL")
if f["bits"].get("MINOR_SHMEM"):
    want("CONTINUE" in m["shmem"]["modes"]["MINOR"]["names"], "shmem MINOR allows CONTINUE")
free = int(meminfo["HugePages_Free"])
want(m["hugetlb"]["available"] == (free > 0), "hugetlb tested iff huge pages are free")
if m["hugetlb"]["available"]:
    want(m["hugetlb"]["page_size"] == 1024 * d["hugepages"]["size_kib"], "hugetlb page size")
    want("ZEROPAGE" not in m["hugetlb"]["modes"]["MISSING"]["names"], "hugetlb MISSING: no ZEROPAGE")
want(isinstance(d["pagemap_scan"], bool) and isinstance(d["procmap_query"], bool), "ioctl presence")
kver = tuple(int(x) for x in d["kernel"].split("-")[0].split(".")[:2])
want(d["pagemap_scan"] == (kver >= (6, 7)), "PAGEMAP_SCAN present iff Linux >= 6.7")
want(d["procmap_query"] == (kver >= (6, 11)), "PROCMAP_QUERY present iff Linux >= 6.11")
for x in fail:
    print("failed:", x)
sys.exit(1 if fail else 0)
PY
}

# The table against the JSON: every feature's yes/no, each path's verdict.
table_vs_json() {
  "$PYTHON3" - "$work/$1.out" "$work/$2.out" <<'PY'
import json, re, sys
table = open(sys.argv[1]).read()
d = json.load(open(sys.argv[2]))
fail = []
for name, v in d["features"]["bits"].items():
    if not re.search(r"^  %s +%s" % (re.escape(name), "yes" if v else "no"), table, re.M):
        fail.append("feature %s %s" % (name, v))
labels = {"syscall": "userfaultfd(2)", "dev": "/dev/userfaultfd"}
for x in d["creation"]:
    line = "  %s, %s-mode faults" % (labels[x["path"]], x["faults"])
    m = re.search(r"^%s +(.*)$" % re.escape(line), table, re.M)
    if not m or (m.group(1) == "ok") != x["ok"] or (not x["ok"] and not m.group(1).startswith(x["errno"] + ": ")):
        fail.append("creation %s" % x)
want = "allowed" if d["kernel_faults"]["allowed"] else "NOT allowed"
if not re.search(r"^Kernel-mode faults .*: %s$" % want, table, re.M):
    fail.append("kernel-mode faults line")
for kind, k in d["memory"].items():
    if not re.search(r"^  %s " % kind, table, re.M):
        fail.append("memory kind %s" % kind)
    for mode, r in k["modes"].items():
        if r["ok"] and not re.search(r"^    %s +%s$" % (mode, re.escape("|".join(r["names"]))), table, re.M):
            fail.append("%s %s ioctls" % (kind, mode))
h = d["hugepages"]
if "Huge pages: %d reserved, %d free" % (h["total"], h["free"]) not in table:
    fail.append("huge pages line")
for x in fail:
    print("table lacks:", x)
sys.exit(1 if fail else 0)
PY
}

# ------------------------------------------------------------ this user
privileged=0
[ "$(id -u)" -eq 0 ] && privileged=1
echo "== as uid $(id -u)"
run table --
check "libuffd-probe exits 0 and prints its sections" \
  bash -c "[ $(rc table) = 0 ] && grep -q '^Creating a userfaultfd$' $work/table.out && grep -q '^Features (libuffd_probe_features)$' $work/table.out && grep -q '^Ioctls allowed after registering' $work/table.out && grep -q '^PAGEMAP_SCAN' $work/table.out && [ ! -s $work/table.err ]"
run json -- --json
check "libuffd-probe --json exits 0, nothing on stderr" bash -c "[ $(rc json) = 0 ] && [ ! -s $work/json.err ]"
check "--json: facts match the machine (python3)" json_check json $privileged "$(id -u)"
check "the table says what the JSON says" table_vs_json table json

# --require: met, not met.
mask=$("$PYTHON3" -c 'import json,sys; print(json.load(open(sys.argv[1]))["features"]["mask"])' "$work/json.out")
if [ $((mask & 0x18000)) -eq $((0x18000)) ]; then
  run req_met -- --require MOVE,WP_ASYNC
  check "--require MOVE,WP_ASYNC: met, exit 0" \
    bash -c "[ $(rc req_met) = 0 ] && grep -q '^Requirement MOVE,WP_ASYNC: met$' $work/req_met.out"
  run req_met_json -- --json --require=libuffd_feature_move,wp_async
  check "--json --require=libuffd_feature_move,wp_async: met, exit 0, names as given" \
    "$PYTHON3" -c 'import json,sys; d=json.load(open(sys.argv[1])); r=d["require"]; \
assert open(sys.argv[2]).read().strip()=="0", "status"; \
assert r=={"names":["libuffd_feature_move","wp_async"],"met":True,"missing":[]}, r' \
    "$work/req_met_json.out" "$work/req_met_json.rc"
else
  echo "SKIP    --require MOVE,WP_ASYNC met: this kernel lacks one of them (mask $mask)"
fi
# A feature this kernel lacks, if any; else kernel faults as the unprivileged user below.
missing_feature=$("$PYTHON3" -c 'import json,sys; b=json.load(open(sys.argv[1]))["features"]["bits"]; print(next((k for k,v in b.items() if not v), ""))' "$work/json.out")
if [ -n "$missing_feature" ]; then
  run req_unmet -- --require "MOVE,$missing_feature"
  check "--require MOVE,$missing_feature: not met, exit 1" \
    bash -c "[ $(rc req_unmet) = 1 ] && grep -q 'NOT met, missing $missing_feature\$' $work/req_unmet.out"
fi

# Usage errors: exit 2, a message and the usage on stderr, nothing probed.
for args in "--bogus" "--require" "--require NO_SUCH_FEATURE" "--require ," "--require=" "-x --json"; do
  # shellcheck disable=SC2086 # the arguments are words
  run bad -- $args
  check "bad arguments '$args': exit 2, usage on stderr, nothing on stdout" \
    bash -c "[ $(rc bad) = 2 ] && grep -q '^usage: libuffd-probe' $work/bad.err && grep -q '^libuffd-probe: ' $work/bad.err && [ ! -s $work/bad.out ]"
done
run help -- --help
check "--help: usage on stdout, exit 0" bash -c "[ $(rc help) = 0 ] && grep -q '^usage: libuffd-probe' $work/help.out"

# ------------------------------------------------------------ unprivileged
if [ "$privileged" -ne 1 ]; then
  echo "SKIP    the unprivileged run: not root (it switches to uid $USER_ID with setpriv)"
elif ! command -v setpriv >/dev/null 2>&1; then
  notok "setpriv is installed (util-linux)"
else
  echo "== as uid $USER_ID (setpriv --reuid=$USER_ID --regid=$USER_ID --clear-groups)"
  U=(setpriv --reuid=$USER_ID --regid=$USER_ID --clear-groups)
  run u_table "${U[@]}" --
  run u_json "${U[@]}" -- --json
  check "unprivileged: table and --json exit 0" bash -c "[ $(rc u_table) = 0 ] && [ $(rc u_json) = 0 ]"
  check "unprivileged --json: facts match the machine (python3)" json_check u_json 0 $USER_ID
  check "unprivileged: the table says what the JSON says" table_vs_json u_table u_json
  allowed=$("$PYTHON3" -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["kernel_faults"]["allowed"]))' "$work/u_json.out")
  run u_req "${U[@]}" -- --require KERNEL_FAULTS
  if [ "$allowed" = 0 ]; then
    check "unprivileged --require KERNEL_FAULTS: not met, exit 1" \
      bash -c "[ $(rc u_req) = 1 ] && grep -q '^Requirement KERNEL_FAULTS: NOT met, missing KERNEL_FAULTS$' $work/u_req.out"
    run u_req_json "${U[@]}" -- --json --require MOVE,KERNEL_FAULTS
    check "unprivileged --json --require MOVE,KERNEL_FAULTS: met false, missing KERNEL_FAULTS, exit 1" \
      "$PYTHON3" -c 'import json,sys; r=json.load(open(sys.argv[1]))["require"]; \
assert open(sys.argv[2]).read().strip()=="1", "status"; \
assert r=={"names":["MOVE","KERNEL_FAULTS"],"met":False,"missing":["KERNEL_FAULTS"]}, r' \
      "$work/u_req_json.out" "$work/u_req_json.rc"
  else
    check "unprivileged --require KERNEL_FAULTS: met here (vm.unprivileged_userfaultfd=1), exit 0" \
      bash -c "[ $(rc u_req) = 0 ]"
  fi
  run u_user "${U[@]}" -- --require MOVE
  check "unprivileged --require MOVE: met (user-mode faults need no privilege), exit 0" bash -c "[ $(rc u_user) = 0 ]"
fi

# ------------------------------------------------------------ man page
page=man/man1/libuffd-probe.1
if [ ! -f "$page" ]; then
  notok "$page exists"
else
  version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
  check "$page's .TH names libuffd-$version (Cargo.toml)" grep -q -x ".TH libuffd-probe 1 \"\" \"libuffd-$version\" \"libuffd Manual\"" "$page"
  check "$page starts with the SPDX line" bash -c "head -n 1 $page | grep -q 'SPDX-License-Identifier: MIT OR Apache-2.0'"
  check "$page documents --json, --require, KERNEL_FAULTS, --help and the exit statuses" \
    bash -c "grep -q 'json' $page && grep -q 'require' $page && grep -q 'KERNEL_FAULTS' $page && grep -q 'help' $page && grep -q '^.SH \"EXIT STATUS\"' $page && grep -q '^.SH EXAMPLES' $page"
  if command -v groff >/dev/null 2>&1; then
    check "$page renders with groff -man -ww without warnings" \
      bash -c "LC_ALL=C.UTF-8 groff -man -Tutf8 -ww $page >/dev/null 2>$work/groff.err && [ ! -s $work/groff.err ] || { cat $work/groff.err; false; }"
  else
    echo "SKIP    rendering $page: groff not installed"
  fi
fi

finish
