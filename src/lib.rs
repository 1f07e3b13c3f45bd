// SPDX-License-Identifier: MIT OR Apache-2.0
//! libuffd: Linux userfaultfd, safely, for Rust and (through `libuffd.so.1`
//! and `include/libuffd.h`) for C and C++.
//!
//! Layers: `sys` is the raw kernel interface, `uffd` the safe core, `ffi`
//! the C ABI. Only `sys` and `ffi` may contain `unsafe`.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod ffi;
pub mod monitor;
pub mod sys;
mod uffd;

pub use uffd::*;
