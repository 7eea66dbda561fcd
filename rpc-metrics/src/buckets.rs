//! Histogram buckets for the metrics in the [crate table](crate).
//!
//! `metrics-exporter-prometheus` renders histograms as summaries (quantiles
//! per process, which cannot be aggregated across replicas) unless told the
//! buckets. Give it these:
//!
//! ```
//! use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
//!
//! let builder = PrometheusBuilder::new()
//!     .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), rpc_metrics::buckets::SECONDS)?
//!     .set_buckets_for_metric(
//!         Matcher::Suffix("batch_size".into()),
//!         rpc_metrics::buckets::BATCH_SIZE,
//!     )?;
//! // then: let handle = builder.install_recorder()?; rpc_metrics::describe();
//! // and serve handle.render() at GET /metrics.
//! # drop(builder);
//! # Ok::<(), metrics_exporter_prometheus::BuildError>(())
//! ```

/// For every `*_seconds` histogram: 1 ms to 30 s, about 2.5× apart (a
/// cache hit, a node's answer, a stalled member and a client's deadline all
/// land in different buckets).
pub const SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// For `rpc_batch_size` and `rpc_backend_batch_size`: 1 to the default
/// client batch cap (1 000).
pub const BATCH_SIZE: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0];
