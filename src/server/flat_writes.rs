//! Accepted gRPC connections that tell the HTTP/2 stack they have no vectored writes.
//!
//! h2 writes a DATA frame whose payload is at least 256 bytes by chaining the payload to its
//! write buffer when the transport takes vectored writes, and buffers nothing more until that
//! frame is out: the reply's trailers then leave in a second `writev`, a second trip through
//! the kernel's send path for every reply over 256 bytes (a `Validate` answering a full
//! session is about 300). Told that vectored writes are not supported, h2 copies payloads of
//! up to 1 KiB into its buffer instead, and the reply goes out in one write. Copying a few
//! hundred bytes costs far less than a second system call (docs/benchmarks-history.md, the
//! round of `3e32f5a`: one write per reply).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// A TCP stream whose writes are never vectored; see the module documentation.
#[derive(Debug)]
pub struct FlatWrites(pub TcpStream);

impl AsyncRead for FlatWrites {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for FlatWrites {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        false
    }
}

impl Connected for FlatWrites {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.connect_info()
    }
}
