//! The conformance suite against a real etcd: one fresh etcd per case (started by
//! `testutil::EtcdServer`, on its own loopback ports and data dir), so compaction and revision
//! checks never see another case's writes. The server is the case's guard: it is killed and its
//! data dir removed when the case ends.

// Some suite helpers only serve the embedded backend's extra tests.
#[allow(unused_imports)]
#[macro_use]
mod conformance;

use calico_datastore::testutil::EtcdServer;
use calico_datastore::{DatastoreConfig, connect};
use conformance::Fixture;

async fn fixture() -> Fixture {
    // Starting etcd blocks for up to a second; keep the runtime's workers free meanwhile.
    let server = match tokio::task::spawn_blocking(EtcdServer::start).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => panic!("cannot start etcd for the conformance suite: {e}"),
        Err(e) => panic!("etcd start task failed: {e}"),
    };
    let config = DatastoreConfig::Etcd(server.config());
    let store = match connect(&config).await {
        Ok(s) => s,
        Err(e) => panic!(
            "cannot connect to the test etcd at {}: {e}",
            server.endpoint()
        ),
    };
    Fixture {
        store,
        config,
        prefix: "/calico/test/".into(),
        guard: Box::new(server),
    }
}

conformance_suite!(fixture);
