//! rpc-electrum: see the workspace README.
