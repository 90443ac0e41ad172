//! HTTP adapters: the DMS queue API v1.0, the SQS-compatible JSON API, the web console's
//! assets and Prometheus `/metrics`. Adapters translate a protocol into kernel commands
//! and kernel errors into protocol errors; they hold no queue semantics. Filled by the
//! single-node server issue.
