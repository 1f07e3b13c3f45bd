// SPDX-License-Identifier: MIT OR Apache-2.0
//! include/libuffd.h must be exactly what src/ffi makes of it: the
//! declarations cbindgen generates from src/ffi (every constant, type and
//! function with its doc comment), laid out by src/ffi/libuffd.h.in.
//! `LIBUFFD_BLESS=1 cargo test --test header_fresh` (or `make header`)
//! rewrites it.
//!
//! The layout file is the header as a C author reads it: sections with
//! banners, the include guard, extern "C", the hand-written macros, and a
//! line `@@ NAME @@` where each generated declaration goes. NAME is a
//! constant, type or function name, or a family `PREFIX*`; an exact name
//! wins over a family. `@@ NAME hex @@` writes integer constants in
//! hexadecimal (masks), as cbindgen writes every literal in decimal. Every
//! generated declaration must be placed exactly once and every line must
//! place at least one: a declaration added to src/ffi without a place, or
//! a place left without its declaration, fails here.

use std::collections::BTreeMap;
use std::path::Path;

const LAYOUT: &str = "src/ffi/libuffd.h.in";
const NOTICE: &str = "/* Generated from src/ffi by cbindgen, laid out by src/ffi/libuffd.h.in:\n * do not edit. Run make header. */";

/// One generated declaration: its name and its text (doc comment included).
struct Item {
    name: String,
    text: String,
}

fn item_name(text: &str) -> String {
    let decl = text
        .lines()
        .find(|l| !l.starts_with("/**") && !l.starts_with(" *"))
        .unwrap_or_else(|| panic!("no declaration in generated item:\n{text}"));
    let word_after = |prefix: &str| -> String {
        decl[prefix.len()..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    if decl.starts_with("#define ") {
        word_after("#define ")
    } else if decl.starts_with("typedef struct ") {
        word_after("typedef struct ")
    } else if decl.starts_with("typedef union ") {
        word_after("typedef union ")
    } else if let Some(p) = decl.find("libuffd_").filter(|_| decl.contains('(')) {
        decl[p..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    } else {
        panic!("unrecognised generated declaration: {decl}")
    }
}

/// The generated declarations, in cbindgen's order.
fn generated_items(root: &Path) -> Vec<Item> {
    let config =
        cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("read cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src/ffi/mod.rs"))
        .generate()
        .expect("cbindgen failed");
    let mut out = Vec::new();
    bindings.write(&mut out);
    let text = String::from_utf8(out).expect("cbindgen wrote UTF-8");
    text.split("\n\n")
        .map(|t| t.trim_matches('\n'))
        .filter(|t| !t.is_empty())
        .map(|t| Item {
            name: item_name(t),
            text: indent_code_blocks(t),
        })
        .collect()
}

/// `#define NAME 123` as `#define NAME 0x7b`.
fn hex_define(text: &str) -> String {
    text.lines()
        .map(|l| {
            let Some(rest) = l.strip_prefix("#define ") else {
                return l.to_string();
            };
            let (name, value) = rest.split_once(' ').unwrap_or((rest, ""));
            match value.parse::<u64>() {
                Ok(v) => format!("#define {name} {v:#x}"),
                Err(_) => l.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A fenced code block of a doc comment (rustdoc's ```c ... ```) as C
/// comments show code: indented by four spaces, without the fences.
fn indent_code_blocks(text: &str) -> String {
    let mut out = Vec::new();
    let mut in_code = false;
    for l in text.lines() {
        if l.trim_start().starts_with("* ```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            let body = l.trim_start().strip_prefix('*').unwrap_or(l);
            let body = body.strip_prefix(' ').unwrap_or(body);
            out.push(format!(" *     {body}").trim_end().to_string());
        } else {
            out.push(l.to_string());
        }
    }
    out.join("\n")
}

/// Put the generated items into the layout; every problem is listed.
fn compose(layout: &str, items: &[Item]) -> Result<String, Vec<String>> {
    let mut errors = Vec::new();
    let mut names = BTreeMap::new();
    for (k, it) in items.iter().enumerate() {
        if names.insert(it.name.as_str(), k).is_some() {
            errors.push(format!("two generated declarations are named {}", it.name));
        }
    }
    // Parse the placeholders.
    struct Place {
        pattern: String,
        hex: bool,
    }
    let mut places = Vec::new();
    for line in layout.lines() {
        if let Some(inner) = line.strip_prefix("@@ ").and_then(|l| l.strip_suffix(" @@")) {
            let mut words = inner.split_whitespace();
            let pattern = words.next().unwrap_or("").to_string();
            let hex = match words.next() {
                None => false,
                Some("hex") => true,
                Some(w) => {
                    errors.push(format!("{LAYOUT}: `{line}`: unknown option {w}"));
                    false
                }
            };
            places.push(Place { pattern, hex });
        }
    }
    // Assign each item to its place: an exact name, else the one family.
    let mut placed: Vec<Vec<usize>> = vec![Vec::new(); places.len()];
    for (k, it) in items.iter().enumerate() {
        let exact: Vec<usize> = (0..places.len())
            .filter(|&p| places[p].pattern == it.name)
            .collect();
        let family: Vec<usize> = (0..places.len())
            .filter(|&p| {
                places[p]
                    .pattern
                    .strip_suffix('*')
                    .is_some_and(|prefix| it.name.starts_with(prefix))
            })
            .collect();
        let chosen = if !exact.is_empty() { exact } else { family };
        match chosen.as_slice() {
            [p] => placed[*p].push(k),
            [] => errors.push(format!(
                "{} is generated from src/ffi but {LAYOUT} has no place for it: add `@@ {} @@` where it belongs",
                it.name, it.name
            )),
            many => errors.push(format!(
                "{} matches {} places in {LAYOUT}",
                it.name,
                many.len()
            )),
        }
    }
    for (p, ks) in placed.iter().enumerate() {
        if ks.is_empty() {
            errors.push(format!(
                "{LAYOUT}: `@@ {} @@` places no generated declaration",
                places[p].pattern
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut out = String::new();
    let mut p = 0;
    for line in layout.lines() {
        if line == "@@GENERATED@@" {
            out.push_str(NOTICE);
        } else if line.starts_with("@@ ") && line.ends_with(" @@") {
            let texts: Vec<String> = placed[p]
                .iter()
                .map(|&k| {
                    if places[p].hex {
                        hex_define(&items[k].text)
                    } else {
                        items[k].text.clone()
                    }
                })
                .collect();
            out.push_str(&texts.join("\n\n"));
            p += 1;
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    Ok(out)
}

#[test]
fn header_is_fresh() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let items = generated_items(root);
    let layout = std::fs::read_to_string(root.join(LAYOUT)).expect("read the layout");
    let generated = match compose(&layout, &items) {
        Ok(h) => h,
        Err(errors) => panic!(
            "include/libuffd.h cannot be made:\n  {}",
            errors.join("\n  ")
        ),
    };
    let path = root.join("include/libuffd.h");
    if std::env::var_os("LIBUFFD_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write include/libuffd.h");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/libuffd.h is stale: run `make header` and commit the result"
    );
}

/// The layout check itself: a declaration without a place, a place
/// without a declaration and a name placed twice are refused, exact names
/// win over families, and hex applies to integer constants only.
#[test]
fn layout_rules() {
    let item = |name: &str, text: &str| Item {
        name: name.to_string(),
        text: text.to_string(),
    };
    let items = [
        item("LIBUFFD_A_X", "#define LIBUFFD_A_X 16"),
        item("LIBUFFD_A_Y", "#define LIBUFFD_A_Y 255"),
        item("libuffd_f", "/**\n * Doc.\n */\nint libuffd_f(void);"),
    ];
    let ok = compose(
        "top\n@@ LIBUFFD_A_* hex @@\n\n@@ libuffd_f @@\nend\n",
        &items,
    )
    .unwrap();
    assert_eq!(
        ok,
        "top\n#define LIBUFFD_A_X 0x10\n\n#define LIBUFFD_A_Y 0xff\n\n/**\n * Doc.\n */\nint libuffd_f(void);\nend\n"
    );
    let exact = compose(
        "@@ LIBUFFD_A_Y @@\n@@ LIBUFFD_A_* @@\n@@ libuffd_f @@\n",
        &items,
    )
    .unwrap();
    assert!(exact.starts_with("#define LIBUFFD_A_Y 255\n#define LIBUFFD_A_X 16\n"));
    let missing = compose("@@ LIBUFFD_A_* @@\n", &items).unwrap_err();
    assert!(
        missing.iter().any(|e| e.contains("libuffd_f is generated")),
        "{missing:?}"
    );
    let empty = compose(
        "@@ LIBUFFD_A_* @@\n@@ libuffd_f @@\n@@ LIBUFFD_B_* @@\n",
        &items,
    )
    .unwrap_err();
    assert!(empty.iter().any(|e| e.contains("LIBUFFD_B_*")), "{empty:?}");
    let twice = compose(
        "@@ LIBUFFD_A_* @@\n@@ LIBUFFD_A_X* @@\n@@ libuffd_f @@\n",
        &items,
    )
    .unwrap_err();
    assert!(
        twice.iter().any(|e| e.contains("matches 2 places")),
        "{twice:?}"
    );
    assert_eq!(
        item_name("/**\n * x\n */\nconst char *libuffd_s(int32_t e);"),
        "libuffd_s"
    );
    assert_eq!(
        item_name("typedef struct libuffd_h libuffd_h;"),
        "libuffd_h"
    );
    assert_eq!(
        indent_code_blocks(
            "/**\n * Example:\n *\n * ```c\n * f(x);\n *\n *     g();\n * ```\n */\nint f(int);"
        ),
        "/**\n * Example:\n *\n *     f(x);\n *\n *         g();\n */\nint f(int);"
    );
}
