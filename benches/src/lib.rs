//! Benchmarks: micro (log, engine) and end-to-end, each reported beside a baseline measured in the same run.
