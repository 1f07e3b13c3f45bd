// SPDX-License-Identifier: MIT OR Apache-2.0
//! libuffd: Linux userfaultfd, safely, for Rust and (through `libuffd.so.1`
//! and `include/libuffd.h`) for C and C++.
//!
//! Two levels:
//! - the core, at the crate root: a [`Uffd`] (one userfaultfd, created and
//!   negotiated), its registration and resolving operations, and its
//!   messages ([`Msg`], decoded once into an [`Event`]);
//! - [`monitor`]: a fault-handling engine that serves registered regions
//!   from a page source on its own threads.
//!
//! The operations that place, move or poison memory ([`Uffd::copy`],
//! [`Uffd::zeropage`], [`Uffd::continue_range`], [`Uffd::poison`],
//! [`Uffd::move_pages`]) are `unsafe fn`: the kernel changes memory
//! behind the compiler's back, so no Rust value may live there (each
//! states its contract under "Safety"). Everything else is safe.
//!
//! Every refusal carries the kernel's own errno ([`Error::errno`]), and a
//! text that says why ([`Error`]'s `Display`).
//!
//! ```
//! use std::sync::Arc;
//! use uffd::{CopyMode, Event, Features, Msg, OpenFlags, OpenOptions, Range, RegisterMode, Uffd};
//!
//! let uffd = Uffd::open(&OpenOptions {
//!     flags: OpenFlags::USER_ONLY | OpenFlags::NONBLOCK,
//!     features: Features::empty(),
//!     required: Features::empty(),
//! })?;
//! // Memory for userfaultfd only, reached through raw pointers.
//! let page = 4096;
//! // SAFETY: a fresh anonymous mapping; no Rust value lives in it.
//! let mem = unsafe {
//!     libc::mmap(std::ptr::null_mut(), page, libc::PROT_READ | libc::PROT_WRITE,
//!                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
//! };
//! assert_ne!(mem, libc::MAP_FAILED);
//! let range = Range::of_ptr(mem, page);
//! uffd.register(range, RegisterMode::MISSING)?;
//!
//! // A thread touches the page and blocks until it is filled.
//! let addr = range.start as usize;
//! // SAFETY: the page is mapped until the thread is joined below.
//! let reader = std::thread::spawn(move || unsafe { *(addr as *const u8).add(10) });
//!
//! let mut msgs = [Msg::default()];
//! assert_eq!(uffd.read_msgs(&mut msgs, 5000)?, 1);
//! let Some(Event::Pagefault(fault)) = msgs[0].take_event(uffd.features()) else {
//!     panic!("expected a fault");
//! };
//! assert_eq!(fault.address, range.start);
//! let data = vec![7u8; page];
//! // SAFETY: only the mapping above is filled, and no Rust value lives in it.
//! let done = unsafe { uffd.copy_from_slice(fault.address, &data, CopyMode::empty())? };
//! assert!(done.is_complete());
//! assert_eq!(reader.join().unwrap(), 7);
//! // SAFETY: the mapping made above, no longer used.
//! unsafe { libc::munmap(mem, page) };
//! # Ok::<(), uffd::Error>(())
//! ```
//!
//! Layers: `sys` is the raw kernel interface, `uffd` the safe core
//! (re-exported here), `monitor` the engine, `ffi` the C ABI (its
//! functions are exported by symbol; the modules are private). Only `sys`
//! and `ffi` may contain `unsafe` blocks; the core declares its `unsafe
//! fn`s and nothing more.
#![warn(missing_docs)]
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod ffi;
pub mod handoff;
pub mod monitor;
#[cfg(doctest)]
mod soundness;
mod sys;
mod uffd;

pub use uffd::*;
