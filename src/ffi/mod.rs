// SPDX-License-Identifier: MIT OR Apache-2.0
//! The C ABI of libuffd (`include/libuffd.h`, generated from this module by
//! cbindgen).
//!
//! Conventions, for every exported function:
//! - functions are `libuffd_*`; macros and constants `LIBUFFD_*`; nothing
//!   collides with `<linux/userfaultfd.h>`;
//! - success is 0 or a non-negative count, failure `-errno` (errno is set
//!   too); `libuffd_last_error()` gives the detail;
//! - NULL handles and pointers are -EINVAL, never a crash; a Rust panic is
//!   caught and returned as -ENOTRECOVERABLE, and poisons the handle;
//! - out-parameters are written only on success;
//! - option structs start with `size_t sz` so later versions can grow;
//! - thread cancellation: libuffd_read_events, libuffd_monitor_run and
//!   libuffd_monitor_wait are cancellation points (`extern "C-unwind"`,
//!   waiting outside the guard: crate::sys::cancel); everything else runs
//!   behind the guard with cancellation disabled.
#![allow(unsafe_code)]
#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)]

mod boundary;
mod consts_check;
pub mod dirty_api;
pub mod error_api;
pub mod event_api;
mod ext;
mod handle;
pub mod handle_api;
pub mod handoff_api;
pub mod monitor_api;
pub mod ops_api;
pub mod remote_api;
pub mod snapshot_api;
// The header's constants and types (cbindgen reads them here); the
// constants libuffd's own Rust code does not use are for C only.
#[allow(dead_code)]
pub mod types;
pub mod version;
