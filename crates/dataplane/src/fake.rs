//! Recording fakes for the kernel edge (youki's pattern): they record what would have been done
//! and replay answers, so callers' logic (CNI ADD/DEL ordering, rollback) is tested without
//! root. `RecordingRtnl` keeps a tiny model of links, addresses and routes so lookups after
//! creation behave; `RecordingTransport` works at the byte level for the client's own tests.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::path::PathBuf;

use netlink_packet_core::{
    ErrorMessage, NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_MULTIPART, NetlinkBuffer,
    NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use nix::errno::Errno;

use crate::error::{Error, Result};
use crate::netlink::l2::{FdbEntry, Neighbour, VxlanLink, VxlanSpec};
use crate::netlink::types::{
    Address, Family, Link, LinkChange, Route, RouteChange, RouteFilter, VethEnd, VethSpec,
};
use crate::netlink::{BatchFailure, Transport, change_action};
use crate::rtnl::Rtnl;
use crate::sysctl::{Sysctl, SysctlKey};

/// A mutating call seen by `RecordingRtnl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    CreateVeth {
        host: VethEnd,
        peer: VethEnd,
        peer_netns: Option<PathBuf>,
    },
    SetLink {
        index: u32,
        change: LinkChange,
    },
    DeleteLink(String),
    AddAddress(Address),
    DeleteAddress(Address),
    AddRoute(Route),
    ReplaceRoute(Route),
    DeleteRoute(Route),
    CreateVxlan(VxlanSpec),
    CreateIpip(String),
    AddNeighbour(Neighbour),
    ReplaceNeighbour(Neighbour),
    DeleteNeighbour(Neighbour),
    ReplaceFdb(FdbEntry),
    DeleteFdb(FdbEntry),
}

type FailRule = (Box<dyn Fn(&Call) -> bool + Send>, Errno);

/// Records mutating calls, keeps a small model of the resulting state, fails on request.
#[derive(Default)]
pub struct RecordingRtnl {
    pub calls: Vec<Call>,
    pub links: Vec<Link>,
    pub addresses: Vec<Address>,
    pub routes: Vec<Route>,
    /// VXLAN attributes of links created by `create_vxlan` (the link itself is in `links`).
    pub vxlans: Vec<VxlanLink>,
    pub neighbours: Vec<Neighbour>,
    pub fdb: Vec<FdbEntry>,
    /// Every `apply_routes` call's input, so tests can check what went in one batch.
    pub batches: Vec<Vec<RouteChange>>,
    fail: Vec<FailRule>,
    next_index: u32,
}

impl RecordingRtnl {
    pub fn new() -> Self {
        RecordingRtnl {
            next_index: 100,
            ..Default::default()
        }
    }

    /// A fake host with these links (index, name), each up with MTU 1500.
    pub fn with_links(links: &[(u32, &str)]) -> Self {
        let mut rtnl = RecordingRtnl::new();
        for (index, name) in links {
            rtnl.links.push(Link {
                index: *index,
                name: (*name).to_string(),
                mtu: Some(1500),
                mac: None,
                up: true,
                kind: None,
            });
        }
        rtnl
    }

    /// Make every call matching `pred` fail with `errno` (the call is still recorded).
    pub fn fail_when(&mut self, pred: impl Fn(&Call) -> bool + Send + 'static, errno: Errno) {
        self.fail.push((Box::new(pred), errno));
    }

    fn record(&mut self, call: Call, object: String) -> Result<()> {
        let failed = self.fail.iter().find(|(p, _)| p(&call)).map(|(_, e)| *e);
        self.calls.push(call);
        match failed {
            Some(errno) => Err(Error::Kernel {
                action: "fake",
                object,
                errno,
                ext: None,
            }),
            None => Ok(()),
        }
    }

    fn kernel(object: String, errno: Errno) -> Error {
        Error::Kernel {
            action: "fake",
            object,
            errno,
            ext: None,
        }
    }

    fn add_link(&mut self, end: &VethEnd) {
        self.next_index += 1;
        self.links.push(Link {
            index: self.next_index,
            name: end.name.clone(),
            mtu: end.mtu,
            mac: end.mac.map(|m| m.to_vec()),
            up: end.up,
            kind: Some("veth".into()),
        });
    }
}

impl Rtnl for RecordingRtnl {
    fn create_veth(&mut self, spec: &VethSpec<'_>) -> Result<()> {
        let call = Call::CreateVeth {
            host: spec.host.clone(),
            peer: spec.peer.clone(),
            peer_netns: spec.peer_netns.map(|ns| ns.path().to_path_buf()),
        };
        self.record(call, format!("veth {}", spec.host.name))?;
        if self.links.iter().any(|l| l.name == spec.host.name) {
            return Err(Self::kernel(
                format!("veth {}", spec.host.name),
                Errno::EEXIST,
            ));
        }
        self.add_link(&spec.host);
        if spec.peer_netns.is_none() {
            self.add_link(&spec.peer);
        }
        Ok(())
    }

    fn link_by_name(&mut self, name: &str) -> Result<Option<Link>> {
        Ok(self.links.iter().find(|l| l.name == name).cloned())
    }

    fn links(&mut self) -> Result<Vec<Link>> {
        Ok(self.links.clone())
    }

    fn set_link(&mut self, index: u32, change: &LinkChange) -> Result<()> {
        self.record(
            Call::SetLink {
                index,
                change: change.clone(),
            },
            format!("link #{index}"),
        )?;
        let link = self
            .links
            .iter_mut()
            .find(|l| l.index == index)
            .ok_or_else(|| Self::kernel(format!("link #{index}"), Errno::ENODEV))?;
        if let Some(mtu) = change.mtu {
            link.mtu = Some(mtu);
        }
        if let Some(mac) = change.mac {
            link.mac = Some(mac.to_vec());
        }
        if let Some(up) = change.up {
            link.up = up;
        }
        Ok(())
    }

    fn delete_link(&mut self, name: &str) -> Result<()> {
        self.record(Call::DeleteLink(name.into()), format!("link {name}"))?;
        let Some(pos) = self.links.iter().position(|l| l.name == name) else {
            return Err(Self::kernel(format!("link {name}"), Errno::ENODEV));
        };
        let index = self.links.remove(pos).index;
        self.vxlans.retain(|v| v.link.index != index);
        self.neighbours.retain(|n| n.index != index);
        self.fdb.retain(|f| f.index != index);
        self.addresses.retain(|a| a.index != index);
        self.routes.retain(|r| r.oif != Some(index));
        Ok(())
    }

    fn add_address(&mut self, addr: &Address) -> Result<()> {
        let object = format!("address {}", addr.net);
        self.record(Call::AddAddress(addr.clone()), object.clone())?;
        if self
            .addresses
            .iter()
            .any(|a| a.index == addr.index && a.net == addr.net)
        {
            return Err(Self::kernel(object, Errno::EEXIST));
        }
        self.addresses.push(addr.clone());
        Ok(())
    }

    fn delete_address(&mut self, addr: &Address) -> Result<()> {
        let object = format!("address {}", addr.net);
        self.record(Call::DeleteAddress(addr.clone()), object.clone())?;
        let before = self.addresses.len();
        self.addresses
            .retain(|a| !(a.index == addr.index && a.net == addr.net));
        if before == self.addresses.len() {
            return Err(Self::kernel(object, Errno::EADDRNOTAVAIL));
        }
        Ok(())
    }

    fn addresses(&mut self, family: Family, index: Option<u32>) -> Result<Vec<Address>> {
        Ok(self
            .addresses
            .iter()
            .filter(|a| (family == Family::V4) == a.net.addr().is_ipv4())
            .filter(|a| index.is_none_or(|i| a.index == i))
            .cloned()
            .collect())
    }

    fn add_route(&mut self, route: &Route) -> Result<()> {
        self.record(Call::AddRoute(route.clone()), format!("route {route}"))?;
        if self.routes.iter().any(|r| same_key(r, route)) {
            return Err(Self::kernel(format!("route {route}"), Errno::EEXIST));
        }
        self.routes.push(route.clone());
        Ok(())
    }

    fn replace_route(&mut self, route: &Route) -> Result<()> {
        self.record(Call::ReplaceRoute(route.clone()), format!("route {route}"))?;
        self.routes.retain(|r| !same_key(r, route));
        self.routes.push(route.clone());
        Ok(())
    }

    fn delete_route(&mut self, route: &Route) -> Result<()> {
        self.record(Call::DeleteRoute(route.clone()), format!("route {route}"))?;
        let before = self.routes.len();
        self.routes.retain(|r| !same_key(r, route));
        if before == self.routes.len() {
            return Err(Self::kernel(format!("route {route}"), Errno::ESRCH));
        }
        Ok(())
    }

    fn routes(&mut self, filter: &RouteFilter) -> Result<Vec<Route>> {
        Ok(self
            .routes
            .iter()
            .filter(|r| filter.matches(r))
            .cloned()
            .collect())
    }

    fn apply_routes(&mut self, changes: &[RouteChange]) -> Result<Vec<BatchFailure>> {
        self.batches.push(changes.to_vec());
        let mut failures = Vec::new();
        for (index, change) in changes.iter().enumerate() {
            let result = match change {
                RouteChange::Add(r) => self.add_route(r),
                RouteChange::Replace(r) => self.replace_route(r),
                RouteChange::Delete(r) => self.delete_route(r),
            };
            if let Err(error) = result {
                let error = match error {
                    Error::Kernel {
                        object, errno, ext, ..
                    } => Error::Kernel {
                        action: change_action(change),
                        object,
                        errno,
                        ext,
                    },
                    other => other,
                };
                failures.push(BatchFailure { index, error });
            }
        }
        Ok(failures)
    }

    fn create_vxlan(&mut self, spec: &VxlanSpec) -> Result<()> {
        self.create_vxlan_impl(spec)
    }

    fn create_ipip(&mut self, name: &str) -> Result<()> {
        let object = format!("ipip device {name}");
        self.record(Call::CreateIpip(name.to_string()), object.clone())?;
        if self.links.iter().any(|l| l.name == name) {
            return Err(Self::kernel(object, Errno::EEXIST));
        }
        self.next_index += 1;
        self.links.push(Link {
            index: self.next_index,
            name: name.to_string(),
            mtu: Some(1480),
            mac: None,
            up: false,
            kind: Some("ipip".into()),
        });
        Ok(())
    }

    fn vxlan_by_name(&mut self, name: &str) -> Result<Option<VxlanLink>> {
        Ok(self.vxlan_by_name_impl(name))
    }

    fn add_neighbour(&mut self, n: &Neighbour) -> Result<()> {
        let object = format!("neighbour {}", n.ip);
        self.record(Call::AddNeighbour(n.clone()), object.clone())?;
        if self.neighbour_exists(n) {
            return Err(Self::kernel(object, Errno::EEXIST));
        }
        self.neighbours.push(n.clone());
        Ok(())
    }

    fn replace_neighbour(&mut self, n: &Neighbour) -> Result<()> {
        self.record(
            Call::ReplaceNeighbour(n.clone()),
            format!("neighbour {}", n.ip),
        )?;
        self.neighbours
            .retain(|e| !(e.index == n.index && e.ip == n.ip));
        self.neighbours.push(n.clone());
        Ok(())
    }

    fn delete_neighbour(&mut self, n: &Neighbour) -> Result<()> {
        let object = format!("neighbour {}", n.ip);
        self.record(Call::DeleteNeighbour(n.clone()), object.clone())?;
        if !self.neighbour_exists(n) {
            return Err(Self::kernel(object, Errno::ENOENT));
        }
        self.neighbours
            .retain(|e| !(e.index == n.index && e.ip == n.ip));
        Ok(())
    }

    fn neighbours(&mut self, family: Family, index: Option<u32>) -> Result<Vec<Neighbour>> {
        Ok(self
            .neighbours
            .iter()
            .filter(|n| (family == Family::V4) == n.ip.is_ipv4())
            .filter(|n| index.is_none_or(|i| n.index == i))
            .cloned()
            .collect())
    }

    fn replace_fdb(&mut self, f: &FdbEntry) -> Result<()> {
        self.record(Call::ReplaceFdb(f.clone()), format!("fdb {:?}", f.mac))?;
        self.fdb.retain(|e| !(e.index == f.index && e.mac == f.mac));
        self.fdb.push(f.clone());
        Ok(())
    }

    fn delete_fdb(&mut self, f: &FdbEntry) -> Result<()> {
        let object = format!("fdb {:?}", f.mac);
        self.record(Call::DeleteFdb(f.clone()), object.clone())?;
        let before = self.fdb.len();
        self.fdb
            .retain(|e| !(e.index == f.index && e.mac == f.mac && e.dst == f.dst));
        if before == self.fdb.len() {
            return Err(Self::kernel(object, Errno::ENOENT));
        }
        Ok(())
    }

    fn fdb(&mut self, index: u32) -> Result<Vec<FdbEntry>> {
        Ok(self
            .fdb
            .iter()
            .filter(|f| f.index == index)
            .cloned()
            .collect())
    }
}

impl RecordingRtnl {
    fn neighbour_exists(&self, n: &Neighbour) -> bool {
        self.neighbours
            .iter()
            .any(|e| e.index == n.index && e.ip == n.ip)
    }
}

/// The layer-2 half of the fake (VXLAN device, neighbours, FDB).
impl RecordingRtnl {
    fn create_vxlan_impl(&mut self, spec: &VxlanSpec) -> Result<()> {
        let object = format!("vxlan device {}", spec.name);
        self.record(Call::CreateVxlan(spec.clone()), object.clone())?;
        if self.links.iter().any(|l| l.name == spec.name) {
            return Err(Self::kernel(object, Errno::EEXIST));
        }
        self.next_index += 1;
        let link = Link {
            index: self.next_index,
            name: spec.name.clone(),
            mtu: spec.mtu,
            mac: spec.mac.map(|m| m.to_vec()),
            up: spec.up,
            kind: Some("vxlan".into()),
        };
        self.links.push(link.clone());
        self.vxlans.push(VxlanLink {
            link,
            vni: Some(spec.vni),
            port: Some(spec.port),
            local: spec.local,
            parent: spec.parent,
            learning: Some(spec.learning),
        });
        Ok(())
    }

    fn vxlan_by_name_impl(&self, name: &str) -> Option<VxlanLink> {
        let link = self.links.iter().find(|l| l.name == name)?;
        let mut v = self
            .vxlans
            .iter()
            .find(|v| v.link.index == link.index)?
            .clone();
        v.link = link.clone();
        Some(v)
    }
}

/// Routes are keyed by table and destination, as the kernel does for non-multipath routes.
fn same_key(a: &Route, b: &Route) -> bool {
    a.table == b.table && a.dst == b.dst && a.metric == b.metric
}

/// Records written sysctls; `get` returns the last value written (or a preset one).
#[derive(Debug, Default, Clone)]
pub struct RecordingSysctl {
    pub writes: Vec<(String, String)>,
    pub values: BTreeMap<String, String>,
}

impl Sysctl for RecordingSysctl {
    fn set(&mut self, key: &SysctlKey, value: &str) -> Result<()> {
        self.writes.push((key.to_string(), value.to_string()));
        self.values.insert(key.to_string(), value.to_string());
        Ok(())
    }

    fn get(&mut self, key: &SysctlKey) -> Result<String> {
        self.values
            .get(&key.to_string())
            .cloned()
            .ok_or_else(|| Error::Sysctl {
                path: PathBuf::from(key.to_string()),
                action: "read",
                source: io::Error::from(io::ErrorKind::NotFound),
            })
    }
}

/// Records applied nft scripts; a table "exists" once a script creating it was applied.
#[derive(Debug, Default, Clone)]
pub struct RecordingNft {
    pub scripts: Vec<String>,
    /// Answer of `table_exists` (tests flip it to simulate `nft delete table` by hand).
    pub table_present: bool,
}

impl crate::nft::Nft for RecordingNft {
    fn apply(&mut self, script: &str) -> Result<()> {
        self.scripts.push(script.to_string());
        self.table_present = true;
        Ok(())
    }

    fn table_exists(&mut self, _family: &str, _name: &str) -> Result<bool> {
        Ok(self.table_present)
    }
}

/// Byte-level fake: records every datagram sent; answers each message that asks for an ACK
/// (with an ACK, or with the errno set for its ordinal) and each dump with the queued data
/// messages followed by NLMSG_DONE.
#[derive(Debug, Default)]
pub struct RecordingTransport {
    pub sent: Vec<Vec<u8>>,
    /// errno to answer for the n-th message sent overall (0-based).
    pub errors: BTreeMap<usize, Errno>,
    /// Data messages answered to every dump.
    pub dump_replies: Vec<RouteNetlinkMessage>,
    /// Flag this many dumps (the first ones) as interrupted (NLM_F_DUMP_INTR).
    pub interrupt_dumps: usize,
    /// How many dumps were answered.
    pub dumps: usize,
    pending: VecDeque<Vec<u8>>,
    ordinal: usize,
}

impl RecordingTransport {
    /// Every message sent so far, decoded, with its header.
    pub fn sent_messages(&self) -> Vec<NetlinkMessage<RouteNetlinkMessage>> {
        self.sent
            .iter()
            .flat_map(|d| split(d))
            .filter_map(|raw| NetlinkMessage::<RouteNetlinkMessage>::deserialize(&raw).ok())
            .collect()
    }
}

fn split(datagram: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut offset = 0;
    while let Ok(buf) = NetlinkBuffer::new_checked(&datagram[offset..]) {
        let len = buf.length() as usize;
        out.push(datagram[offset..offset + len].to_vec());
        offset += (len + 3) & !3;
        if offset >= datagram.len() || len == 0 {
            break;
        }
    }
    out
}

fn reply(seq: u32, payload: NetlinkPayload<RouteNetlinkMessage>) -> Vec<u8> {
    reply_flagged(seq, 0, payload)
}

fn reply_flagged(seq: u32, flags: u16, payload: NetlinkPayload<RouteNetlinkMessage>) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.sequence_number = seq;
    header.flags = flags;
    let mut msg = NetlinkMessage::new(header, payload);
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    buf
}

impl Transport for RecordingTransport {
    fn send(&mut self, datagram: &[u8]) -> io::Result<()> {
        self.sent.push(datagram.to_vec());
        let mut answer = Vec::new();
        for raw in split(datagram) {
            let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&raw) else {
                return Err(io::Error::other("fake transport: undecodable message sent"));
            };
            let seq = msg.header.sequence_number;
            let flags = msg.header.flags;
            let ordinal = self.ordinal;
            self.ordinal += 1;
            if flags & NLM_F_DUMP == NLM_F_DUMP {
                let intr = if self.dumps < self.interrupt_dumps {
                    NLM_F_DUMP_INTR
                } else {
                    0
                };
                self.dumps += 1;
                for data in self.dump_replies.clone() {
                    let payload = NetlinkPayload::InnerMessage(data);
                    answer.extend(reply_flagged(seq, NLM_F_MULTIPART | intr, payload));
                }
                answer.extend(reply(seq, NetlinkPayload::Done(Default::default())));
            } else if let Some(errno) = self.errors.get(&ordinal) {
                let mut e = ErrorMessage::default();
                e.code = std::num::NonZeroI32::new(-(*errno as i32));
                e.header = raw[..16].to_vec();
                answer.extend(reply(seq, NetlinkPayload::Error(e)));
            } else if flags & NLM_F_ACK != 0 {
                let mut e = ErrorMessage::default();
                e.header = raw[..16].to_vec();
                answer.extend(reply(seq, NetlinkPayload::Error(e)));
            }
        }
        if !answer.is_empty() {
            self.pending.push_back(answer);
        }
        Ok(())
    }

    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        let next = self
            .pending
            .pop_front()
            .ok_or_else(|| io::Error::new(io::ErrorKind::WouldBlock, "fake transport: no reply"))?;
        buf.clear();
        buf.extend_from_slice(&next);
        Ok(())
    }
}
