#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""man/gen_man.py: the libuffd man pages, generated from include/libuffd.h.

    python3 man/gen_man.py [--header include/libuffd.h] [--cargo Cargo.toml] [--out man]

Writes <out>/man3/<function>.3 for every libuffd_* function the header
declares and <out>/man7/libuffd.7 (conventions and the function list), and
removes any other *.3 file from <out>/man3, so that the pages follow the
header (make man; tests/man.sh checks they are fresh). The output depends
only on the header, on the errno texts of src/uffd/error.rs (errno_table!,
for errors the header lists without a reason) and on the version in
Cargo.toml: no date, no host.

Each function's doc comment is split into its paragraphs: the summary
(first sentence) goes to NAME; "Returns:" to RETURN VALUE, with the
-EXXX list parsed into ERRORS; "Thread safety:" to THREAD SAFETY;
"Ownership:" to NOTES; "Pointers:" to CALLER OBLIGATIONS (one rule per
clause); "Example:" (with the indented code paragraphs right after it)
to EXAMPLES; the rest is the DESCRIPTION. A paragraph indented by four
spaces is code, shown as it is. Structs and unions of the
prototype (followed through their members) go to STRUCTURES, the
LIBUFFD_* constants the text refers to go to CONSTANTS.

Python 3 standard library only.
"""

import argparse
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Areas of the overview page and of SEE ALSO, in order; the first pattern
# a function matches wins, the last catches functions added later.
AREAS = [
    ("Handles", r"libuffd_open|libuffd_handle_\w+"),
    ("Kernel features and page sizes", r"libuffd_probe_features|libuffd_feature_supported|libuffd_feature_name"
                                       r"|libuffd_page_size"),
    ("Registration", r"libuffd_register|libuffd_unregister"),
    ("Events", r"libuffd_read_events|libuffd_event_\w+"),
    ("Resolving faults", r"libuffd_wake|libuffd_copy|libuffd_zeropage|libuffd_writeprotect|libuffd_continue"
                         r"|libuffd_poison|libuffd_move"),
    ("Hand-off to a handler process", r"libuffd_send|libuffd_recv|libuffd_monitor_add_received"
                                      r"|libuffd_monitor_watch_peer|libuffd_page_server_\w+"),
    ("The fault-handling monitor", r"libuffd_monitor_\w+"),
    ("Errors", r"libuffd_strerror|libuffd_last_error"),
    ("Version", r"libuffd_version\w*"),
    ("Other functions", r"libuffd_\w+"),
]

# Used for an errno the header lists without saying why: the text
# libuffd_strerror() gives, read from the one table that declares it
# (errno_table! in src/uffd/error.rs), so the two cannot drift apart.
def load_errno_text(path=os.path.join(ROOT, "src", "uffd", "error.rs")):
    text = open(path, encoding="utf-8").read()
    body = text[text.index("errno_table! {"):]
    body = body[:body.index("\n}")]
    table = {}
    for name, msg in re.findall(r'^\s*(E[A-Z0-9]+) => c"([^"]*)",', body, re.M):
        # A note that names one function is not for every page.
        msg = re.sub(r" \([^)]*libuffd_\w+[^)]*\)", "", msg)
        table[name] = msg[0].upper() + msg[1:] + "."
    if len(table) < 20:
        raise SystemExit(f"gen_man.py: read only {len(table)} errno texts from {path}")
    return table


ERRNO_TEXT = load_errno_text()

LABELS = ("Returns", "Thread safety", "Ownership", "Pointers", "Example")


# ----------------------------------------------------------------- parsing

class Define:
    def __init__(self, name, args, value, doc):
        self.name, self.args, self.value, self.doc = name, args, value, doc


class Field:
    def __init__(self, decl, name, doc):
        self.decl, self.name, self.doc = decl, name, doc


class Record:
    """A struct or union; opaque when fields is None."""

    def __init__(self, kind, name, doc, fields, decl_lines):
        self.kind, self.name, self.doc = kind, name, doc
        self.fields, self.decl_lines = fields, decl_lines


class Param:
    def __init__(self, decl, prefix, name, suffix):
        self.decl, self.prefix, self.name, self.suffix = decl, prefix, name, suffix


class Func:
    def __init__(self, ret, name, params, doc):
        self.ret, self.name, self.params, self.doc = ret, name, params, doc


class Header:
    def __init__(self):
        self.top = []
        self.defines = []
        self.records = {}
        self.funcs = []


def read_comment(lines, i):
    """The text of the comment starting at lines[i]; returns (lines, next i)."""
    first = lines[i].strip()
    if first.endswith("*/"):
        body = first[3 if first.startswith("/**") else 2:-2].strip()
        return ([body] if body else []), i + 1
    out = []
    rest = first[3 if first.startswith("/**") else 2:].strip()
    if rest:
        out.append(rest)
    i += 1
    while i < len(lines):
        s = lines[i].strip()
        if s.endswith("*/"):
            s = s[:-2].rstrip()
            if s not in ("", "*"):
                out.append(re.sub(r"^\* ?", "", s))
            i += 1
            break
        out.append(re.sub(r"^\* ?", "", s) if s.startswith("*") else s)
        i += 1
    while out and not out[0].strip():
        out.pop(0)
    while out and not out[-1].strip():
        out.pop()
    return [line.rstrip() for line in out], i


def split_top(s, sep=","):
    """Split s at sep where it is outside parentheses, brackets and backticks."""
    parts, depth, code, cur = [], 0, False, []
    for ch in s:
        if ch == "`":
            code = not code
        elif not code and ch in "([":
            depth += 1
        elif not code and ch in ")]":
            depth -= 1
        if ch == sep and depth == 0 and not code:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def decl_name(decl):
    """(prefix, name, suffix) of a declaration such as `const char *s`,
    `uint64_t raw[3]` or `void (*f)(void*)`."""
    m = re.search(r"\(\s*\*\s*(\w+)\s*\)", decl)
    if m:
        return decl[:m.start(1)], m.group(1), decl[m.end(1):]
    m = re.match(r"^(.*?)(\w+)((?:\s*\[[^\]]*\])*)$", decl.strip())
    if not m:
        return decl, "", ""
    return m.group(1), m.group(2), m.group(3)


def parse_fields(body_lines):
    fields, doc, i = [], [], 0
    while i < len(body_lines):
        s = body_lines[i].strip()
        if s.startswith("/*"):
            doc, i = read_comment(body_lines, i)
            continue
        if s:
            decl = s
            while not decl.endswith(";") and i + 1 < len(body_lines):
                i += 1
                decl += " " + body_lines[i].strip()
            decl = decl[:-1].strip()
            _, name, _ = decl_name(decl)
            fields.append(Field(decl, name, doc))
            doc = []
        i += 1
    return fields


def parse_header(text):
    h = Header()
    lines = text.split("\n")
    i, doc = 0, []
    while i < len(lines):
        s = lines[i].strip()
        if s.startswith("/**"):
            doc, i = read_comment(lines, i)
            continue
        if s.startswith("/*"):
            comment, i = read_comment(lines, i)
            if not h.top and not h.funcs and not h.defines:
                h.top = comment
            continue
        if s.startswith("#define"):
            full = s
            while full.endswith("\\") and i + 1 < len(lines):
                i += 1
                full = full[:-1].rstrip() + " " + lines[i].strip()
            m = re.match(r"#define\s+(\w+)(\([^)]*\))?\s*(.*)$", full)
            if m and m.group(1).startswith("LIBUFFD_") and m.group(1) != "LIBUFFD_H":
                h.defines.append(Define(m.group(1), m.group(2), m.group(3).strip(), doc))
            doc = []
        elif re.match(r"typedef\s+(struct|union)\s+\w+", s):
            m = re.match(r"typedef\s+(struct|union)\s+(\w+)", s)
            kind, name = m.group(1), m.group(2)
            if "{" not in s:
                h.records[name] = Record(kind, name, doc, None, [s])
            else:
                start = i
                while not lines[i].startswith("}"):
                    i += 1
                body = lines[start + 1:i]
                decl = [lines[start]]
                decl += [ln for ln in body if ln.strip() and not re.match(r"\s*(/\*|\*)", ln)]
                decl.append(lines[i])
                h.records[name] = Record(kind, name, doc, parse_fields(body), decl)
            doc = []
        elif re.match(r"[A-Za-z_][\w\s\*]*\blibuffd_\w+\s*\(", s) and not s.startswith("typedef"):
            full = s
            while not full.endswith(";") and i + 1 < len(lines):
                i += 1
                full += " " + lines[i].strip()
            m = re.match(r"^(.*?)\b(libuffd_\w+)\s*\((.*)\)\s*;$", full)
            if m:
                params = []
                if m.group(3).strip() != "void":
                    for p in split_top(m.group(3)):
                        p = p.strip()
                        prefix, name, suffix = decl_name(p)
                        params.append(Param(p, prefix, name, suffix))
                h.funcs.append(Func(m.group(1).strip(), m.group(2), params, doc))
            doc = []
        elif s and not s.startswith("#"):
            doc = []
        i += 1
    return h


def paragraphs(doc):
    """Split doc lines into (label, lines) paragraphs. label is one of
    LABELS for a labelled paragraph (its label removed), the heading's
    text under a "# " heading, else None."""
    paras, cur, heading = [], [], None
    for line in doc + [""]:
        if line.startswith("# "):
            if cur:
                paras.append((heading, cur))
            cur, heading = [], line[2:].strip()
            continue
        if not line.strip():
            if cur:
                paras.append((heading, cur))
            cur = []
            continue
        cur.append(line)
    out = []
    for heading, lines in paras:
        label = heading
        if label is None:
            for lab in LABELS:
                if lines[0].startswith(lab + ":"):
                    label = lab
                    lines = [lines[0][len(lab) + 1:].lstrip()] + lines[1:]
                    if not lines[0]:
                        lines = lines[1:]
                    break
        # The code paragraphs right after "Example:" belong to the example.
        if label is None and out and out[-1][0] == "Example" and is_code(lines):
            label = "Example"
        out.append((label, lines))
    return out


def is_code(lines):
    return bool(lines) and all(line.startswith("    ") for line in lines)


def joined(lines):
    return " ".join(line.strip() for line in lines)


# -------------------------------------------------------------- roff text

def esc_code(s):
    """Literal text (code): backslashes and every hyphen escaped."""
    return s.replace("\\", "\\e").replace("-", "\\-")


def esc_prose(s):
    """Running text: a hyphen between two letters stays a hyphen; every
    other one (-EINVAL, -1, ->, --libs) is a minus sign."""
    s = s.replace("\\", "\\e")
    out = []
    for k, ch in enumerate(s):
        if ch == "-":
            between = 0 < k < len(s) - 1 and s[k - 1].isalpha() and s[k + 1].isalpha()
            out.append("-" if between else "\\-")
        else:
            out.append(ch)
    return "".join(out)


NAME_RE = re.compile(r"(libuffd_\w+\(\)|LIBUFFD_\w+\*?|\blibuffd_\w+)")


def inline(text, italic=()):
    """Doc text to roff: `code` in bold (italic for the names in `italic`:
    parameters or fields), libuffd_* and LIBUFFD_* names in bold."""
    out = []
    for part in re.split(r"(`[^`]*`)", text):
        if len(part) >= 2 and part[0] == "`" and part[-1] == "`":
            code = part[1:-1]
            m = re.match(r"^\**(\w+)", code)
            font = "I" if m and m.group(1) in italic else "B"
            out.append("\\f" + font + esc_code(code) + "\\fR")
            continue
        for k, piece in enumerate(NAME_RE.split(part)):
            if k % 2 == 0:
                out.append(params_italic(piece, italic))
            elif piece.endswith("()"):
                out.append("\\fB" + esc_code(piece[:-2]) + "\\fR()")
            else:
                out.append("\\fB" + esc_code(piece) + "\\fR")
    return "".join(out)


# Parameter and field names that are also everyday words: set in italics
# only as p->field, never alone in running text.
COMMON_WORDS = {"out", "start", "end", "from", "to", "data", "max", "mode", "source", "flags",
                "events", "features", "page", "id", "size", "kind", "address", "reserved",
                "raw", "fork", "range", "remap", "fault", "buffer", "u", "batch", "workers"}


def params_italic(text, italic):
    """Running text with the names of the page's parameters (or fields) in
    italics: the doc comments name them plainly, as C comments do."""
    names = sorted((n for n in italic if n), key=len, reverse=True)
    if not names:
        return esc_prose(text)
    pat = re.compile(r"(?<![\w>.-])(%s)((?:->\w+)+)?(?![\w(])" % "|".join(map(re.escape, names)))
    out, last = [], 0
    for m in pat.finditer(text):
        if m.group(1) in COMMON_WORDS and not m.group(2):
            continue
        out.append(esc_prose(text[last:m.start()]))
        out.append("\\fI" + esc_code(m.group(0)) + "\\fR")
        last = m.end()
    out.append(esc_prose(text[last:]))
    return "".join(out)


def plain(text):
    """Doc text to roff without fonts (NAME lines, macro arguments)."""
    return esc_prose(text.replace("`", ""))


def fix_lines(text):
    """Protect lines that would start with a control character."""
    out = []
    for line in text.split("\n"):
        line = line.strip()
        if line.startswith((".", "'")):
            line = "\\&" + line
        if line:
            out.append(line)
    return out


def code_roff(lines):
    """An example (indented by four spaces), shown as it is."""
    body = [line[4:] for line in lines]
    out = [".in +4n", ".EX"]
    for line in body:
        line = esc_code(line)
        out.append("\\&" + line if line.startswith((".", "'")) else line)
    return out + [".EE", ".in"]


def para_roff(lines, italic=()):
    """One doc paragraph as roff lines (a "- " list becomes bullets, an
    indented block an example)."""
    if lines and all(line.startswith("    ") for line in lines):
        return code_roff(lines)
    if not any(line.startswith("- ") for line in lines):
        return fix_lines(inline("\n".join(lines), italic))
    out, items, lead = [], [], []
    for line in lines:
        if line.startswith("- "):
            items.append([line[2:]])
        elif items:
            items[-1].append(line)
        else:
            lead.append(line)
    if lead:
        out += fix_lines(inline("\n".join(lead), italic))
    for item in items:
        out += [".IP \\(bu 2"] + fix_lines(inline("\n".join(item), italic))
    return out


def paras_roff(paras, italic=()):
    out = []
    for k, lines in enumerate(paras):
        if k:
            out.append(".PP")
        out += para_roff(lines, italic)
    return out


def cap(s):
    return s[:1].upper() + s[1:] if s else s


def decap(s):
    word = s.split(" ", 1)[0]
    if re.match(r"^[A-Z][a-z]*(-[a-z]+)*$", word):
        return s[0].lower() + s[1:]
    return s


def sentence(s):
    s = s.strip()
    return s if s.endswith((".", "!", "?")) else s + "."


# -------------------------------------------------------------- summaries

def first_sentence(text):
    depth, code = 0, False
    for k, ch in enumerate(text):
        if ch == "`":
            code = not code
        elif not code and ch in "([":
            depth += 1
        elif not code and ch in ")]":
            depth -= 1
        elif ch == "." and not code and depth == 0 and (k + 1 == len(text) or text[k + 1] == " "):
            if not re.search(r"\b(e\.g|i\.e|etc)$", text[:k]):
                return text[:k + 1]
    return text


def summary(func_or_doc):
    """The NAME line text: the first sentence, cut at a top-level colon,
    semicolon or parenthesis when long; no trailing period."""
    doc = func_or_doc.doc if isinstance(func_or_doc, Func) else func_or_doc
    paras = paragraphs(doc)
    if not paras:
        return ""
    s = first_sentence(joined(paras[0][1])).rstrip(".")
    if len(s) > 70:
        depth, code = 0, False
        for k, ch in enumerate(s):
            if ch == "`":
                code = not code
            elif not code and ch == "(" and depth == 0 and k > 20 and s[k - 1] == " ":
                s = s[:k - 1]
                break
            elif not code and ch in "([":
                depth += 1
            elif not code and ch in ")]":
                depth -= 1
            elif not code and depth == 0 and ch in ":;" and k > 20:
                s = s[:k]
                break
    if len(s) > 70:
        parts = split_top(s)
        if len(parts) > 1 and len(parts[0]) > 20:
            s = parts[0]
    return decap(s.strip().rstrip(",")).replace("`", "")


# ------------------------------------------------------------------ errors

ERRNO_RE = re.compile(r"-(E[A-Z0-9]+)\b")
FUNC_REF_RE = re.compile(r"\b(libuffd_\w+)\(\)")


class Errors:
    def __init__(self):
        self.head = None      # text before the first errno, or None
        self.items = []       # [names, explanation or None, refs]
        self.extras = []      # phrases that are not an errno
        self.refs = []        # functions the Returns paragraph names


def top_errno_pos(text):
    depth, code = 0, False
    for k, ch in enumerate(text):
        if ch == "`":
            code = not code
        elif not code and ch in "([":
            depth += 1
        elif not code and ch in ")]":
            depth -= 1
        elif ch == "-" and depth == 0 and not code and ERRNO_RE.match(text, k):
            if k == 0 or not text[k - 1].isalnum():
                return k
    return -1


def closing(s, k):
    """The index of the parenthesis closing the one at s[k], or -1."""
    depth = 0
    for j in range(k, len(s)):
        if s[j] == "(":
            depth += 1
        elif s[j] == ")":
            depth -= 1
            if depth == 0:
                return j
    return -1


def parse_errors(returns):
    e = Errors()
    e.refs = FUNC_REF_RE.findall(returns)
    pos = top_errno_pos(returns)
    if pos < 0:
        e.head = returns
        return e
    e.head = returns[:pos]
    tail = returns[pos:].strip().rstrip(".")
    for item in split_top(tail):
        item = re.sub(r"^(or|and)\s+", "", item.strip())
        if not item:
            continue
        m = re.match(r"^(-E[A-Z0-9]+(?:\s*/\s*-E[A-Z0-9]+)*)\b\s*(.*)$", item, re.S)
        if m:
            names = ERRNO_RE.findall(m.group(1))
            rest = m.group(2).strip()
            if not rest.strip(". "):
                expl = None
            elif rest.startswith("(") and closing(rest, 0) == len(rest) - 1:
                expl = rest[1:-1]
            else:
                expl = re.sub(r"^(for|if)\s+", "", rest)
            e.items.append([names, expl, e.refs])
        else:
            e.extras.append(item)
            for name in ERRNO_RE.findall(item):
                e.items.append([[name], None, FUNC_REF_RE.findall(item) + e.refs])
    return e


def resolve_errors(funcs_errors, params):
    """Fill in explanations from the functions a Returns paragraph refers
    to ("as libuffd_copy()", "the error libuffd_open() would give"), then from
    ERRNO_TEXT. An explanation naming a parameter that the function
    referring to it does not have ("at dst") is not borrowed."""

    def lookup(fname, errno, seen, origin):
        e = funcs_errors.get(fname)
        if e is None or fname in seen:
            return None
        own = params.get(origin, set())
        for names, expl, refs in e.items:
            if errno in names:
                if expl and not expl.startswith("also"):
                    foreign = params.get(fname, set()) - own
                    if any(re.search(r"\b%s\b" % re.escape(w), expl) for w in foreign):
                        return None
                    return expl
                base = None
                for r in refs:
                    base = lookup(r, errno, seen | {fname}, origin)
                    if base:
                        break
                if base and expl:
                    return base + "; " + expl
                return base or expl
        return None

    resolved = {}
    for fname, e in funcs_errors.items():
        table = {}
        order = []
        for names, expl, refs in e.items:
            key = tuple(names)
            if expl is None or expl.startswith("also"):
                base = None
                for r in refs:
                    if r != fname:
                        base = lookup(r, names[0], {fname}, fname)
                        if base:
                            break
                if base:
                    expl = base + ("; " + expl if expl else "")
            if key in table:
                if expl and table[key] and expl not in table[key]:
                    table[key] = table[key] + "; " + expl
                elif expl:
                    table[key] = expl
                continue
            table[key] = expl
            order.append(key)
        items = []
        for key in sorted(order):
            expl = table[key]
            if expl:
                expl = sentence(expl)
            else:
                expl = ERRNO_TEXT.get(key[0], "See RETURN VALUE.")
            items.append((list(key), expl))
        resolved[fname] = items
    return resolved


# ------------------------------------------------------------------ pages

class Page:
    def __init__(self, name, section, version):
        self.lines = [
            '.\\" SPDX-License-Identifier: MIT OR Apache-2.0',
            '.\\" Generated by man/gen_man.py from include/libuffd.h: do not edit.',
            '.\\" Run `make man` after changing the doc comments in src/ffi.',
            '.TH %s %d "" "libuffd-%s" "libuffd Manual"' % (name, section, version),
        ]

    def sh(self, title):
        self.lines.append('.SH "%s"' % title if " " in title else ".SH " + title)

    def ss(self, title):
        self.lines.append('.SS "%s"' % title.replace('"', ""))

    def add(self, lines):
        self.lines += lines

    def text(self):
        return "\n".join(self.lines) + "\n"


def prototype(f):
    """SYNOPSIS lines: .BI with the parameter names in italics, one
    parameter per line after the first, aligned under the parenthesis."""
    lead = f.ret + ("" if f.ret.endswith("*") else " ") + f.name + "("
    if not f.params:
        return ['.B "%s"' % (lead + "void);")]
    out = []
    pad = " " * len(lead)
    for k, p in enumerate(f.params):
        end = ");" if k == len(f.params) - 1 else ","
        pre = (lead if k == 0 else pad) + p.prefix
        if p.name:
            out.append('.BI "%s" %s "%s"' % (esc_code(pre), p.name, esc_code(p.suffix + end)))
        else:
            out.append('.B "%s"' % esc_code(pre + p.suffix + end))
    return out


def wrap_decl(line, width=72):
    """Break a long declaration line (a function-pointer member) after its
    top-level commas."""
    if len(line) <= width or "(" not in line:
        return [line]
    indent = len(line) - len(line.lstrip())
    m = re.search(r"\)\s*\(", line)
    if not m:
        return [line]
    open_at = m.end()
    args = split_top(line[open_at:-2]) if line.endswith(");") else None
    if not args or len(args) < 2:
        return [line]
    out = [line[:open_at] + args[0].strip() + ","]
    pad = " " * max(open_at, indent + 4)
    for k, a in enumerate(args[1:]):
        out.append(pad + a.strip() + (");" if k == len(args) - 2 else ","))
    return out


def records_of(f, h):
    """The struct/union types a prototype uses, then the ones their members
    use, in order of first use."""
    found = []

    def visit(text):
        for name in re.findall(r"\b(?:struct|union)\s+(libuffd_\w+)", text):
            if name in h.records and name not in found:
                found.append(name)
                r = h.records[name]
                for fld in r.fields or []:
                    visit(fld.decl)

    for p in f.params:
        visit(p.decl)
    visit(f.ret)
    return [h.records[n] for n in found]


def record_roff(r):
    out = []
    paras = [lines for _, lines in paragraphs(r.doc)]
    names = {fld.name for fld in r.fields or []}
    if r.fields is None:
        out += paras_roff(paras)
        out.append(".PP")
        out += fix_lines("An opaque type: declared, never defined in the header; "
                         "use it only through pointers.")
        return out
    out += paras_roff(paras, names)
    out += [".PP", ".in +4n", ".EX"]
    for line in r.decl_lines:
        for piece in wrap_decl(line.rstrip()):
            piece = esc_code(piece)
            out.append("\\&" + piece if piece.startswith((".", "'")) else piece)
    out += [".EE", ".in"]
    for fld in r.fields:
        out += [".TP", ".I " + fld.name]
        fparas = [lines for _, lines in paragraphs(fld.doc)] or [["(undocumented)"]]
        out += paras_roff(fparas, names)
    return out


def constants_for(f, text, h):
    """The LIBUFFD_* macros a page refers to: named in its text (also as
    LIBUFFD_X_* or as a _SUFFIX / /SUFFIX after a full name), or whose own
    doc names the function."""
    by_name = {d.name: d for d in h.defines}
    want = set()
    for m in re.finditer(r"LIBUFFD_[A-Z0-9_]*[A-Z0-9]", text):
        name = m.group(0)
        after = text[m.end():]
        if after.startswith("_*") or after.startswith("*"):
            prefix = name + "_"
            want |= {d for d in by_name if d.startswith(prefix)}
            continue
        if name in by_name:
            want.add(name)
        stem = name.rsplit("_", 1)[0]
        for frag in re.findall(r"^(?:/[A-Z0-9]+)+", after):
            for word in frag.split("/")[1:]:
                if stem + "_" + word in by_name:
                    want.add(stem + "_" + word)
        # "LIBUFFD_REGISTER_MISSING, _WP and _MINOR"
        follow = re.match(r"^((?:(?:,\s*|\s+and\s+|\s+or\s+|,\s+or\s+)_[A-Z0-9]+)+)", after)
        if follow:
            for word in re.findall(r"_([A-Z0-9]+)", follow.group(1)):
                if stem + "_" + word in by_name:
                    want.add(stem + "_" + word)
    for d in h.defines:
        if re.search(r"\b%s\(\)" % re.escape(f.name), " ".join(d.doc)):
            want.add(d.name)
    return [d for d in h.defines if d.name in want]


def constant_roff(d):
    if d.args:
        args = ", ".join("\\fI%s\\fR" % esc_code(a.strip()) if re.match(r"^\w+$", a.strip())
                         else esc_code(a.strip()) for a in d.args[1:-1].split(","))
        tag = "\\fB%s\\fR(%s)" % (esc_code(d.name), args)
    elif re.match(r"^-?\d+$", d.value):
        tag = "\\fB%s\\fR (%s)" % (esc_code(d.name), esc_code(d.value))
    else:
        tag = "\\fB%s\\fR" % esc_code(d.name)
    paras = [lines for _, lines in paragraphs(d.doc)] or [["(undocumented)"]]
    return [".TP", tag] + paras_roff(paras)


def obligations_roff(lines, italic):
    """"Pointers:" (what the caller's pointers must be) as rules: one
    bullet per clause, "p must be ...; q NULL or ..." becoming "p must be
    ..." and "q must be NULL or ...", the parameter in italics."""
    text = joined(lines)
    clauses = []
    for part in split_top(text, ";"):
        for s in re.split(r"(?<=\.)\s+(?=[`A-Za-z])", part.strip()):
            s = s.strip().rstrip(".;").strip()
            if s:
                clauses.append(s)
    rules = []
    for c in clauses:
        # A clause about a parameter (or a field of one: opts->buffer) names
        # it first: set it as code, so that the rules below apply.
        m = re.match(r"^(\w+)((?:->\w+)*)\b", c)
        if m and m.group(1) in italic:
            c = "`%s`%s" % (m.group(0), c[m.end():])
        c = re.sub(r"^(`[^`]+`) must be ", r"\1 must be ", c)
        c = re.sub(r"^(`[^`]+`) is not ", r"\1 must not be ", c)
        c = re.sub(r"^(`[^`]+`) (is|are) ", r"\1 must be ", c)
        c = re.sub(r"^(`[^`]+`) has ", r"\1 must have ", c)
        c = re.sub(r"^(`[^`]+`) (NULL|readable|writable|open|valid|live)\b", r"\1 must be \2", c)
        c = re.sub(r"\band (`[^`]+`) (NULL|readable|writable|open|valid|live)\b", r"and \1 \2", c)
        c = re.sub(r"^Pointers are ", "Pointers must be ", c)
        if " must be " in c:
            c = re.sub(r" or has ", " or have ", c)
        rules.append(sentence(cap(c) if not c.startswith("`") else c))
    intro = ("libuffd checks pointer arguments for NULL, but it cannot tell whether a "
             "non-NULL pointer is valid. Breaking one of these rules is undefined behaviour:")
    out = fix_lines(intro)
    for r in rules:
        out += [".IP \\(bu 2"] + fix_lines(inline(r, italic))
    if re.search(r"\blive\b", text):
        nouns = sorted({w for w in re.findall(r"\blive (\w+)", text) if not w.endswith("s")})
        out += [".PP"] + fix_lines("A live %s is one that was created and has not been "
                                   "freed yet." % " or ".join(nouns or ["object"]))
    return out


def area_of(name):
    for title, pattern in AREAS:
        if re.fullmatch(pattern, name):
            return title
    return AREAS[-1][0]


def see_also(entries):
    """Sorted by section, then name, one .BR per entry."""
    entries = sorted(set(entries), key=lambda e: (e[1], e[0]))
    out = []
    for k, (name, sec) in enumerate(entries):
        comma = "," if k < len(entries) - 1 else ""
        out.append(".BR %s (%s)%s" % (esc_code(name), sec, comma))
    return out


def function_page(f, h, version, errors, names):
    paras = paragraphs(f.doc)
    italic = {p.name for p in f.params}
    desc = [lines for label, lines in paras if label is None]
    returns = [joined(lines) for label, lines in paras if label == "Returns"]
    thread = [lines for label, lines in paras if label == "Thread safety"]
    owner = [lines for label, lines in paras if label == "Ownership"]
    safety = [lines for label, lines in paras if label == "Pointers"]
    examples = [lines for label, lines in paras if label == "Example"]
    other = [(label, lines) for label, lines in paras
             if label not in (None,) + LABELS]

    # "Returns as libuffd_x()." inside the description: a RETURN VALUE of its own.
    returns_as = None
    if not returns:
        for k, lines in enumerate(desc):
            text = "\n".join(lines)
            m = re.search(r"\s*\bReturns\s+as\s+(libuffd_\w+)\(\)\.", text)
            if m:
                returns_as = m.group(1)
                text = (text[:m.start()] + " " + text[m.end():]).strip()
                desc[k] = [ln for ln in text.split("\n") if ln.strip()]
        desc = [lines for lines in desc if lines]

    page = Page(f.name, 3, version)
    page.sh("NAME")
    page.add(["%s \\- %s" % (esc_code(f.name), plain(summary(f)))])

    page.sh("SYNOPSIS")
    page.add([".nf", ".B #include <libuffd.h>", ".PP"] + prototype(f) + [".fi"])
    page.add([".PP", "Link with \\fB\\-luffd\\fR, or \\fB$(pkg\\-config \\-\\-libs uffd)\\fR."])

    page.sh("DESCRIPTION")
    page.add(paras_roff(desc, italic))
    for label, lines in other:
        page.add([".PP", "\\fB%s:\\fR" % esc_prose(label)] + para_roff(lines, italic))

    records = records_of(f, h)
    if records:
        page.sh("STRUCTURES")
        for r in records:
            page.ss("%s %s" % (r.kind, r.name))
            page.add(record_roff(r))

    alltext = "\n".join(joined(lines) for _, lines in paras)
    alltext += "\n" + "\n".join(joined(r.doc) + "\n" + "\n".join(joined(fl.doc) for fl in r.fields or [])
                                for r in records)
    consts = constants_for(f, alltext, h)
    if consts:
        page.sh("CONSTANTS")
        for d in consts:
            page.add(constant_roff(d))

    fn = "\\fB%s\\fR()" % esc_code(f.name)
    page.sh("RETURN VALUE")
    e = errors.get(f.name)
    if returns:
        head = e.head.strip() if e else returns[0]
        if e and e.items:
            head = re.sub(r"(,?\s*\bor)?[\s,:;]*$", "", head)
            if re.search(r"negative errno$", head):
                text = "%s returns %s (see ERRORS)." % ("`%s`" % f.name, head)
            elif head:
                text = "`%s` returns %s, or a negative errno (see ERRORS)." % (f.name, head)
            else:
                text = "`%s` returns a negative errno (see ERRORS)." % f.name
        else:
            text = "`%s` returns %s" % (f.name, sentence(returns[0]))
        page.add(fix_lines(inline(text, italic).replace("\\fB%s\\fR" % esc_code(f.name), fn, 1)))
        if e and e.items:
            page.add([".PP"] + fix_lines(
                "On failure \\fIerrno\\fR is set as well, and \\fBlibuffd_last_error\\fR(3) "
                "gives the details."))
    elif returns_as:
        page.add(fix_lines("As for \\fB%s\\fR(3)." % esc_code(returns_as)))
    elif f.ret == "void":
        page.add(["None."])
    else:
        s = first_sentence(joined(desc[0])) if desc else ""
        if re.match(r"^(The|A|An|Whether)\b", s):
            page.add(fix_lines(fn + " returns " + inline(decap(s), italic)))
        else:
            page.add(["See DESCRIPTION."])

    if returns:
        page.sh("ERRORS")
        items = resolve_errors_cache[f.name]
        if items:
            page.add(fix_lines("The function returns these values negated "
                               "(\\fB\\-EINVAL\\fR for \\fBEINVAL\\fR):"))
            for names_, expl in items:
                if re.match(r"^\W*(\w+)", expl).group(1) not in italic:
                    expl = cap(expl)
                page.add([".TP", ", ".join("\\fB%s\\fR" % n for n in names_)])
                page.add(fix_lines(inline(expl, italic)))
            for extra in e.extras:
                page.add([".PP"] + fix_lines(inline("It may also return %s" % sentence(extra),
                                                    italic)))
        else:
            body = re.sub(r'"[^"]*"', "", FUNC_REF_RE.sub("", returns[0]))
            if re.search(r"errno|\berrors?\b", body):
                page.add(fix_lines(inline(sentence(cap(returns[0])), italic)))
            else:
                page.add(["None."])
    elif returns_as:
        page.sh("ERRORS")
        page.add(fix_lines("As for \\fB%s\\fR(3)." % esc_code(returns_as)))

    if thread:
        page.sh("THREAD SAFETY")
        page.add(paras_roff([[cap(lines[0])] + lines[1:] for lines in thread], italic))

    if safety:
        page.sh("CALLER OBLIGATIONS")
        for k, lines in enumerate(safety):
            if k:
                page.add([".PP"])
            page.add(obligations_roff(lines, italic))

    if owner:
        page.sh("NOTES")
        page.add(paras_roff([[cap(lines[0])] + lines[1:] for lines in owner], italic))

    if examples:
        page.sh("EXAMPLES")
        page.add(paras_roff([lines if is_code(lines) else [cap(lines[0])] + lines[1:]
                             for lines in examples], italic))

    page.sh("SEE ALSO")
    refs = [("libuffd", "7")]
    area = area_of(f.name)
    refs += [(n, "3") for n in names if n != f.name and area_of(n) == area]
    own = "\n".join(joined(lines) for _, lines in paras)
    refs += [(n, "3") for n in FUNC_REF_RE.findall(own) if n in names and n != f.name]
    refs += [(n, s) for n, s in re.findall(r"\b([a-z_]+)\(([1-8])\)", own)]
    page.add(see_also(refs))
    return page.text()


resolve_errors_cache = {}


def overview_page(h, version):
    major = version.split(".")[0]
    page = Page("libuffd", 7, version)
    tagline = "Linux userfaultfd made safe and fast for C and C++"
    m = re.search(r"libuffd, (.*?)\.?$", h.top[0] if h.top else "")
    if m:
        tagline = m.group(1)
    page.sh("NAME")
    page.add(["libuffd \\- " + plain(tagline)])
    page.sh("SYNOPSIS")
    page.add([".nf", ".B #include <libuffd.h>", ".PP",
              ".B cc prog.c $(pkg\\-config \\-\\-cflags \\-\\-libs uffd)", ".fi"])

    page.sh("DESCRIPTION")
    page.add(fix_lines(
        "libuffd wraps the Linux \\fBuserfaultfd\\fR(2) interface for C and C++: "
        "creating a userfaultfd and negotiating its features, registering memory, "
        "reading decoded events and resolving faults, with the kernel's races "
        "(already-populated pages, events pending, partial copies) reported as "
        "plain error codes."))
    page.add([".PP"] + fix_lines(
        "It is written in Rust and exported through a C ABI as \\fIlibuffd.so.%s\\fR "
        "and \\fIlibuffd.a\\fR; the header \\fI<libuffd.h>\\fR is generated from the "
        "library's sources, and so are these pages. Each function has a page in "
        "section 3; this page gives the conventions they share." % major))

    page.sh("CONVENTIONS")
    page.ss("Names")
    page.add(fix_lines(
        "Functions and types are named \\fBlibuffd_*\\fR; macros and constants "
        "\\fBLIBUFFD_*\\fR. Nothing collides with \\fI<linux/userfaultfd.h>\\fR: "
        "both headers can be included in the same file."))
    page.ss("Return values and errors")
    page.add(fix_lines(
        "Success is 0 or a non-negative count; failure is a negative errno value, "
        "such as \\fB\\-EINVAL\\fR, and \\fIerrno\\fR is set to the positive value "
        "as well. \\fBlibuffd_strerror\\fR(3) describes a code; "
        "\\fBlibuffd_last_error\\fR(3) gives the calling thread's most recent failure "
        "in detail: the function, the operation, the address range, the kernel's "
        "answer and its usual cause. Each page lists the codes its function "
        "returns under ERRORS."))
    page.add([".PP"] + fix_lines(
        "The operations that fill memory return the number of bytes done: the "
        "whole length, or fewer when the kernel stopped part way (continue at the "
        "address plus that count). \\fB\\-EEXIST\\fR means the range was already "
        "populated (wake the waiting threads), \\fB\\-EAGAIN\\fR that an event is "
        "waiting to be read, \\fB\\-ENOENT\\fR that there is no registered mapping, "
        "\\fB\\-ESRCH\\fR that the process owning the memory exited."))
    page.add([".PP"] + fix_lines(
        "The registration and resolving functions pass their arguments to the "
        "kernel as given and return its errno, in its order of checks, exactly as "
        "the raw ioctl would: zero or misaligned lengths, wrapping ranges, "
        "unknown mode bits and unmapped ranges are the kernel's \\fB\\-EINVAL\\fR "
        "(and a pending event's \\fB\\-EAGAIN\\fR comes first); "
        "\\fBlibuffd_last_error\\fR() then says which argument or mapping was "
        "at fault. NULL handles and pointers and unknown bits in libuffd's own "
        "option structs give \\fB\\-EINVAL\\fR: bad input never crashes the "
        "library. An internal error (a "
        "Rust panic) is caught at the library boundary and returned as "
        "\\fB\\-ENOTRECOVERABLE\\fR; the handle it happened on is poisoned, and "
        "every later call on it fails the same way."))
    page.ss("Out-parameters")
    page.add(fix_lines(
        "Results returned through pointer arguments are written only on success; "
        "on failure the pointed-to objects are left as they were."))
    page.ss("Option structs")
    page.add(fix_lines(
        "Option structs, the monitor's callback table (\\fBstruct libuffd_monitor_ops\\fR) "
        "too, start with a \\fBsize_t sz\\fR member, set to the size "
        "of the struct the caller was compiled with, and zero means the default "
        "for every other member. "
        "\\fBLIBUFFD_OPTS\\fR(\\fITYPE\\fR, \\fINAME\\fR, ...) declares one: it sets "
        "\\fIsz\\fR and zeroes every other byte before applying the designated "
        "initialisers given, in C (C99 and later) and C++ (C++11 and later, the "
        "initialisers in the order of the members); "
        "\\fBLIBUFFD_OPTS_INIT\\fR(\\fITYPE\\fR, ...) is the same value for an "
        "assignment. A caller "
        "built against an older header gets the defaults for members added "
        "later; members this library does not know must be zero, else the call "
        "fails with \\fB\\-E2BIG\\fR. A NULL options pointer means all defaults."))
    page.ss("Handles and ownership")
    page.add(fix_lines(
        "A \\fBlibuffd_handle\\fR is opaque: a userfaultfd, its negotiated features "
        "and nothing else. It is created by \\fBlibuffd_open\\fR(3) or "
        "\\fBlibuffd_handle_from_fd\\fR(3) and freed, exactly once, by "
        "\\fBlibuffd_handle_free\\fR(3); a handle is live between the two. Who owns "
        "what is described under NOTES in each page. Descriptors given to the "
        "library (\\fBlibuffd_handle_from_fd\\fR(3), the \\fIfd\\fR of a "
        "\\fBLIBUFFD_SOURCE_FD\\fR region) are duplicated "
        "(\\fBF_DUPFD_CLOEXEC\\fR): the caller keeps, and closes, its own. "
        "Handles and monitors carry a type tag: a pointer of the wrong kind (a "
        "monitor passed as a handle), or one already freed where that can be "
        "told, fails with \\fB\\-EINVAL\\fR instead of being used."))
    page.ss("A guest in the host process")
    page.add(fix_lines(
        "The library writes nothing on standard error, ever: an internal panic is "
        "caught, reported to the monitor's \\fIon_log\\fR callback (and as "
        "\\fB\\-ENOTRECOVERABLE\\fR where a call returns), never printed. "
        "Callbacks must return normally: no C++ exception thrown out of them, no "
        "\\fBlongjmp\\fR(3) out of them; \\fBlibuffd_monitor_free\\fR(3) and "
        "\\fBlibuffd_monitor_wait\\fR(3) from inside one of the monitor's own "
        "callbacks fail with \\fBEDEADLK\\fR."))
    page.ss("Thread safety")
    page.add(fix_lines(
        "Every function taking a handle may be called from several threads at "
        "once. The error detail of \\fBlibuffd_last_error\\fR(3) is kept per "
        "thread. Each page states its function's rules under THREAD SAFETY."))
    page.ss("Thread cancellation")
    page.add(fix_lines(
        "Three functions are cancellation points, as \\fBread\\fR(2) and "
        "\\fBpthread_join\\fR(3) are: \\fBlibuffd_read_events\\fR(3), "
        "\\fBlibuffd_monitor_run\\fR(3) and \\fBlibuffd_monitor_wait\\fR(3). "
        "A thread blocked in one of them, or entering one with a cancellation "
        "pending, can be cancelled with \\fBpthread_cancel\\fR(3): it unwinds out "
        "of the call, and the handle or monitor stays usable (each page says in "
        "what state). No other function is a cancellation point: each runs with "
        "cancellation disabled, so a cancellation pending or arriving meanwhile "
        "acts at the thread's next cancellation point; \\fBlibuffd_handle_free\\fR(3) "
        "and \\fBlibuffd_monitor_free\\fR(3) always complete. Monitor callbacks "
        "run with cancellation disabled too. Asynchronous cancellation "
        "(\\fBPTHREAD_CANCEL_ASYNCHRONOUS\\fR) is not supported while a thread "
        "is inside any libuffd function."))
    page.ss("Caller obligations")
    page.add(fix_lines(
        "libuffd checks pointers for NULL but cannot check that a non-NULL pointer "
        "is valid: what each pointer argument must point to is listed under "
        "CALLER OBLIGATIONS in each page; anything else is undefined behaviour."))
    page.ss("Versions")
    page.add(fix_lines(
        "\\fBLIBUFFD_VERSION_MAJOR\\fR, \\fBLIBUFFD_VERSION_MINOR\\fR and "
        "\\fBLIBUFFD_VERSION_PATCH\\fR give the header's version, "
        "\\fBLIBUFFD_VERSION\\fR all three as one number, comparable with "
        "\\fBlibuffd_version\\fR(3), the version of the library actually loaded. "
        "The major version is the soname's number; a minor release only adds."))

    page.sh("LINKING")
    page.add(fix_lines(
        "Compile and link with the flags \\fBpkg\\-config\\fR(1) gives:"))
    page.add([".PP", ".in +4n", ".EX",
              "cc \\-c prog.c $(pkg\\-config \\-\\-cflags uffd)",
              "cc \\-o prog prog.o $(pkg\\-config \\-\\-libs uffd)",
              ".EE", ".in", ".PP"])
    page.add(fix_lines(
        "that is \\fB\\-luffd\\fR plus the include and library directories. "
        "To link the static library \\fIlibuffd.a\\fR, add the libraries it "
        "needs with \\fBpkg\\-config \\-\\-static \\-\\-libs uffd\\fR."))

    page.sh("MONITOR DELIVERY ORDER")
    page.add(fix_lines(
        "The monitor (\\fBlibuffd_monitor_new\\fR(3)) reads each handle's "
        "messages in batches (up to \\fIbatch\\fR per \\fBread\\fR(2)) and "
        "handles a batch in this order:"))
    page.add([".IP 1. 4"] + fix_lines(
        "Its events (fork, mremap, madvise removal, munmap) are applied to the "
        "region table, and their callbacks (\\fIon_fork\\fR, \\fIon_remap\\fR, "
        "\\fIon_remove\\fR, \\fIon_unmap\\fR) called, in the order the kernel "
        "reported them."))
    page.add([".IP 2. 4"] + fix_lines(
        "Then its page faults are served, against the layout those events "
        "left. A fault reported more than once in the batch (same handle, "
        "address and flags: several threads touching one page) is served once; "
        "the others are counted as \\fIcoalesced\\fR in "
        "\\fBlibuffd_monitor_get_stats\\fR(3). A fault that meets an event not "
        "yet read (the kernel's \\fBEAGAIN\\fR) is tried again after the next "
        "read."))
    page.add([".PP"] + fix_lines(
        "Why: reading an event completes it. The thread that called "
        "\\fBmadvise\\fR(2), \\fBmremap\\fR(2), \\fBmunmap\\fR(2) or \\fBfork\\fR(2) "
        "goes on as soon as the event is read, and a removal's range is zapped "
        "at once. A fault of the same batch served in message order, from the "
        "layout before the event, could place a region's old data after that "
        "zap, where the caller of \\fBmadvise\\fR(2) must read zeros, or look for "
        "a moved region at its old address. The faults of a batch were raised "
        "before its events were read, so serving them against the new layout is "
        "what the program could have seen anyway. Coalescing spares the "
        "duplicates a second resolution: one resolution wakes every thread "
        "waiting on the page, and the kernel would refuse the others with "
        "\\fBEEXIST\\fR."))
    page.add([".PP"] + fix_lines(
        "Blocking and non-blocking descriptors are served alike; a blocking "
        "one is read with \\fBRWF_NOWAIT\\fR, its status flags untouched. The "
        "threads the monitor creates block every signal."))

    porting_section(page)
    page.sh("HAND-OFF")
    page.add(fix_lines(
        "A process that owns memory (a virtual machine monitor, a restored "
        "process) can have its faults served by another process: it opens a "
        "userfaultfd, registers its ranges and sends the descriptor with "
        "\\fBlibuffd_send\\fR(3) over a connected Unix socket "
        "(\\fBSOCK_SEQPACKET\\fR recommended); the handler receives it with "
        "\\fBlibuffd_recv\\fR(3), serves the ranges with "
        "\\fBlibuffd_monitor_add_received\\fR(3) and stops when the owner "
        "dies with \\fBlibuffd_monitor_watch_peer\\fR(3)."))
    page.add([".PP"] + fix_lines(
        "The message is one \\fBsendmsg\\fR(2): the descriptor in an "
        "\\fBSCM_RIGHTS\\fR control message, and these bytes, little-endian: "
        "a 32-byte header (magic 0x4f484655, version 1 as 16 bits, header size "
        "32 as 16 bits, region count and entry size 40 as 32 bits each, the "
        "sender's negotiated features and a reserved zero as 64 bits each), "
        "then per region five 64-bit fields: start address, length, page "
        "size, source offset, tag. At most "
        "\\fBLIBUFFD_HANDOFF_MAX_REGIONS\\fR regions. The page size travels "
        "with each region: the handler cannot learn it from an adopted "
        "descriptor, and a hugetlb range served with 4 KiB pages would fail."))

    page.sh("FUNCTIONS")
    names = [f.name for f in h.funcs]
    for title, _ in AREAS:
        members = [f for f in h.funcs if area_of(f.name) == title]
        if not members:
            continue
        page.ss(title)
        for f in sorted(members, key=lambda f: names.index(f.name)):
            page.add([".TP", ".BR %s (3)" % esc_code(f.name)] + fix_lines(cap(plain(summary(f))) + "."))

    examples_section(page)

    page.sh("SEE ALSO")
    refs = [("userfaultfd", "2"), ("ioctl_userfaultfd", "2"), ("libuffd-probe", "1"),
            ("pkg-config", "1")]
    page.add(see_also(refs))
    return page.text()


# libuffd(7): each raw ioctl, struct and convention of <linux/userfaultfd.h>
# with its libuffd call. (raw, libuffd) pairs, in roff.
PORTING = [
    ("\\fBuserfaultfd\\fR(2), or \\fBUFFDIO_USERFAULTFD_IOC_NEW\\fR on \\fI/dev/userfaultfd\\fR, "
     "then \\fBUFFDIO_API\\fR (\\fBstruct uffdio_api\\fR)",
     "\\fBlibuffd_open\\fR(3): both creation paths (\\fBLIBUFFD_OPEN_NO_SYSCALL\\fR, "
     "\\fBLIBUFFD_OPEN_NO_DEV\\fR exclude one), the handshake, \\fIfeatures\\fR wanted and "
     "\\fIrequired_features\\fR; \\fBUFFD_USER_MODE_ONLY\\fR is \\fBLIBUFFD_OPEN_USER_ONLY\\fR, "
     "\\fBO_NONBLOCK\\fR \\fBLIBUFFD_OPEN_NONBLOCK\\fR, close-on-exec the default. A descriptor "
     "made elsewhere: \\fBlibuffd_handle_from_fd\\fR(3)."),
    ("\\fBUFFDIO_API\\fR with \\fIfeatures\\fR 0 on a throwaway descriptor (what does the kernel offer?)",
     "\\fBlibuffd_probe_features\\fR(3), \\fBlibuffd_feature_supported\\fR(3), "
     "\\fBlibuffd_feature_name\\fR(3); \\fBlibuffd\\-probe\\fR(1) from the shell."),
    ("\\fIuffdio_api.features\\fR after the handshake",
     "\\fBlibuffd_handle_features\\fR(3). \\fBUFFD_FEATURE_\\fR\\fIX\\fR is "
     "\\fBLIBUFFD_FEATURE_\\fR\\fIX\\fR, same value."),
    ("\\fBUFFDIO_REGISTER\\fR (\\fBstruct uffdio_register\\fR: \\fIrange\\fR, \\fImode\\fR, "
     "\\fIioctls\\fR out)",
     "\\fBlibuffd_register\\fR(3)(h, start, len, mode, &ioctls): "
     "\\fBUFFDIO_REGISTER_MODE_\\fR\\fIX\\fR is \\fBLIBUFFD_REGISTER_\\fR\\fIX\\fR, "
     "the \\fI1 << _UFFDIO_\\fR\\fIX\\fR bits of \\fIioctls\\fR are \\fBLIBUFFD_IOCTL_\\fR\\fIX\\fR."),
    ("\\fBUFFDIO_UNREGISTER\\fR (\\fBstruct uffdio_range\\fR)", "\\fBlibuffd_unregister\\fR(3)."),
    ("\\fBUFFDIO_COPY\\fR (\\fBstruct uffdio_copy\\fR: \\fIdst\\fR, \\fIsrc\\fR, \\fIlen\\fR, "
     "\\fImode\\fR, \\fIcopy\\fR out)",
     "\\fBlibuffd_copy\\fR(3); \\fBUFFDIO_COPY_MODE_DONTWAKE\\fR and \\fB_WP\\fR are "
     "\\fBLIBUFFD_COPY_DONTWAKE\\fR and \\fB_WP\\fR."),
    ("\\fBUFFDIO_ZEROPAGE\\fR (\\fBstruct uffdio_zeropage\\fR, \\fIzeropage\\fR out)",
     "\\fBlibuffd_zeropage\\fR(3), \\fBLIBUFFD_ZEROPAGE_DONTWAKE\\fR."),
    ("\\fBUFFDIO_WRITEPROTECT\\fR (\\fBstruct uffdio_writeprotect\\fR)",
     "\\fBlibuffd_writeprotect\\fR(3), \\fBLIBUFFD_WRITEPROTECT_WP\\fR and \\fB_DONTWAKE\\fR."),
    ("\\fBUFFDIO_CONTINUE\\fR (\\fBstruct uffdio_continue\\fR, \\fImapped\\fR out)",
     "\\fBlibuffd_continue\\fR(3), \\fBLIBUFFD_CONTINUE_DONTWAKE\\fR and \\fB_WP\\fR."),
    ("\\fBUFFDIO_POISON\\fR (\\fBstruct uffdio_poison\\fR, \\fIupdated\\fR out)",
     "\\fBlibuffd_poison\\fR(3), \\fBLIBUFFD_POISON_DONTWAKE\\fR."),
    ("\\fBUFFDIO_MOVE\\fR (\\fBstruct uffdio_move\\fR, \\fImove\\fR out)",
     "\\fBlibuffd_move\\fR(3), \\fBLIBUFFD_MOVE_DONTWAKE\\fR and \\fB_ALLOW_SRC_HOLES\\fR."),
    ("\\fBUFFDIO_WAKE\\fR (\\fBstruct uffdio_range\\fR)", "\\fBlibuffd_wake\\fR(3)."),
    ("\\fBread\\fR(2) of \\fBstruct uffd_msg\\fR",
     "\\fBlibuffd_read_events\\fR(3) fills \\fBstruct libuffd_event\\fR: \\fImsg.event\\fR "
     "\\fBUFFD_EVENT_\\fR\\fIX\\fR is \\fIkind\\fR \\fBLIBUFFD_EVENT_\\fR\\fIX\\fR; "
     "\\fIarg.pagefault\\fR.{\\fIaddress\\fR, \\fIflags\\fR, \\fIfeat.ptid\\fR} is "
     "\\fIu.fault\\fR.{\\fIaddress\\fR, \\fIflags\\fR, \\fIthread_id\\fR} (plus "
     "\\fIexact_address\\fR); \\fIarg.fork.ufd\\fR is \\fIu.fork.fd\\fR; \\fIarg.remap\\fR "
     "is \\fIu.remap\\fR; \\fIarg.remove\\fR (REMOVE and UNMAP) is \\fIu.range\\fR. "
     "A timeout, \\fBEAGAIN\\fR on an empty non-blocking descriptor, becomes a return of 0."),
    ("\\fBpoll\\fR(2) or \\fBepoll\\fR(7) on the descriptor",
     "the same on \\fBlibuffd_handle_fd\\fR(3) (borrowed: do not close it), opened with "
     "\\fBLIBUFFD_OPEN_NONBLOCK\\fR."),
    ("\\fBclose\\fR(2) of the descriptor", "\\fBlibuffd_handle_free\\fR(3)."),
    ("a fault-handling thread of your own (read, resolve, wake)",
     "the monitor: \\fBlibuffd_monitor_new\\fR(3), \\fBlibuffd_monitor_add_handle\\fR(3), "
     "\\fBlibuffd_monitor_add_region\\fR(3) with a page source, \\fBlibuffd_monitor_start\\fR(3)."),
]


def porting_section(page):
    page.sh("PORTING FROM RAW IOCTLS")
    page.add(fix_lines(
        "Code written against \\fI<linux/userfaultfd.h>\\fR maps one to one onto libuffd: "
        "the same operations with the same arguments, modes and constants (renamed "
        "\\fBLIBUFFD_*\\fR, same values, so both headers can be included together). "
        "Each raw interface, then its libuffd call:"))
    for raw, ours in PORTING:
        page.add([".TP"] + fix_lines(raw) + fix_lines(ours))
    page.ss("Errors and partial progress")
    page.add(fix_lines(
        "A raw ioctl returns \\-1 and sets \\fIerrno\\fR; a resolving ioctl reports in its "
        "result field (\\fIcopy\\fR, \\fIzeropage\\fR, \\fImapped\\fR, \\fIupdated\\fR, "
        "\\fImove\\fR) either the bytes done or a negative errno, and stops part way with "
        "\\fBEAGAIN\\fR and a positive count in that field. libuffd returns that in one "
        "value: the bytes done (the whole length, or fewer after partial progress: continue "
        "at the address plus that count), or the negative errno, with \\fIerrno\\fR set too. "
        "The errno is always the kernel's own for the same arguments, in the kernel's order "
        "of checks: \\fB\\-EEXIST\\fR (already populated: wake), \\fB\\-EAGAIN\\fR (an event "
        "to read first, with no progress made), \\fB\\-ENOENT\\fR, \\fB\\-ESRCH\\fR, "
        "\\fB\\-EINVAL\\fR mean what they mean for the ioctl; \\fBlibuffd_last_error\\fR(3) "
        "adds which argument or mapping the kernel refused."))
    page.add([".PP"] + fix_lines(
        "Registration's result is the kernel's too: \\fBlibuffd_register\\fR(3) writes "
        "\\fIuffdio_register.ioctls\\fR to its last argument."))


# The example programs of the source tree (c-examples/), for libuffd(7).
EXAMPLE_PROGRAMS = [
    ("userfaultfd_demo.c", "the example program of \\fBuserfaultfd\\fR(2), on libuffd: a "
     "thread reading events and resolving each fault with \\fBlibuffd_copy\\fR(3)."),
    ("minor-faults.c", "hugetlb or shmem memory mapped twice, one mapping registered for "
     "minor faults and served by the monitor from the page cache (CONTINUE): the hugetlb "
     "post-copy pattern."),
    ("sigbus-mode.c", "\\fBLIBUFFD_FEATURE_SIGBUS\\fR: each fault handled by a SIGBUS "
     "handler on the faulting thread, no monitor (and why it calls the raw ioctl)."),
    ("gc-compaction.c", "a compacting garbage collector moving pages with "
     "\\fBlibuffd_move\\fR(3) and \\fBlibuffd_monitor_move\\fR(3) while mutator threads "
     "read checksummed objects."),
    ("db-snapshot.c", "a consistent snapshot of a table saved to a file with "
     "\\fBlibuffd_snapshot_begin\\fR(3) while writer threads keep updating it; the file "
     "is checked against the table at the snapshot's instant."),
    ("dirty-tracking.c", "incremental checkpoints (only the pages written since the last "
     "one, \\fBlibuffd_monitor_dirty_scan\\fR(3) with \\fBLIBUFFD_DIRTY_CLEAR\\fR), with "
     "\\fBLIBUFFD_FEATURE_WP_ASYNC\\fR and PAGEMAP_SCAN next to synchronous write-protect "
     "faults, the cost of each, and a restore checked against memory."),
    ("raii.cpp", "C++17 RAII wrappers over handles, monitors and mappings."),
    ("lazy-restore.c", "a VMM process hands its guest memory's userfaultfd to a handler "
     "process (\\fBlibuffd_send\\fR(3), \\fBlibuffd_recv\\fR(3)) that restores it from a "
     "snapshot file with fault-around and background prefetch and stops when the VMM goes "
     "(\\fBlibuffd_monitor_watch_peer\\fR(3)); a balloon's MADV_DONTNEED reads as zeros; "
     "the restore time against \\fBread\\fR(2) of the file."),
    ("postcopy.c", "live migration's post-copy: a page server process on 127.0.0.1 "
     "(\\fBlibuffd_page_server_serve\\fR(3)), the destination's memory served from it "
     "(\\fBLIBUFFD_SOURCE_REMOTE\\fR), the pages its threads touch first fetched first "
     "and the rest pulled in the background by the monitor (\\fBLIBUFFD_REGION_PREFETCH\\fR, "
     "done when \\fIprefetch_done_regions\\fR says so); pages fetched on demand and in the "
     "background, the time."),
    ("buffer-pool.c", "the out-of-core database pattern: a data file four times larger "
     "than the memory budget used as anonymous memory served from the file "
     "(\\fBLIBUFFD_SOURCE_FD\\fR) with \\fImax_resident\\fR and write-back to the same "
     "file (\\fBLIBUFFD_REGION_WRITEBACK_FD\\fR); threads read and update checksummed "
     "records at random; the file plus the resident memory checked against a model, "
     "then a checkpoint with \\fBlibuffd_monitor_writeback\\fR(3) and the file alone; the "
     "resident peak against the budget, evictions, write-backs, faults per second."),
]

EXAMPLE_7 = """\
/* Memory whose 64 pages come from a snapshot buffer, each placed by the
 * monitor's thread at its first touch (a lazy restore), then checked.
 * cc restore.c $(pkg-config --cflags --libs uffd) */
#define _GNU_SOURCE
#include <libuffd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(void)
{
        size_t len = 64 * (size_t)sysconf(_SC_PAGESIZE);
        char *snapshot = malloc(len);
        char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        LIBUFFD_OPTS(libuffd_open_opts, oo, .flags = LIBUFFD_OPEN_USER_ONLY);
        LIBUFFD_OPTS(libuffd_region_opts, ro,
                     .source = LIBUFFD_SOURCE_BUFFER,
                     .register_mode = LIBUFFD_REGISTER_MISSING,
                     .buffer = snapshot, .buffer_len = len);
        libuffd_handle *h;
        libuffd_monitor *m;
        uint32_t id;

        if (!snapshot || mem == MAP_FAILED)
                return 1;
        for (size_t i = 0; i < len; i++)
                snapshot[i] = (char)(i % 251);
        if (libuffd_open(&oo, &h) < 0 ||
            libuffd_monitor_new(NULL, NULL, NULL, NULL, &m) < 0 ||
            libuffd_monitor_add_handle(m, h, &id) < 0 ||
            libuffd_monitor_add_region(m, id, mem, len, &ro) < 0 ||
            libuffd_monitor_start(m) < 0) {
                fprintf(stderr, "%s\\n", libuffd_last_error());
                return 1;
        }
        libuffd_handle_free(h);          /* the monitor keeps its own */

        int same = memcmp(mem, snapshot, len) == 0;  /* one fault a page */
        libuffd_monitor_free(m);         /* stops the run, joins, frees */
        printf("%s\\n", same ? "restored" : "wrong contents");
        return !same;
}"""


def examples_section(page):
    page.sh("EXAMPLES")
    page.add(fix_lines(
        "A complete program: a lazy restore, the pages served by the monitor from a "
        "buffer."))
    page.add([".PP"] + code_roff(["    " + line if line else "    " for line in EXAMPLE_7.split("\n")]))
    page.add([".PP"] + fix_lines(
        "The pages of \\fBlibuffd_open\\fR(3), \\fBlibuffd_register\\fR(3), "
        "\\fBlibuffd_copy\\fR(3), \\fBlibuffd_read_events\\fR(3), "
        "\\fBlibuffd_monitor_new\\fR(3), \\fBlibuffd_monitor_add_region\\fR(3) and "
        "\\fBlibuffd_monitor_start\\fR(3) have examples of their own. The source "
        "tree's \\fIc\\-examples/\\fR directory holds complete programs "
        "(\\fBmake examples\\fR builds them, \\fBmake test\\fR runs them):"))
    for name, what in EXAMPLE_PROGRAMS:
        page.add([".TP", "\\fI%s\\fR" % esc_code(name)] + fix_lines(what))


def cargo_version(path):
    in_package = False
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            s = line.strip()
            if s.startswith("["):
                in_package = s == "[package]"
            m = re.match(r'^version\s*=\s*"([^"]+)"', s)
            if m and in_package:
                return m.group(1)
    sys.exit("gen_man.py: no [package] version in " + path)


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        with open(path, encoding="utf-8") as fh:
            if fh.read() == text:
                return
    except FileNotFoundError:
        pass
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--header", default=os.path.join(ROOT, "include", "libuffd.h"))
    ap.add_argument("--cargo", default=os.path.join(ROOT, "Cargo.toml"))
    ap.add_argument("--out", default=os.path.join(ROOT, "man"))
    args = ap.parse_args()

    with open(args.header, encoding="utf-8") as fh:
        h = parse_header(fh.read())
    if not h.funcs:
        sys.exit("gen_man.py: no libuffd_* function in " + args.header)
    version = cargo_version(args.cargo)

    errors = {}
    for f in h.funcs:
        for label, lines in paragraphs(f.doc):
            if label == "Returns":
                errors[f.name] = parse_errors(joined(lines))
                break
    resolve_errors_cache.clear()
    resolve_errors_cache.update(resolve_errors(errors, {f.name: {p.name for p in f.params}
                                                        for f in h.funcs}))

    names = [f.name for f in h.funcs]
    man3 = os.path.join(args.out, "man3")
    wanted = set()
    for f in h.funcs:
        path = os.path.join(man3, f.name + ".3")
        write(path, function_page(f, h, version, errors, names))
        wanted.add(f.name + ".3")
    for old in os.listdir(man3):
        if old.endswith(".3") and old not in wanted:
            os.remove(os.path.join(man3, old))
    write(os.path.join(args.out, "man7", "libuffd.7"), overview_page(h, version))


if __name__ == "__main__":
    main()
