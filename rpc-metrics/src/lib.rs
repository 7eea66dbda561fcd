//! rpc-metrics: see the workspace README.
