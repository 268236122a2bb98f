//! Where a server is in stopping: read by every connection's driver when its outbox says
//! stop, to choose between parking for a successor, serving on, and closing with which code.

use std::sync::atomic::{AtomicU8, Ordering};

/// What a driver told to stop does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Serving: a stop left over from a handover that failed; serve on.
    Serving,
    /// A healthy successor waits for the connections: a movable one parks, the others
    /// serve on until the handover commits (then close with 1012) or fails.
    HandingOver,
    /// A successor took over: close with 1012 and `[handover] reason`, over `[drain] spread`.
    HandedOver,
    /// A shutdown without successor: close as `[drain]` says.
    Shutdown,
}

/// The [`Phase`] of one process's servers, shared by every driver.
#[derive(Debug, Default)]
pub(crate) struct StopPhase(AtomicU8);

impl StopPhase {
    pub(crate) fn get(&self) -> Phase {
        match self.0.load(Ordering::Acquire) {
            1 => Phase::HandingOver,
            2 => Phase::HandedOver,
            3 => Phase::Shutdown,
            _ => Phase::Serving,
        }
    }

    pub(crate) fn set(&self, phase: Phase) {
        let value = match phase {
            Phase::Serving => 0,
            Phase::HandingOver => 1,
            Phase::HandedOver => 2,
            Phase::Shutdown => 3,
        };
        self.0.store(value, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phase_reads_back_as_set() {
        let phase = StopPhase::default();
        assert_eq!(phase.get(), Phase::Serving);
        for p in [
            Phase::HandingOver,
            Phase::Serving,
            Phase::HandedOver,
            Phase::Shutdown,
        ] {
            phase.set(p);
            assert_eq!(phase.get(), p);
        }
    }
}
