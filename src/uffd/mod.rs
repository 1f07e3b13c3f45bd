// SPDX-License-Identifier: MIT OR Apache-2.0
//! The safe core: one userfaultfd (`Uffd`), its operations and events.
//! No `unsafe` here but the declarations of the operations that place,
//! move or poison memory (`unsafe fn`, their contract the caller's);
//! everything that touches the kernel goes through `crate::sys`.

mod diagnose;
mod error;
mod event;
mod features;
mod handle;
mod mappings;
mod ops;
pub(crate) mod quiet;
mod range;

pub use error::{Call, Error, Op, Result};
pub use event::{Event, Fault, Msg};
pub use features::{
    feature_names, ContinueMode, CopyMode, FaultFlags, Features, Ioctls, MoveMode, PoisonMode,
    RegisterMode, WriteprotectMode, ZeropageMode,
};
pub use handle::{probe, OpenFlags, OpenOptions, Probe, Uffd, DEV_PATH};
pub use mappings::{mapping_at, page_size_at, page_size_in, Mapping};
pub use ops::Progress;
pub use range::{HandedOver, Range};

pub(crate) use error::errno_text;
pub(crate) use range::check_range;
