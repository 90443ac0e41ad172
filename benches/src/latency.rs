//! Latency samples of one request kind, in microseconds.

use std::time::Instant;

/// Latency samples of one request kind, microseconds.
#[derive(Default)]
pub struct Samples {
    pub us: Vec<u32>,
}

impl Samples {
    pub fn push(&mut self, started: Instant) {
        let us = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
        self.us.push(us);
    }
    pub fn append(&mut self, other: Samples) {
        self.us.extend(other.us);
    }
    /// (p50, p99, max) in milliseconds.
    pub fn quantiles_ms(&mut self) -> (f64, f64, f64) {
        if self.us.is_empty() {
            return (0.0, 0.0, 0.0);
        }
        self.us.sort_unstable();
        let at = |q: f64| {
            let index = ((self.us.len() as f64 - 1.0) * q).round() as usize;
            f64::from(self.us[index]) / 1000.0
        };
        (at(0.50), at(0.99), at(1.0))
    }
}
