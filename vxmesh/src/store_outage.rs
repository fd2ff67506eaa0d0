//! The agent without its store: it keeps the kernel as it is (the datapath forwards on the
//! last state it programmed), retries with a growing backoff, logs when the store went away
//! and came back, and publishes the spell in its host report (`vxmesh node ls`).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use overlay_core::model::StoreOutage;

/// First retry after this long, doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest wait between two tries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(4);

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Tracks the current spell without the store, and the last one.
#[derive(Debug, Default)]
pub struct Outages {
    current: Option<(Instant, u64, String)>,
    backoff: Duration,
    /// The last spell that ended (for the host report).
    pub last: Option<StoreOutage>,
}

impl Outages {
    /// A store operation (`what`) failed: logs it (the first failure as a warning, later ones
    /// at debug level) and returns how long to wait before the next try.
    pub fn failed(&mut self, what: &str, error: &dyn std::fmt::Display) -> Duration {
        self.backoff = if self.current.is_none() {
            FIRST_BACKOFF
        } else {
            (self.backoff * 2).min(MAX_BACKOFF)
        };
        match &mut self.current {
            None => {
                tracing::warn!(
                    "store unreachable ({what}: {error}); keeping the kernel as it is and \
                     trying again with backoff (first in {:?}, at most every {:?})",
                    self.backoff,
                    MAX_BACKOFF
                );
                self.current = Some((Instant::now(), unix_ms(), error.to_string()));
            }
            Some((since, _, last)) => {
                *last = error.to_string();
                tracing::debug!(
                    "store still unreachable after {:.1}s ({what}: {error}); next try in {:?}",
                    since.elapsed().as_secs_f64(),
                    self.backoff
                );
            }
        }
        self.backoff
    }

    /// A store operation succeeded: ends the spell, if any, and logs it.
    pub fn ok(&mut self) {
        if let Some((since, began_ms, error)) = self.current.take() {
            tracing::info!(
                "store reachable again after {:.1}s without it (last error: {error})",
                since.elapsed().as_secs_f64()
            );
            self.last = Some(StoreOutage {
                began_ms,
                ended_ms: unix_ms(),
                error,
            });
        }
    }

    /// True while the store is unreachable.
    pub fn ongoing(&self) -> bool {
        self.current.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_a_success_ends_the_spell() {
        let mut o = Outages::default();
        assert_eq!(o.failed("read", &"down"), FIRST_BACKOFF);
        assert_eq!(o.failed("read", &"down"), FIRST_BACKOFF * 2);
        for _ in 0..10 {
            o.failed("read", &"still down");
        }
        assert_eq!(o.failed("read", &"still down"), MAX_BACKOFF);
        assert!(o.ongoing() && o.last.is_none());
        o.ok();
        let last = o.last.clone().unwrap();
        assert_eq!(last.error, "still down");
        assert!(last.ended_ms >= last.began_ms);
        assert!(!o.ongoing());
        assert_eq!(o.failed("read", &"again"), FIRST_BACKOFF);
    }
}
