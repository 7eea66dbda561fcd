//! rpc-cache: see the workspace README.
