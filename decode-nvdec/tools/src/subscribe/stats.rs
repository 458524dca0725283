//! What the summary line reports: the publish-to-receive latency of each
//! frame (the publisher's commit time to the moment `next_frame` returned
//! it, both CLOCK_MONOTONIC) and its percentiles.

/// Publish-to-receive latencies of the frames received whole, ns.
#[derive(Debug, Default)]
pub(crate) struct Latencies {
    ns: Vec<u64>,
    sorted: bool,
}

impl Latencies {
    /// Adds one frame's latency: `received_ns - published_ns` (0 if the
    /// clocks disagree).
    pub(crate) fn push(&mut self, received_ns: u64, published_ns: u64) {
        self.ns.push(received_ns.saturating_sub(published_ns));
        self.sorted = false;
    }

    /// Frames counted.
    pub(crate) fn len(&self) -> usize {
        self.ns.len()
    }

    /// The `p` quantile (0.0..=1.0, nearest rank), µs; 0 with no frames.
    pub(crate) fn percentile_us(&mut self, p: f64) -> f64 {
        if !self.sorted {
            self.ns.sort_unstable();
            self.sorted = true;
        }
        self.ns
            .get(((self.ns.len() as f64 - 1.0) * p).round() as usize)
            .map_or(0.0, |&n| n as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_in_microseconds() {
        let mut l = Latencies::default();
        assert_eq!(l.percentile_us(0.5), 0.0);
        for us in [5u64, 1, 4, 2, 3] {
            l.push(1_000_000 + us * 1000, 1_000_000);
        }
        l.push(0, 7); // a clock that went backwards counts as 0
        assert_eq!(l.len(), 6);
        assert_eq!(l.percentile_us(0.0), 0.0);
        assert_eq!(l.percentile_us(0.5), 3.0);
        assert_eq!(l.percentile_us(1.0), 5.0);
    }
}
