// SPDX-License-Identifier: MIT OR Apache-2.0
//! The C ABI of remote page sources: the server side
//! (libuffd_page_server_serve); the client side is a region source,
//! LIBUFFD_SOURCE_REMOTE.

use super::boundary::guard;
use crate::monitor::serve_pages;
use crate::sys::wait::borrow_fd;
use crate::uffd::Error;

/// Serve pages of file_fd to a LIBUFFD_SOURCE_REMOTE region at the other
/// end of the connected socket sock, until the client closes the
/// connection: a page server in a few lines (a thread or process per
/// connection).
///
/// Protocol (little-endian): a request is 24 bytes, magic 0x52504655,
/// length (u32), id (u64), file offset (u64); the reply is a 24-byte
/// header, magic 0x53504655, status (i32: 0 or a positive errno), the
/// request's id (u64), the length of the data that follows (u32: the
/// request's, or 0 on error) and 4 zero bytes, then the data. A request
/// past the file's end is answered ENODATA, one longer than 4 MiB EINVAL,
/// a read error with its errno. Each reply is one send(2), header and
/// data together; on a TCP socket TCP_NODELAY is set first (a reply must
/// not wait for the client's delayed ACK of the previous one).
///
/// Thread safety: any thread; one server per connection.
///
/// Returns: the number of requests answered (>= 0, saturated at
/// INT32_MAX) when the client closed, or -EINVAL (negative descriptor),
/// -EPROTO (a request that is not of this protocol: the service ends), or
/// recv/send's errno.
///
/// Pointers: none.
#[no_mangle]
pub unsafe extern "C" fn libuffd_page_server_serve(sock: i32, file_fd: i32) -> i32 {
    guard("libuffd_page_server_serve", || {
        if sock < 0 || file_fd < 0 {
            return Err(Error::invalid(format!(
                "libuffd_page_server_serve: negative descriptor (sock {sock}, file_fd {file_fd})"
            )));
        }
        let n = serve_pages(borrow_fd(sock), borrow_fd(file_fd))?;
        Ok(n.min(i32::MAX as u64) as i32)
    })
}
