//! The syncer: list + watch → in-memory cache plus ordered updates and an in-sync marker.
