//! [`Connection`]: what the store's operations run on, named so that other crates need not
//! depend on the `redis` crate to pass one along.

/// Anything the store's operations can send commands through: a [`crate::Redis`] handle, a
/// [`crate::PinnedConnection`], or a connection a test opened with its own Redis client.
///
/// Crates above the store bound their generic functions on this instead of
/// `redis::aio::ConnectionLike`, so the `redis` crate stays a dependency of the store alone
/// (and of the tests).
pub trait Connection: redis::aio::ConnectionLike + Send {}

impl<C: redis::aio::ConnectionLike + Send> Connection for C {}
