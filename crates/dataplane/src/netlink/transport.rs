//! The kernel edge of the rtnetlink client: one trait with two methods (send one datagram,
//! receive one datagram) so the client's framing, sequencing and error mapping run unchanged
//! against the real socket or against `fake::RecordingTransport`.

use std::io;
use std::time::Duration;

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use nix::sys::socket::{MsgFlags, setsockopt, sockopt};
use nix::sys::time::TimeVal;

use crate::error::{Error, Result};

/// Largest datagram we accept. Dumps come in datagrams of at most 32 KiB unless the receive
/// buffer offered is larger; 256 KiB leaves room and truncation is detected, not ignored.
pub(crate) const RECV_BUF: usize = 256 * 1024;

/// Replies that do not arrive within this time mean the socket is wedged; fail rather than hang
/// a CNI ADD forever.
const RECV_TIMEOUT: Duration = Duration::from_secs(10);

pub trait Transport {
    /// Send one datagram (possibly several netlink messages: one `sendmsg`).
    fn send(&mut self, datagram: &[u8]) -> io::Result<()>;
    /// Receive one datagram into `buf`, replacing its contents.
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<()>;
}

/// A NETLINK_ROUTE socket bound to the network namespace of the thread that opened it; it stays
/// bound there whichever thread uses it later.
pub struct SocketTransport {
    socket: Socket,
}

impl SocketTransport {
    /// Open in the calling thread's network namespace.
    pub fn open() -> Result<Self> {
        let err = |action| move |source| Error::Socket { action, source };
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(err("open NETLINK_ROUTE socket"))?;
        socket.bind_auto().map_err(err("bind"))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(err("connect to the kernel"))?;
        // Extended acks carry the kernel's reason ("Nexthop has invalid gateway"); capped acks
        // echo only the request header, keeping error replies small during batches.
        socket
            .set_ext_ack(true)
            .map_err(err("enable NETLINK_EXT_ACK"))?;
        socket
            .set_cap_ack(true)
            .map_err(err("enable NETLINK_CAP_ACK"))?;
        // Batches collect many replies before reading: ask for a large receive buffer
        // (FORCE works for root beyond rmem_max; otherwise the plain request is capped).
        if setsockopt(&socket, sockopt::RcvBufForce, &(4 << 20)).is_err() {
            setsockopt(&socket, sockopt::RcvBuf, &(4 << 20)).map_err(|e| Error::Socket {
                action: "set SO_RCVBUF",
                source: e.into(),
            })?;
        }
        let tv = TimeVal::new(RECV_TIMEOUT.as_secs() as _, 0);
        setsockopt(&socket, sockopt::ReceiveTimeout, &tv).map_err(|e| Error::Socket {
            action: "set SO_RCVTIMEO",
            source: e.into(),
        })?;
        Ok(SocketTransport { socket })
    }
}

impl Transport for SocketTransport {
    fn send(&mut self, datagram: &[u8]) -> io::Result<()> {
        loop {
            match self.socket.send(datagram, 0) {
                Ok(n) if n == datagram.len() => return Ok(()),
                Ok(n) => {
                    return Err(io::Error::other(format!(
                        "short netlink send: {n} of {} bytes",
                        datagram.len()
                    )));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        buf.clear();
        buf.reserve(RECV_BUF);
        loop {
            match self.socket.recv(buf, MsgFlags::MSG_TRUNC.bits()) {
                Ok(n) if n > buf.len() => {
                    return Err(io::Error::other(format!(
                        "netlink datagram of {n} bytes truncated to {}",
                        buf.len()
                    )));
                }
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}
