//! The etcd v3 backend (etcd-client over one tonic channel to every configured endpoint).
//!
//! Writes are single etcd transactions: create = `create_revision == 0 ⇒ put`, update =
//! `mod_revision == expected ⇒ put (keeping the lease) else get`, delete = `[mod_revision ==
//! expected ⇒] delete with prev_kv else get`; the `else get` tells `NotFound` from `Conflict`.
//! Lists are paginated at one fixed revision; watches live in `watch.rs`.
//!
//! Reconnection: the channel reconnects by itself once etcd answers again, so the same
//! `EtcdDatastore` keeps working after an etcd restart. While etcd is away every call fails
//! within the request timeout with `Error::Unavailable` naming the endpoints and how to change
//! them; watches resume internally from the last delivered revision + 1.

mod conn;
mod watch;

use crate::config::EtcdConfig;
use crate::error::{Error, Result};
use crate::txn::{Check, Expect, Op, TxnResult, validate};
use crate::{Datastore, KeyValue, LeaseId, ListResult, Revision, WatchStream};
use async_trait::async_trait;
use conn::{Clients, Pool, RawError};
use etcd_client::{
    Certificate, CompactionOptions, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions,
    Identity, PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse,
};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Timeouts of one `EtcdDatastore`. The defaults keep an unreachable etcd from hanging a
/// command for long.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP (and TLS) connection establishment per endpoint.
    pub connect: Duration,
    /// One unary request, including waiting for a connection.
    pub request: Duration,
    /// A broken watch is re-established for this long before the stream ends with the error.
    pub watch_resume: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            request: Duration::from_secs(10),
            watch_resume: Duration::from_secs(60),
        }
    }
}

/// Keys per page when listing; divided by 4 while a page is too large to decode.
const PAGE_SIZE: i64 = 500;
/// Largest gRPC message we accept (pages of big values, watch batches of big txns).
const MAX_DECODE: usize = 128 * 1024 * 1024;

pub struct EtcdDatastore {
    pool: Arc<Pool>,
    endpoints: Vec<String>,
    target: Target,
    timeouts: Timeouts,
}

impl EtcdDatastore {
    /// Connects and checks that etcd answers (so a wrong endpoint fails here, clearly).
    pub async fn connect(config: &EtcdConfig) -> Result<Self> {
        Self::connect_with(config, Timeouts::default()).await
    }

    pub async fn connect_with(config: &EtcdConfig, timeouts: Timeouts) -> Result<Self> {
        if config.endpoints.is_empty() {
            return Err(Error::Config(
                "no etcd endpoints: set ETCD_ENDPOINTS (e.g. http://127.0.0.1:2379) or \
                 spec.etcdEndpoints in calicoctl.cfg"
                    .into(),
            ));
        }
        let https = config
            .endpoints
            .iter()
            .filter(|e| e.starts_with("https://"))
            .count();
        if https != 0 && https != config.endpoints.len() {
            return Err(Error::Config(format!(
                "ETCD_ENDPOINTS mixes http:// and https:// endpoints ({}); use one scheme",
                config.endpoints.join(",")
            )));
        }
        let tls = https != 0;
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(timeouts.connect)
            .with_timeout(timeouts.request)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        if tls {
            opts = opts.with_tls(tls_options(config)?);
        } else if config.ca_cert_file.is_some()
            || config.cert_file.is_some()
            || config.key_file.is_some()
        {
            return Err(Error::Config(format!(
                "ETCD_CA_CERT_FILE/ETCD_CERT_FILE/ETCD_KEY_FILE are set but the etcd endpoints \
                 ({}) use http://; use https:// endpoints for TLS",
                config.endpoints.join(",")
            )));
        }
        if let (Some(u), Some(p)) = (&config.username, &config.password) {
            opts = opts
                .with_user(u.clone(), p.clone())
                .with_auto_token_refresh(true);
        } else if config.username.is_some() != config.password.is_some() {
            return Err(Error::Config(
                "set both ETCD_USERNAME and ETCD_PASSWORD, or neither".into(),
            ));
        }
        let endpoints = config.endpoints.clone();
        let target = Target::new(config, tls, timeouts.request);
        let pool = Pool::new(&endpoints, opts, timeouts.request, MAX_DECODE);
        let ds = EtcdDatastore {
            pool: Arc::new(pool),
            endpoints,
            target,
            timeouts,
        };
        ds.revision().await?;
        Ok(ds)
    }

    /// Runs one request (with failover and the request timeout); maps the errors.
    async fn call<T, F, Fut>(&self, what: &str, f: F) -> Result<T>
    where
        F: FnMut(Clients) -> Fut,
        Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        self.pool.call(f).await.map_err(|e| self.raw_err(what, e))
    }

    fn raw_err(&self, what: &str, e: RawError) -> Error {
        match e {
            RawError::TimedOut => self.target.timed_out(self.timeouts.request),
            RawError::Etcd(e) => self.map_err(what, e),
        }
    }

    fn map_err(&self, what: &str, e: etcd_client::Error) -> Error {
        map_err(&self.target, what, e)
    }

    async fn run_txn(&self, what: &str, txn: Txn) -> Result<(bool, Revision, Vec<TxnOpResponse>)> {
        // The pool tries each endpoint at most once: the last try gets the request itself, the
        // ones before a copy (with one endpoint, a block-sized transaction is never copied).
        let mut tries_left = self.endpoints.len();
        let mut txn = Some(txn);
        let resp = self
            .call(what, |mut c| {
                tries_left = tries_left.saturating_sub(1);
                let txn = if tries_left == 0 {
                    txn.take()
                } else {
                    txn.clone()
                };
                async move {
                    match txn {
                        Some(txn) => c.kv.txn(txn).await,
                        // Not reached: the pool makes at most one try per endpoint.
                        None => Err(etcd_client::Error::InvalidArgs(
                            "transaction tried more often than there are endpoints".into(),
                        )),
                    }
                }
            })
            .await?;
        let rev = resp.header().map(|h| h.revision()).unwrap_or_default();
        Ok((resp.succeeded(), rev, resp.op_responses()))
    }

    /// Reads the else-branch `get` of a failed CAS: absent ⇒ NotFound, else Conflict.
    fn cas_failure(key: &str, expected: Revision, ops: Vec<TxnOpResponse>) -> Result<Error> {
        let found = ops.into_iter().find_map(|op| match op {
            TxnOpResponse::Get(g) => Some(g.kvs().first().map(|kv| kv.mod_revision())),
            _ => None,
        });
        Ok(match found.flatten() {
            None => Error::NotFound {
                key: key.to_string(),
            },
            Some(actual) => Error::Conflict {
                key: key.to_string(),
                expected,
                actual,
            },
        })
    }
}

fn tls_options(config: &EtcdConfig) -> Result<TlsOptions> {
    let read = |p: &std::path::Path, var: &str| {
        std::fs::read(p)
            .map_err(|e| Error::Config(format!("cannot read {var} {}: {e}", p.display())))
    };
    let mut tls = TlsOptions::new();
    if let Some(ca) = &config.ca_cert_file {
        tls = tls.ca_certificate(Certificate::from_pem(read(ca, "ETCD_CA_CERT_FILE")?));
    }
    match (&config.cert_file, &config.key_file) {
        (Some(c), Some(k)) => {
            tls = tls.identity(Identity::from_pem(
                read(c, "ETCD_CERT_FILE")?,
                read(k, "ETCD_KEY_FILE")?,
            ));
        }
        (None, None) => {}
        _ => {
            return Err(Error::Config(
                "a client certificate needs both ETCD_CERT_FILE and ETCD_KEY_FILE".into(),
            ));
        }
    }
    Ok(tls)
}

/// An error and its sources on one line, without gRPC's debug noise: tonic hides the useful
/// part ("Connection refused", "invalid peer certificate") in the sources.
fn chain(e: &etcd_client::Error) -> String {
    let (mut out, mut cur): (String, Option<&dyn std::error::Error>) = match e {
        etcd_client::Error::GRpcStatus(s) => {
            (s.message().to_string(), std::error::Error::source(s))
        }
        other => (other.to_string(), std::error::Error::source(other)),
    };
    while let Some(c) = cur {
        let t = c.to_string();
        if t != "transport error" && !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        cur = c.source();
    }
    out
}

/// Where we connect and what to tell the user when it fails.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    endpoints: String,
    hint: String,
    request: Duration,
}

impl Target {
    fn new(config: &EtcdConfig, tls: bool, request: Duration) -> Target {
        let mut hint = String::from(
            "check that etcd runs there, or point ETCD_ENDPOINTS (comma-separated URLs) or \
             etcdEndpoints in calicoctl.cfg at it",
        );
        if tls {
            if config.ca_cert_file.is_none() {
                hint.push_str("; set ETCD_CA_CERT_FILE to the CA that signed etcd's certificate");
            }
            if config.cert_file.is_none() {
                hint.push_str(
                    "; if etcd requires client certificates (--client-cert-auth), set \
                     ETCD_CERT_FILE and ETCD_KEY_FILE",
                );
            }
        } else {
            hint.push_str("; if etcd serves TLS, use https:// endpoints");
        }
        Target {
            endpoints: config.endpoints.join(","),
            hint,
            request,
        }
    }

    fn unavailable(&self, detail: &str) -> Error {
        Error::Unavailable {
            endpoint: self.endpoints.clone(),
            reason: format!("{detail}; {}", self.hint),
        }
    }

    fn timed_out(&self, after: Duration) -> Error {
        self.unavailable(&format!("no answer within {after:?}"))
    }
}

pub(crate) fn map_err(target: &Target, what: &str, e: etcd_client::Error) -> Error {
    use tonic::Code;
    match &e {
        // tonic's per-request timeout (the same duration as ours) can fire first.
        etcd_client::Error::GRpcStatus(s) if s.message() == "Timeout expired" => {
            target.timed_out(target.request)
        }
        etcd_client::Error::GRpcStatus(s) => {
            let msg = s.message();
            match s.code() {
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
                    if s.code() != Code::Unknown || msg.contains("transport") =>
                {
                    target.unavailable(&chain(&e))
                }
                _ if is_auth_failure(s.code(), msg) => Error::Config(format!(
                    "etcd at {} refused {what}: {msg}; check ETCD_USERNAME and ETCD_PASSWORD \
                     (etcdUsername/etcdPassword in calicoctl.cfg) or the client certificate",
                    target.endpoints
                )),
                _ => Error::Backend(format!("etcd {what}: {}", chain(&e))),
            }
        }
        etcd_client::Error::InvalidUri(_) | etcd_client::Error::InvalidArgs(_) => {
            Error::Config(format!("etcd endpoints {}: {e}", target.endpoints))
        }
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => {
            target.unavailable(&chain(&e))
        }
        _ => Error::Backend(format!("etcd {what}: {}", chain(&e))),
    }
}

pub(crate) fn to_kv(kv: &etcd_client::KeyValue) -> Result<KeyValue> {
    let key = String::from_utf8(kv.key().to_vec()).map_err(|e| Error::Corrupt {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        reason: format!("key is not UTF-8: {e}"),
    })?;
    Ok(KeyValue {
        key,
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        lease: (kv.lease() != 0).then_some(kv.lease()),
    })
}

/// The end of the key range holding every key that starts with `prefix` (etcd's convention:
/// `\0` means "to the end").
pub(crate) fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The first key of the range: an empty prefix means "all keys", which etcd spells `\0`.
pub(crate) fn range_start(prefix: &str) -> Vec<u8> {
    if prefix.is_empty() {
        vec![0]
    } else {
        prefix.as_bytes().to_vec()
    }
}

fn is_auth_failure(code: tonic::Code, msg: &str) -> bool {
    matches!(
        code,
        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
    ) || [
        "authentication failed",
        "user name is empty",
        "permission denied",
        "invalid auth",
    ]
    .iter()
    .any(|m| msg.contains(m))
}

fn is_too_large(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s)
        if s.message().contains("message length too large")
            || s.code() == tonic::Code::ResourceExhausted)
}

fn is_compacted(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s)
        if s.message().contains("required revision has been compacted"))
}

impl EtcdDatastore {
    /// A paginated listing at one revision (values omitted when `keys_only`).
    async fn list_range(&self, prefix: &str, keys_only: bool) -> Result<ListResult> {
        let end = prefix_end(prefix);
        // A compaction between pages invalidates the fixed revision: start over (bounded).
        'attempt: for _ in 0..5 {
            let mut out = Vec::new();
            let mut start = range_start(prefix);
            let mut revision = 0;
            let mut limit = PAGE_SIZE;
            loop {
                let mut opts = GetOptions::new().with_range(end.clone()).with_limit(limit);
                if keys_only {
                    opts = opts.with_keys_only();
                }
                if revision > 0 {
                    opts = opts.with_revision(revision);
                }
                let page = self
                    .pool
                    .call(|mut c| {
                        let (start, opts) = (start.clone(), opts.clone());
                        async move { c.kv.get(start, Some(opts)).await }
                    })
                    .await;
                let resp = match page {
                    Ok(r) => r,
                    Err(RawError::Etcd(e)) if is_too_large(&e) && limit > 1 => {
                        limit = (limit / 4).max(1);
                        continue;
                    }
                    Err(RawError::Etcd(e)) if is_compacted(&e) => continue 'attempt,
                    Err(e) => return Err(self.raw_err(&format!("list {prefix}"), e)),
                };
                if revision == 0 {
                    revision = resp.header().map(|h| h.revision()).unwrap_or_default();
                }
                for kv in resp.kvs() {
                    out.push(to_kv(kv)?);
                }
                match (resp.more(), resp.kvs().last()) {
                    (true, Some(last)) => {
                        start = last.key().to_vec();
                        start.push(0);
                    }
                    _ => return Ok(ListResult { kvs: out, revision }),
                }
            }
        }
        Err(Error::Backend(format!(
            "list {prefix}: etcd compacted the listing revision 5 times in a row; retry"
        )))
    }
}

#[async_trait]
impl Datastore for EtcdDatastore {
    fn describe(&self) -> String {
        format!("etcd {}", self.endpoints.join(","))
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let resp = self
            .call(&format!("get {key}"), |mut c| {
                let key = key.to_string();
                async move { c.kv.get(key, None).await }
            })
            .await?;
        resp.kvs().first().map(to_kv).transpose()
    }

    async fn list(&self, prefix: &str) -> Result<ListResult> {
        self.list_range(prefix, false).await
    }

    async fn list_keys(&self, prefix: &str) -> Result<ListResult> {
        self.list_range(prefix, true).await
    }

    async fn create(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<Revision> {
        let put_opts = lease.map(|l| PutOptions::new().with_lease(l));
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, put_opts)]);
        match self.run_txn(&format!("create {key}"), txn).await? {
            (true, rev, _) => Ok(rev),
            (false, _, _) => Err(Error::AlreadyExists {
                key: key.to_string(),
            }),
        }
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<Revision> {
        // `version > 0` because a missing key has mod_revision 0 too; `ignore_lease` keeps an
        // ephemeral key attached to its lease.
        let txn = Txn::new()
            .when([
                Compare::version(key, CompareOp::Greater, 0),
                Compare::mod_revision(key, CompareOp::Equal, expected),
            ])
            .and_then([TxnOp::put(
                key,
                value,
                Some(PutOptions::new().with_ignore_lease()),
            )])
            .or_else([TxnOp::get(key, None)]);
        match self.run_txn(&format!("update {key}"), txn).await? {
            (true, rev, _) => Ok(rev),
            (false, _, ops) => Err(Self::cas_failure(key, expected, ops)?),
        }
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let mut when = vec![Compare::version(key, CompareOp::Greater, 0)];
        if let Some(rev) = expected {
            when.push(Compare::mod_revision(key, CompareOp::Equal, rev));
        }
        let txn = Txn::new()
            .when(when)
            .and_then([TxnOp::delete(
                key,
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        match self.run_txn(&format!("delete {key}"), txn).await? {
            (true, _, ops) => {
                let prev = ops.into_iter().find_map(|op| match op {
                    TxnOpResponse::Delete(d) => d.prev_kvs().first().map(to_kv),
                    _ => None,
                });
                prev.unwrap_or_else(|| {
                    Err(Error::NotFound {
                        key: key.to_string(),
                    })
                })
            }
            (false, _, ops) => Err(Self::cas_failure(key, expected.unwrap_or(0), ops)?),
        }
    }

    async fn txn(&self, checks: Vec<Check>, ops: Vec<Op>) -> Result<TxnResult> {
        validate(&checks, &ops)?;
        let mut when = Vec::with_capacity(checks.len() * 2);
        for c in &checks {
            match c.expect {
                Expect::Absent => when.push(Compare::create_revision(
                    c.key.as_str(),
                    CompareOp::Equal,
                    0,
                )),
                // An existing key's mod revision is never 0 or less, so `mod_revision == rev`
                // with rev > 0 already says the key exists: one compare is enough.
                Expect::Revision(rev) if rev > 0 => {
                    when.push(Compare::mod_revision(c.key.as_str(), CompareOp::Equal, rev));
                }
                // A missing key has mod revision 0: only `version > 0` tells it apart.
                Expect::Revision(rev) => {
                    when.push(Compare::version(c.key.as_str(), CompareOp::Greater, 0));
                    when.push(Compare::mod_revision(c.key.as_str(), CompareOp::Equal, rev));
                }
            }
        }
        let what = format!(
            "transaction on {}",
            ops.iter().map(Op::key).collect::<Vec<_>>().join(", ")
        );
        let n_ops = ops.len();
        // The values are moved into the request, not copied (a block is ~9 KiB).
        let then: Vec<TxnOp> = ops
            .into_iter()
            .map(|op| match op {
                Op::Put { key, value } => TxnOp::put(key, value, None),
                Op::Delete { key } => TxnOp::delete(key, None),
            })
            .collect();
        // On failure: every checked key's revisions (no values), to name the failing check.
        let otherwise: Vec<TxnOp> = checks
            .iter()
            .map(|c| TxnOp::get(c.key.as_str(), Some(GetOptions::new().with_keys_only())))
            .collect();
        let txn = Txn::new().when(when).and_then(then).or_else(otherwise);
        let (succeeded, rev, responses) = self.run_txn(&what, txn).await?;
        if succeeded {
            return Ok(TxnResult {
                revision: rev,
                revisions: vec![rev; n_ops],
            });
        }
        let actual = responses.into_iter().map(|r| match r {
            TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.mod_revision()).unwrap_or(0),
            _ => 0,
        });
        for (c, actual) in checks.iter().zip(actual) {
            if let Some(e) = c.failure(actual) {
                return Err(e);
            }
        }
        // The checks failed at etcd but hold now: a concurrent writer moved a key and back.
        Err(Error::Conflict {
            key: checks.first().map(|c| c.key.clone()).unwrap_or_default(),
            expected: 0,
            actual: rev,
        })
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream> {
        watch::start(self, prefix, from).await
    }

    async fn revision(&self) -> Result<Revision> {
        let opts = GetOptions::new().with_count_only();
        let resp = self
            .call("read the revision", |mut c| {
                let opts = opts.clone();
                async move { c.kv.get(vec![0u8], Some(opts)).await }
            })
            .await?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or_default())
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let opts = CompactionOptions::new().with_physical();
        let res = self
            .pool
            .call(|mut c| {
                let opts = opts.clone();
                async move { c.kv.compact(revision, Some(opts)).await }
            })
            .await;
        match res {
            Ok(_) => Ok(()),
            // Compacting to (or below) a revision that is already gone is a no-op.
            Err(RawError::Etcd(e)) if is_compacted(&e) => Ok(()),
            Err(e) => Err(self.raw_err(&format!("compact to revision {revision}"), e)),
        }
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId> {
        // etcd leases have whole seconds: round up, at least 1.
        let secs = ttl
            .as_secs()
            .saturating_add(u64::from(ttl.subsec_nanos() > 0))
            .max(1);
        let secs = i64::try_from(secs).unwrap_or(i64::MAX);
        let resp = self
            .call("grant a lease", |mut c| async move {
                c.lease.grant(secs, None).await
            })
            .await?;
        Ok(resp.id())
    }

    async fn keep_alive(&self, id: LeaseId) -> Result<()> {
        let res = self
            .pool
            .call(|mut c| async move { c.lease.keep_alive(id).await })
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(RawError::Etcd(etcd_client::Error::LeaseKeepAliveError(m)))
                if m.contains("not found") =>
            {
                Err(Error::NotFound {
                    key: format!("lease {id}"),
                })
            }
            Err(e) => Err(self.raw_err(&format!("keep lease {id} alive"), e)),
        }
    }

    async fn revoke_lease(&self, id: LeaseId) -> Result<()> {
        let res = self
            .pool
            .call(|mut c| async move { c.lease.revoke(id).await })
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(RawError::Etcd(etcd_client::Error::GRpcStatus(s)))
                if s.message().contains("not found") =>
            {
                Err(Error::NotFound {
                    key: format!("lease {id}"),
                })
            }
            Err(e) => Err(self.raw_err(&format!("revoke lease {id}"), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges() {
        assert_eq!(prefix_end("/calico/"), b"/calico0".to_vec());
        assert_eq!(prefix_end(""), vec![0]);
        assert_eq!(range_start(""), vec![0]);
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
    }
}
