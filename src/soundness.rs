// SPDX-License-Identifier: MIT OR Apache-2.0
//! The soundness fixes of the Rust API, pinned: each `compile_fail`
//! example below is a program that compiled before and must not compile
//! now, next to a twin that does compile, which shows that the failing one
//! fails for the reason named and nothing else. Compiled by `cargo test
//! --doc` only (`cfg(doctest)`); not part of the API.

/// The raw kernel layer is private: no safe `take_fork_fd(raw)` that
/// would own (and close) any descriptor number.
///
/// ```compile_fail,E0603
/// let fd = uffd::sys::read::take_fork_fd(0); // private module
/// ```
///
/// Nor is the C ABI reachable as Rust API (its functions are exported by
/// symbol only).
///
/// ```compile_fail,E0603
/// let v = uffd::ffi::version::libuffd_version();
/// ```
///
/// ```
/// // The twin: the public crate is the safe core and the monitor.
/// let _ = uffd::probe;
/// let _ = uffd::monitor::Config::default();
/// ```
pub struct PrivateLayers;

/// A message is decoded once: `Msg` is not `Clone`, so a FORK message
/// cannot be decoded twice into two owners of one descriptor, and the
/// decoded `Event::Fork` owns it (an `OwnedFd`: not `Clone` either).
///
/// ```compile_fail,E0599
/// let m = uffd::Msg::default();
/// let twice = m.clone();
/// ```
///
/// ```compile_fail,E0599
/// fn dup(e: &uffd::Event) -> uffd::Event {
///     e.clone()
/// }
/// ```
///
/// ```
/// // The twin: a message is taken, once; decoding it again gives None.
/// let mut m = uffd::Msg::default();
/// let _first: Option<uffd::Event> = m.take_event(uffd::Features::empty());
/// assert!(m.take_event(uffd::Features::empty()).is_none());
/// ```
pub struct MsgOwnedOnce;

/// The operations that place, move or poison memory are `unsafe fn`: safe
/// code cannot move a page out from under a live `&[u8]`, poison a live
/// `Vec`, or overwrite memory Rust believes it knows.
///
/// ```compile_fail,E0133
/// # use uffd::*;
/// fn f(u: &Uffd, r: Range, src: &[u8]) {
///     let _ = u.copy(r, src.as_ptr(), CopyMode::empty());
/// }
/// ```
///
/// ```compile_fail,E0133
/// # use uffd::*;
/// fn f(u: &Uffd, dst: u64, src: &[u8]) {
///     let _ = u.copy_from_slice(dst, src, CopyMode::empty());
/// }
/// ```
///
/// ```compile_fail,E0133
/// # use uffd::*;
/// fn f(u: &Uffd, r: Range) {
///     let _ = u.zeropage(r, ZeropageMode::empty());
/// }
/// ```
///
/// ```compile_fail,E0133
/// # use uffd::*;
/// fn f(u: &Uffd, r: Range) {
///     let _ = u.continue_range(r, ContinueMode::empty());
/// }
/// ```
///
/// ```compile_fail,E0133
/// # use uffd::*;
/// fn f(u: &Uffd, v: &Vec<u8>) {
///     let _ = u.poison(Range::of_ptr(v.as_ptr(), v.len()), PoisonMode::empty());
/// }
/// ```
///
/// ```compile_fail,E0133
/// # use uffd::*;
/// fn f(u: &Uffd, dst: Range, live: &[u8]) {
///     let _ = u.move_pages(dst, live.as_ptr() as u64, MoveMode::empty());
/// }
/// ```
///
/// ```
/// // The twin: the same calls compile with the caller taking the contract.
/// # use uffd::*;
/// #[allow(unused_unsafe)]
/// fn f(u: &Uffd, r: Range, src: &[u8]) {
///     // SAFETY (of this example, never run): the caller keeps Rust
///     // values out of `r`.
///     unsafe {
///         let _ = u.copy(r, src.as_ptr(), CopyMode::empty());
///         let _ = u.copy_from_slice(r.start, src, CopyMode::empty());
///         let _ = u.zeropage(r, ZeropageMode::empty());
///         let _ = u.continue_range(r, ContinueMode::empty());
///         let _ = u.poison(r, PoisonMode::empty());
///         let _ = u.move_pages(r, src.as_ptr() as u64, MoveMode::empty());
///     }
///     // Registration, wake and write protection change no byte: safe.
///     let _ = u.register(r, RegisterMode::MISSING);
///     let _ = u.writeprotect(r, WriteprotectMode::WP);
///     let _ = u.wake(r);
///     let _ = u.unregister(r);
/// }
/// ```
pub struct FillsAreUnsafe;

/// Modes are per-operation flag types, not a `u64` any operation takes:
/// a COPY mode cannot go to WRITEPROTECT, nor a raw number anywhere.
///
/// ```compile_fail,E0308
/// # use uffd::*;
/// fn f(u: &Uffd, r: Range) {
///     let _ = u.writeprotect(r, CopyMode::WP);
/// }
/// ```
///
/// ```compile_fail,E0308
/// # use uffd::*;
/// fn f(u: &Uffd, r: Range) {
///     let _ = u.writeprotect(r, 1);
/// }
/// ```
///
/// ```compile_fail,E0061
/// # use uffd::*;
/// fn f(u: &Uffd, start: u64, len: u64) {
///     // Addresses are a Range, not positional numbers.
///     let _ = u.register(start, len, RegisterMode::MISSING);
/// }
/// ```
///
/// ```
/// // The twin.
/// # use uffd::*;
/// fn f(u: &Uffd, start: u64, len: u64) {
///     let _ = u.writeprotect(Range::new(start, len), WriteprotectMode::WP);
///     let _ = u.register(Range::new(start, len), RegisterMode::MISSING);
/// }
/// ```
pub struct TypedModesAndRanges;

/// The monitor changes memory only where it was handed over: a
/// [`HandedOver`](crate::HandedOver) range, which only `unsafe` code can
/// make. A live `Vec` cannot become a region, nor the source of a move.
///
/// ```compile_fail,E0308
/// # use uffd::{monitor::*, Range};
/// fn f(m: &Monitor, v: &Vec<u8>) {
///     let _ = m.add_region(0, Range::of_ptr(v.as_ptr(), v.len()), RegionOptions::default());
/// }
/// ```
///
/// ```compile_fail,E0133
/// # use uffd::{monitor::*, HandedOver, Range};
/// fn f(m: &Monitor, v: &Vec<u8>) {
///     let h = HandedOver::new(Range::of_ptr(v.as_ptr(), v.len()));
///     let _ = m.add_region(0, h, RegionOptions::default());
/// }
/// ```
///
/// ```compile_fail,E0308
/// # use uffd::monitor::*;
/// fn f(ctx: &FaultCtx<'_>, live: &[u8]) {
///     let _ = ctx.resolve(Action::Move(live.as_ptr() as u64));
/// }
/// ```
///
/// ```
/// // The twin: with the caller's promise.
/// # use uffd::{monitor::*, HandedOver, Range};
/// fn f(m: &Monitor, ctx: &FaultCtx<'_>, start: u64, len: u64) {
///     // SAFETY (of this example, never run): the caller keeps Rust
///     // values out of the range.
///     let h = unsafe { HandedOver::new(Range::new(start, len)) };
///     let _ = m.add_region(0, h, RegionOptions::default());
///     let _ = ctx.resolve(Action::Move(h));
/// }
/// ```
pub struct MonitorTakesHandedOver;
