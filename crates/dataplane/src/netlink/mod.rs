//! Our own small synchronous rtnetlink client (no async runtime: a CNI ADD must start fast).
//!
//! Data flow: a domain request (`types`) → `messages` builds a `RouteNetlinkMessage` → `Netlink`
//! frames it with a sequence number and flags → `Transport::send` (one datagram; several messages
//! for batches) → `Transport::recv` datagrams are split into messages → ACK, `NLMSG_ERROR`
//! (errno + the kernel's extended-ack text) or data, matched to the request by sequence number →
//! `Error` naming the object, or domain values for listings.

pub mod l2;
pub mod messages;
pub mod transport;
pub mod types;

#[cfg(test)]
mod tests;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_EXCL,
    NLM_F_REPLACE, NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use nix::errno::Errno;

use crate::error::{Error, Result};
use crate::netns::NetNs;
pub use transport::{SocketTransport, Transport};

/// Batches are cut into datagrams of at most this size (the kernel reads one skb per sendmsg).
const BATCH_BYTES: usize = 64 * 1024;
/// Upper bound on datagrams read for one request, so a confused peer cannot loop us forever.
const MAX_DATAGRAMS: usize = 1 << 20;

/// What came back for one of our messages.
#[derive(Debug)]
enum Reply {
    Ack,
    Error {
        errno: Errno,
        ext: Option<String>,
    },
    Done,
    /// A data message; `true` when the kernel flagged the dump as interrupted (NLM_F_DUMP_INTR:
    /// the table changed while it was being dumped, so the listing may be inconsistent).
    Data(RouteNetlinkMessage, bool),
}

/// One failed element of a batch: its index in the input and the kernel's error.
#[derive(Debug)]
pub struct BatchFailure {
    pub index: usize,
    pub error: Error,
}

/// The rtnetlink client over a transport (the real socket unless a test says otherwise).
pub struct Netlink<T: Transport = SocketTransport> {
    transport: T,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink<SocketTransport> {
    /// A client for the calling thread's network namespace.
    pub fn open() -> Result<Self> {
        Ok(Netlink::with_transport(SocketTransport::open()?))
    }

    /// A client for `ns`: the socket is opened on a helper thread inside `ns` and stays bound to
    /// it, so this client can be used from any thread without entering the namespace again.
    pub fn open_in(ns: &NetNs) -> Result<Self> {
        ns.run(SocketTransport::open)?.map(Netlink::with_transport)
    }
}

impl<T: Transport> Netlink<T> {
    pub fn with_transport(transport: T) -> Self {
        Netlink {
            transport,
            seq: 0,
            buf: Vec::new(),
        }
    }

    pub fn transport(&self) -> &T {
        &self.transport
    }

    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    /// Append `msg` with `flags` to `out`; returns its sequence number.
    fn frame(&mut self, msg: RouteNetlinkMessage, flags: u16, out: &mut Vec<u8>) -> u32 {
        let seq = self.next_seq();
        let mut header = NetlinkHeader::default();
        header.flags = flags | NLM_F_REQUEST;
        header.sequence_number = seq;
        let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        nl.finalize();
        let start = out.len();
        out.resize(start + nl.buffer_len(), 0);
        nl.serialize(&mut out[start..]);
        seq
    }

    fn send(&mut self, datagram: &[u8]) -> Result<()> {
        self.transport
            .send(datagram)
            .map_err(|source| Error::Socket {
                action: "send",
                source,
            })
    }

    /// Read replies until `on_reply` says the exchange is complete. Replies to other sequence
    /// numbers (left over from an earlier, abandoned exchange) are skipped by the callback.
    fn receive(
        &mut self,
        action: &'static str,
        object: &dyn Fn() -> String,
        mut on_reply: impl FnMut(u32, Reply) -> Result<bool>,
    ) -> Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        let result = (|| {
            for _ in 0..MAX_DATAGRAMS {
                self.transport
                    .recv(&mut buf)
                    .map_err(|source| Error::Socket {
                        action: "receive",
                        source,
                    })?;
                let mut offset = 0;
                while offset < buf.len() {
                    let raw = &buf[offset..];
                    let len = NetlinkBuffer::new_checked(raw)
                        .map(|b| b.length() as usize)
                        .map_err(|e| decode_err(action, object(), e))?;
                    if len < 16 || len > raw.len() {
                        return Err(decode_err(action, object(), "bad message length"));
                    }
                    let (seq, reply) =
                        parse_reply(&raw[..len]).map_err(|e| decode_err(action, object(), e))?;
                    offset += (len + 3) & !3;
                    if on_reply(seq, reply)? {
                        return Ok(());
                    }
                }
            }
            Err(decode_err(
                action,
                object(),
                "no end of reply after too many datagrams",
            ))
        })();
        self.buf = buf;
        result
    }

    /// Send one request and wait for its ACK.
    pub(crate) fn ack_request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        action: &'static str,
        object: &dyn Fn() -> String,
    ) -> Result<()> {
        let mut out = Vec::new();
        let seq = self.frame(msg, flags | NLM_F_ACK, &mut out);
        self.send(&out)?;
        self.receive(action, object, |s, reply| {
            if s != seq {
                return Ok(false);
            }
            match reply {
                Reply::Ack => Ok(true),
                Reply::Error { errno, ext } => Err(Error::Kernel {
                    action,
                    object: object(),
                    errno,
                    ext,
                }),
                Reply::Done | Reply::Data(..) => Ok(false),
            }
        })
    }

    /// Send a GET (`dump` = NLM_F_DUMP) and collect the data messages it returns. A dump the
    /// kernel marks as interrupted (the table changed meanwhile) is repeated, a few times at most.
    pub(crate) fn get(
        &mut self,
        msg: RouteNetlinkMessage,
        dump: bool,
        action: &'static str,
        object: &dyn Fn() -> String,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        const DUMP_ATTEMPTS: usize = 5;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (data, interrupted) = self.get_once(msg.clone(), dump, action, object)?;
            if !interrupted || attempt >= DUMP_ATTEMPTS {
                return Ok(data);
            }
        }
    }

    fn get_once(
        &mut self,
        msg: RouteNetlinkMessage,
        dump: bool,
        action: &'static str,
        object: &dyn Fn() -> String,
    ) -> Result<(Vec<RouteNetlinkMessage>, bool)> {
        let mut out = Vec::new();
        let flags = if dump { NLM_F_DUMP } else { NLM_F_ACK };
        let seq = self.frame(msg, flags, &mut out);
        self.send(&out)?;
        let mut data = Vec::new();
        let mut interrupted = false;
        self.receive(action, object, |s, reply| {
            if s != seq {
                return Ok(false);
            }
            match reply {
                Reply::Ack | Reply::Done => Ok(true),
                Reply::Error { errno, ext } => Err(Error::Kernel {
                    action,
                    object: object(),
                    errno,
                    ext,
                }),
                Reply::Data(m, intr) => {
                    interrupted |= intr;
                    data.push(m);
                    Ok(false)
                }
            }
        })?;
        Ok((data, interrupted))
    }

    /// Apply route changes in as few `sendmsg` calls as fit in 64 KiB datagrams. Only the last
    /// message of each datagram asks for an ACK; the kernel reports every failure anyway and
    /// processes messages in order, so that ACK (or its error) marks the datagram complete.
    /// Failures come back per element; `Err` means the socket itself failed.
    pub fn apply_routes(&mut self, changes: &[types::RouteChange]) -> Result<Vec<BatchFailure>> {
        let mut failures = Vec::new();
        let mut index = 0;
        while index < changes.len() {
            let first = index;
            let mut out = Vec::with_capacity(BATCH_BYTES);
            let mut seqs = Vec::new();
            while index < changes.len() {
                let (msg, flags) = route_change_message(&changes[index]);
                let last = index + 1 == changes.len();
                let mut framed = Vec::new();
                let seq = self.frame(msg, flags, &mut framed);
                if !out.is_empty() && out.len() + framed.len() > BATCH_BYTES {
                    // Re-frame as the next datagram's first message (sequence numbers only
                    // need to be unique and increasing).
                    break;
                }
                out.extend_from_slice(&framed);
                seqs.push(seq);
                index += 1;
                if last {
                    break;
                }
            }
            // Set NLM_F_ACK on the datagram's last message in place (flags at byte 6..8).
            let last_start = last_message_start(&out);
            let flags = u16::from_ne_bytes([out[last_start + 6], out[last_start + 7]]) | NLM_F_ACK;
            out[last_start + 6..last_start + 8].copy_from_slice(&flags.to_ne_bytes());
            let last_seq = *seqs.last().unwrap_or(&0);
            self.send(&out)?;
            let object = || format!("batch of {} route changes", seqs.len());
            self.receive("apply routes", &object, |s, reply| {
                let Some(pos) = seqs.iter().position(|&q| q == s) else {
                    return Ok(false);
                };
                if let Reply::Error { errno, ext } = reply {
                    let change = &changes[first + pos];
                    failures.push(BatchFailure {
                        index: first + pos,
                        error: Error::Kernel {
                            action: change_action(change),
                            object: format!("route {}", change.route()),
                            errno,
                            ext,
                        },
                    });
                }
                Ok(s == last_seq)
            })?;
        }
        Ok(failures)
    }
}

fn last_message_start(out: &[u8]) -> usize {
    let mut offset = 0;
    let mut last = 0;
    while offset + 4 <= out.len() {
        last = offset;
        let len = u32::from_ne_bytes([
            out[offset],
            out[offset + 1],
            out[offset + 2],
            out[offset + 3],
        ]);
        offset += ((len as usize) + 3) & !3;
    }
    last
}

pub(crate) fn change_action(change: &types::RouteChange) -> &'static str {
    match change {
        types::RouteChange::Add(_) => "add",
        types::RouteChange::Replace(_) => "replace",
        types::RouteChange::Delete(_) => "delete",
    }
}

pub(crate) fn route_change_message(change: &types::RouteChange) -> (RouteNetlinkMessage, u16) {
    match change {
        types::RouteChange::Add(r) => (
            RouteNetlinkMessage::NewRoute(messages::route(r, false)),
            NLM_F_CREATE | NLM_F_EXCL,
        ),
        types::RouteChange::Replace(r) => (
            RouteNetlinkMessage::NewRoute(messages::route(r, false)),
            NLM_F_CREATE | NLM_F_REPLACE,
        ),
        types::RouteChange::Delete(r) => {
            (RouteNetlinkMessage::DelRoute(messages::route(r, true)), 0)
        }
    }
}

fn decode_err(action: &'static str, object: String, e: impl std::fmt::Display) -> Error {
    Error::Decode {
        action,
        object,
        detail: e.to_string(),
    }
}

/// NLMSGERR_ATTR_MSG: the extended-ack text.
const NLMSGERR_ATTR_MSG: u16 = 1;

/// Parse one complete netlink message into its sequence number and what it means for us.
fn parse_reply(raw: &[u8]) -> std::result::Result<(u32, Reply), String> {
    let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(raw).map_err(|e| e.to_string())?;
    let seq = msg.header.sequence_number;
    let reply = match msg.payload {
        NetlinkPayload::Error(e) => match e.code {
            None => Reply::Ack,
            Some(code) => Reply::Error {
                errno: Errno::from_raw(code.get().abs()),
                ext: extack_message(raw, msg.header.flags),
            },
        },
        NetlinkPayload::Done(_) => Reply::Done,
        NetlinkPayload::InnerMessage(m) => Reply::Data(m, msg.header.flags & NLM_F_DUMP_INTR != 0),
        NetlinkPayload::Noop | NetlinkPayload::Overrun(_) => return Ok((0, Reply::Done)),
        _ => return Err("unknown netlink payload".into()),
    };
    Ok((seq, reply))
}

/// The extended-ack message of an NLMSG_ERROR: after the outer header (16), the errno (4) and
/// the echoed request (its header only when capped), TLVs follow when NLM_F_ACK_TLVS is set.
fn extack_message(raw: &[u8], flags: u16) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let echoed = raw
        .get(20..24)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))?;
    let echoed_len = if flags & NLM_F_CAPPED != 0 {
        16
    } else {
        echoed as usize
    };
    let mut offset = 20 + ((echoed_len + 3) & !3);
    while let Some(tlv) = raw.get(offset..offset + 4) {
        let len = u16::from_ne_bytes([tlv[0], tlv[1]]) as usize;
        let kind = u16::from_ne_bytes([tlv[2], tlv[3]]) & 0x3fff;
        if len < 4 {
            return None;
        }
        let value = raw.get(offset + 4..offset + len)?;
        if kind == NLMSGERR_ATTR_MSG {
            let text = value.split(|&b| b == 0).next().unwrap_or_default();
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        offset += (len + 3) & !3;
    }
    None
}
