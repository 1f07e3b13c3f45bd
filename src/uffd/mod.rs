// SPDX-License-Identifier: MIT OR Apache-2.0
//! The safe core: one userfaultfd (`Uffd`), its operations and events.
//! No `unsafe` here; everything that touches the kernel goes through
//! `crate::sys`.

mod diagnose;
pub mod error;
pub mod event;
pub mod features;
pub mod handle;
pub mod mappings;
pub mod ops;
pub mod quiet;
pub mod range;

pub use error::{Call, Error, Op, Result};
pub use event::{Event, Fault, Msg};
pub use features::{FaultFlags, Features, Ioctls, RegisterMode};
pub use handle::{create_fd, probe, OpenFlags, OpenOptions, Probe, Uffd};
pub use ops::Progress;
