//! etcd-specific behaviour the conformance suite does not cover: outages and reconnection,
//! unreachable endpoints, TLS with client certificates, pagination, lease preservation.
//! Every test runs its own etcd (crates/datastore/src/testutil.rs).

use anyhow::{Context, Result, bail};
use calico_datastore::config::EtcdConfig;
use calico_datastore::etcd::{EtcdDatastore, Timeouts};
use calico_datastore::testutil::EtcdServer;
use calico_datastore::{Datastore, Error, EventKind};
use std::time::{Duration, Instant};

async fn recv(rx: &mut calico_datastore::WatchStream) -> Result<calico_datastore::WatchEvent> {
    match tokio::time::timeout(Duration::from_secs(20), rx.recv()).await {
        Err(_) => bail!("no watch event within 20 s"),
        Ok(None) => bail!("watch ended"),
        Ok(Some(r)) => Ok(r?),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_etcd_restart_without_reconnecting() -> Result<()> {
    let mut etcd = EtcdServer::start()?;
    let ds = EtcdDatastore::connect(&etcd.config()).await?;
    let r1 = ds.create("/t/a", b"1".to_vec(), None).await?;
    let mut rx = ds.watch("/t/", r1 + 1).await?;
    ds.update("/t/a", b"2".to_vec(), r1).await?;
    assert_eq!(recv(&mut rx).await?.kv.value, b"2");

    etcd.kill();
    let t = Instant::now();
    let err = ds.get("/t/a").await.expect_err("etcd is down");
    assert!(
        t.elapsed() < Duration::from_secs(12),
        "took {:?}",
        t.elapsed()
    );
    let Error::Unavailable { endpoint, reason } = &err else {
        bail!("not Unavailable: {err}")
    };
    assert_eq!(endpoint, &etcd.endpoint());
    assert!(reason.contains("ETCD_ENDPOINTS"), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&etcd.endpoint()), "{msg}");

    etcd.start_again()?;
    // The same datastore object works again once the channel has reconnected (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(20);
    let kv = loop {
        match ds.get("/t/a").await {
            Ok(kv) => break kv.context("key lost")?,
            Err(e) if Instant::now() < deadline => {
                eprintln!("not yet: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e).context("etcd back but the datastore did not recover"),
        }
    };
    assert_eq!(kv.value, b"2");
    // The watch resumed by itself: the next write arrives exactly once.
    let r3 = ds.update("/t/a", b"3".to_vec(), kv.mod_revision).await?;
    let ev = recv(&mut rx).await?;
    assert_eq!(
        (ev.kind, ev.kv.mod_revision, ev.kv.value.as_slice()),
        (EventKind::Put, r3, &b"3"[..])
    );
    assert_eq!(ev.prev.map(|p| p.value), Some(b"2".to_vec()));
    assert!(
        tokio::time::timeout(Duration::from_millis(500), rx.recv())
            .await
            .is_err()
    );
    Ok(())
}

#[tokio::test]
async fn unreachable_endpoint_fails_fast_and_says_how_to_configure() -> Result<()> {
    // A port nothing listens on: bind, note, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let cfg = EtcdConfig {
        endpoints: vec![format!("http://127.0.0.1:{port}")],
        ..Default::default()
    };
    let t = Instant::now();
    let err = match EtcdDatastore::connect(&cfg).await {
        Ok(_) => bail!("connected to nothing"),
        Err(e) => e,
    };
    assert!(
        t.elapsed() < Duration::from_secs(12),
        "took {:?}",
        t.elapsed()
    );
    let msg = err.to_string();
    assert!(matches!(err, Error::Unavailable { .. }), "{msg}");
    assert!(
        msg.contains(&format!("127.0.0.1:{port}")) && msg.contains("ETCD_ENDPOINTS"),
        "{msg}"
    );
    Ok(())
}

#[tokio::test]
async fn tls_with_client_certificates() -> Result<()> {
    let etcd = EtcdServer::start_tls()?;
    let good = etcd.config();
    let ds = EtcdDatastore::connect(&good).await?;
    let rev = ds.create("/tls/k", b"v".to_vec(), None).await?;
    assert_eq!(
        ds.get("/tls/k").await?.context("missing")?.mod_revision,
        rev
    );

    // No client certificate: etcd refuses the handshake.
    let no_cert = EtcdConfig {
        cert_file: None,
        key_file: None,
        ..good.clone()
    };
    let err = EtcdDatastore::connect(&no_cert)
        .await
        .err()
        .context("connected without a cert")?;
    let msg = err.to_string();
    assert!(matches!(err, Error::Unavailable { .. }), "{msg}");
    assert!(
        msg.contains("ETCD_CERT_FILE") && msg.contains(&etcd.endpoint()),
        "{msg}"
    );

    // No CA: our side cannot verify etcd's certificate.
    let no_ca = EtcdConfig {
        ca_cert_file: None,
        ..good.clone()
    };
    let err = EtcdDatastore::connect(&no_ca)
        .await
        .err()
        .context("connected without a CA")?;
    assert!(err.to_string().contains("ETCD_CA_CERT_FILE"), "{err}");

    // Plain HTTP to a TLS etcd, and a missing certificate file: clear configuration errors.
    let http = EtcdConfig {
        endpoints: vec![etcd.endpoint().replace("https", "http")],
        ..Default::default()
    };
    let err = EtcdDatastore::connect(&http)
        .await
        .err()
        .context("http to a TLS etcd")?;
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    let missing = EtcdConfig {
        ca_cert_file: Some("/nonexistent/ca.pem".into()),
        ..good
    };
    let err = EtcdDatastore::connect(&missing)
        .await
        .err()
        .context("missing CA file")?;
    let msg = err.to_string();
    assert!(
        msg.contains("ETCD_CA_CERT_FILE") && msg.contains("/nonexistent/ca.pem"),
        "{msg}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_paginates_at_one_revision() -> Result<()> {
    let etcd = EtcdServer::start()?;
    let ds = EtcdDatastore::connect(&etcd.config()).await?;
    for i in 0..1234 {
        ds.create(&format!("/p/{i:05}"), vec![b'x'; 10], None)
            .await?;
    }
    ds.create("/q/outside", b"x".to_vec(), None).await?;
    let l = ds.list("/p/").await?;
    assert_eq!(l.kvs.len(), 1234);
    assert!(l.kvs.windows(2).all(|w| w[0].key < w[1].key));
    assert_eq!(l.revision, ds.revision().await?);
    // Everything, with the empty prefix.
    assert_eq!(ds.list("").await?.kvs.len(), 1235);
    Ok(())
}

#[tokio::test]
async fn update_keeps_the_lease_and_cas_errors_are_precise() -> Result<()> {
    let etcd = EtcdServer::start()?;
    let ds = EtcdDatastore::connect(&etcd.config()).await?;
    let lease = ds.grant_lease(Duration::from_secs(30)).await?;
    let r = ds.create("/l/k", b"1".to_vec(), Some(lease)).await?;
    let r2 = ds.update("/l/k", b"2".to_vec(), r).await?;
    assert_eq!(ds.get("/l/k").await?.context("gone")?.lease, Some(lease));
    match ds.update("/l/k", b"3".to_vec(), r).await {
        Err(Error::Conflict {
            expected, actual, ..
        }) => assert_eq!((expected, actual), (r, r2)),
        other => bail!("expected Conflict, got {other:?}"),
    }
    assert!(matches!(
        ds.update("/l/none", b"x".to_vec(), 0).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        ds.delete("/l/k", Some(r)).await,
        Err(Error::Conflict { .. })
    ));
    assert_eq!(ds.delete("/l/k", Some(r2)).await?.value, b"2");
    assert!(matches!(
        ds.delete("/l/k", None).await,
        Err(Error::NotFound { .. })
    ));
    ds.revoke_lease(lease).await?;
    assert!(matches!(
        ds.keep_alive(lease).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        ds.revoke_lease(lease).await,
        Err(Error::NotFound { .. })
    ));
    Ok(())
}

#[tokio::test]
async fn compacted_watch_reports_both_revisions() -> Result<()> {
    let etcd = EtcdServer::start()?;
    let ds = EtcdDatastore::connect(&etcd.config()).await?;
    let first = ds.create("/c/k", b"0".to_vec(), None).await?;
    let mut rev = first;
    for i in 1..5 {
        rev = ds.update("/c/k", format!("{i}").into_bytes(), rev).await?;
    }
    ds.compact(rev).await?;
    ds.compact(rev).await?; // idempotent
    let mut rx = ds.watch("/c/", first).await?;
    match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await? {
        Some(Err(Error::Compacted {
            requested,
            compacted,
        })) => {
            assert_eq!((requested, compacted), (first, rev));
        }
        other => bail!("expected Compacted, got {other:?}"),
    }
    assert!(
        rx.recv().await.is_none(),
        "stream continues after Compacted"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_of_big_values_shrinks_pages_until_they_decode() -> Result<()> {
    // 150 × 1 MiB is more than one gRPC message may carry (128 MiB): the page size must drop.
    let etcd = EtcdServer::start()?;
    let ds = EtcdDatastore::connect(&etcd.config()).await?;
    for i in 0..150u32 {
        let v: Vec<u8> = (0..1024 * 1024u32).map(|j| (j ^ i) as u8).collect();
        ds.create(&format!("/big/{i:03}"), v, None).await?;
    }
    let l = ds.list("/big/").await?;
    assert_eq!(l.kvs.len(), 150);
    for (i, kv) in l.kvs.iter().enumerate() {
        assert_eq!(kv.key, format!("/big/{i:03}"));
        assert_eq!(kv.value.len(), 1024 * 1024);
        assert_eq!(kv.value[1], (1 ^ i) as u8);
    }
    Ok(())
}

#[tokio::test]
async fn username_and_password() -> Result<()> {
    let etcd = EtcdServer::start()?;
    etcd.etcdctl(&["user", "add", "root", "--new-user-password=s3cret"])?;
    etcd.etcdctl(&["auth", "enable"])?;
    let user = |p: &str| EtcdConfig {
        username: Some("root".into()),
        password: Some(p.into()),
        ..etcd.config()
    };
    let ds = EtcdDatastore::connect(&user("s3cret")).await?;
    ds.create("/auth/k", b"v".to_vec(), None).await?;
    let err = EtcdDatastore::connect(&user("wrong"))
        .await
        .err()
        .context("wrong password let in")?;
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Config(_)) && msg.contains("ETCD_PASSWORD"),
        "{msg}"
    );
    let err = match EtcdDatastore::connect(&etcd.config()).await {
        Ok(anon) => anon
            .get("/auth/k")
            .await
            .err()
            .context("anonymous read allowed")?,
        Err(e) => e,
    };
    assert!(err.to_string().contains("ETCD_USERNAME"), "{err}");
    Ok(())
}

/// The request timeout must not cut long-lived watch streams: an idle watch outlives it, and
/// etcd saw exactly one Watch stream (no silent reopen).
#[tokio::test]
async fn idle_watch_outlives_the_request_timeout() -> Result<()> {
    let etcd = EtcdServer::start()?;
    let t = Timeouts {
        request: Duration::from_secs(1),
        ..Timeouts::default()
    };
    let ds = EtcdDatastore::connect_with(&etcd.config(), t).await?;
    let mut rx = ds.watch("/w/", 0).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    ds.create("/w/k", b"v".to_vec(), None).await?;
    assert_eq!(recv(&mut rx).await?.kv.key, "/w/k");
    let metrics = http_get(&etcd.endpoint(), "/metrics")?;
    let started = metrics
        .lines()
        .find(|l| {
            l.starts_with("grpc_server_started_total")
                && l.contains("grpc_service=\"etcdserverpb.Watch\"")
        })
        .context("no Watch metric")?;
    assert!(started.ends_with(" 1"), "{started}");
    Ok(())
}

fn http_get(endpoint: &str, path: &str) -> Result<String> {
    use std::io::{Read, Write};
    let addr = endpoint.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// With several endpoints, a dead one does not stop the datastore from using a live one.
#[tokio::test]
async fn a_dead_endpoint_in_the_list_is_skipped() -> Result<()> {
    let etcd = EtcdServer::start()?;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let cfg = EtcdConfig {
        endpoints: vec![format!("http://127.0.0.1:{dead}"), etcd.endpoint()],
        ..Default::default()
    };
    let ds = EtcdDatastore::connect(&cfg).await?;
    assert_eq!(
        ds.describe(),
        format!("etcd http://127.0.0.1:{dead},{}", etcd.endpoint())
    );
    for i in 0..20 {
        ds.create(&format!("/m/{i}"), b"v".to_vec(), None).await?;
    }
    assert_eq!(ds.list("/m/").await?.kvs.len(), 20);
    Ok(())
}

/// A hung etcd (SIGSTOP): calls fail within the request timeout naming the endpoint; after
/// SIGCONT the same datastore and its watch carry on.
#[tokio::test]
async fn a_hung_etcd_times_out_and_recovers() -> Result<()> {
    let etcd = EtcdServer::start()?;
    let t = Timeouts {
        connect: Duration::from_secs(1),
        request: Duration::from_secs(2),
        ..Timeouts::default()
    };
    let ds = EtcdDatastore::connect_with(&etcd.config(), t).await?;
    let r = ds.create("/h/k", b"1".to_vec(), None).await?;
    let mut rx = ds.watch("/h/", r + 1).await?;
    etcd.pause()?;
    let started = Instant::now();
    let err = ds.get("/h/k").await.expect_err("etcd is stopped");
    let took = started.elapsed();
    etcd.resume()?;
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(5),
        "took {took:?}"
    );
    let msg = err.to_string();
    assert!(matches!(err, Error::Unavailable { .. }), "{msg}");
    assert!(
        msg.contains("no answer within 2s") && msg.contains(&etcd.endpoint()),
        "{msg}"
    );
    let r2 = ds.update("/h/k", b"2".to_vec(), r).await?;
    let ev = recv(&mut rx).await?;
    assert_eq!((ev.kv.mod_revision, ev.kv.value), (r2, b"2".to_vec()));
    Ok(())
}
