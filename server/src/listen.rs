//! Listening sockets: one per serving core, all bound to the same address with
//! `SO_REUSEPORT`, so the kernel spreads new connections across cores and no core ever
//! touches another's accept queue.

use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Binds a non-blocking listener with `SO_REUSEPORT` (and `SO_REUSEADDR`).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// The listeners for `cores` cores: `first` (bound by the caller, e.g. on port 0) and
/// `cores - 1` more on its address.
pub fn per_core(first: TcpListener, cores: usize) -> std::io::Result<Vec<TcpListener>> {
    let addr = first.local_addr()?;
    first.set_nonblocking(true)?;
    let mut all = vec![first];
    for _ in 1..cores {
        all.push(bind(addr)?);
    }
    Ok(all)
}
