//! The routing suite every backplane transport must pass, and fault tools
//! for transports' own tests.

pub mod proxy;
