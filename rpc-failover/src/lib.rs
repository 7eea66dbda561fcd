//! rpc-failover: see the workspace README.
