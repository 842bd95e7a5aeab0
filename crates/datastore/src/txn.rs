//! Multi-key transactions: conditions on several keys' revisions, then several writes, all or
//! nothing. The types every backend's `Datastore::txn` takes, and the request checks they share.
//!
//! One transaction is one etcd `Txn` (all writes at one revision) or one SQLite `BEGIN
//! IMMEDIATE` (one log row, hence one revision, per write, in the order given). Either way no
//! reader ever sees some of the writes without the others.

use crate::Revision;
use crate::error::{Error, Result};
use std::collections::BTreeSet;

/// What a condition expects of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The key does not exist.
    Absent,
    /// The key exists and its mod revision is this one (the CAS token a read returned).
    Revision(Revision),
}

/// One condition of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub key: String,
    pub expect: Expect,
}

impl Check {
    pub fn absent(key: impl Into<String>) -> Check {
        Check {
            key: key.into(),
            expect: Expect::Absent,
        }
    }

    pub fn revision(key: impl Into<String>, rev: Revision) -> Check {
        Check {
            key: key.into(),
            expect: Expect::Revision(rev),
        }
    }

    /// The error this condition fails with when the key's mod revision is `actual` (0 =
    /// absent), or `None` when it holds.
    pub fn failure(&self, actual: Revision) -> Option<Error> {
        let key = self.key.clone();
        match self.expect {
            Expect::Absent if actual == 0 => None,
            Expect::Absent => Some(Error::AlreadyExists { key }),
            Expect::Revision(_) if actual == 0 => Some(Error::NotFound { key }),
            Expect::Revision(expected) if expected == actual => None,
            Expect::Revision(expected) => Some(Error::Conflict {
                key,
                expected,
                actual,
            }),
        }
    }
}

/// One write of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Creates or replaces the key. The value is stored without a lease (as etcd's plain put).
    Put { key: String, value: Vec<u8> },
    /// Deletes the key; a key that is already absent is left absent (add a `Check` to insist).
    Delete { key: String },
}

impl Op {
    pub fn put(key: impl Into<String>, value: Vec<u8>) -> Op {
        Op::Put {
            key: key.into(),
            value,
        }
    }

    pub fn delete(key: impl Into<String>) -> Op {
        Op::Delete { key: key.into() }
    }

    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }
}

/// What a committed transaction wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResult {
    /// The store revision after the transaction.
    pub revision: Revision,
    /// Per op, in order: the revision it was written at (the new mod revision of a `Put`'s
    /// key, the CAS token for its next write). On etcd every op has the transaction's revision;
    /// on the embedded store each write has its own, increasing in op order.
    pub revisions: Vec<Revision>,
}

/// Refuses requests the backends cannot run the same way: no ops, or two ops or two checks on
/// one key (etcd rejects duplicate keys in one transaction).
pub fn validate(checks: &[Check], ops: &[Op]) -> Result<()> {
    if ops.is_empty() {
        return Err(Error::Backend(
            "a transaction needs at least one write (Op::Put or Op::Delete)".into(),
        ));
    }
    let mut seen = BTreeSet::new();
    for op in ops {
        if !seen.insert(op.key()) {
            return Err(Error::Backend(format!(
                "transaction writes {} twice; merge the writes into one op",
                op.key()
            )));
        }
    }
    let mut seen = BTreeSet::new();
    for c in checks {
        if !seen.insert(c.key.as_str()) {
            return Err(Error::Backend(format!(
                "transaction checks {} twice; keep one condition per key",
                c.key
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_failures_name_the_key() {
        assert!(Check::absent("k").failure(0).is_none());
        assert!(matches!(
            Check::absent("k").failure(5),
            Some(Error::AlreadyExists { key }) if key == "k"
        ));
        assert!(matches!(
            Check::revision("k", 5).failure(0),
            Some(Error::NotFound { .. })
        ));
        assert!(Check::revision("k", 5).failure(5).is_none());
        assert!(matches!(
            Check::revision("k", 5).failure(7),
            Some(Error::Conflict {
                expected: 5,
                actual: 7,
                ..
            })
        ));
    }

    #[test]
    fn duplicate_keys_and_empty_transactions_are_refused() {
        assert!(validate(&[], &[]).is_err());
        assert!(validate(&[], &[Op::put("a", vec![]), Op::delete("a")]).is_err());
        assert!(
            validate(
                &[Check::absent("a"), Check::absent("a")],
                &[Op::delete("b")]
            )
            .is_err()
        );
        assert!(validate(&[Check::absent("a")], &[Op::put("a", vec![1])]).is_ok());
    }
}
