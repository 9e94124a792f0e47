//! The gateway library: the HTTP/GraphQL API of `imx serve`, kept in a library
//! so that integration tests can run a real server in-process.

pub mod api;
pub mod bounded;
