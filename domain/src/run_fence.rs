//! The run's fence: which stage holder may still write to a run.
//!
//! The queue fences its own writes with the lease token, but a stage's writes to the run (its
//! cells, the sync link, the run's end) go to the domain's collection, where a holder whose lease
//! was reaped could still land them after the job's next holder took the stage up (a write stuck
//! in a black-holed link, a worker paused past its lease). So each holder takes the run up with a
//! [`RunFence`]: the stage's place in the pipeline and its lease token in one number, which only
//! grows as the run moves on. Taking up is a compare-and-set that never lowers it; every write a
//! holder makes filters on its own fence, so once a newer holder (or a later stage) has taken the
//! run up, an older holder's write matches nothing. Each landed holder write also appends a
//! [`FenceEntry`] to the run's `fence_log` in the same update, so the order in which they landed
//! can be checked afterwards (the chaos run does): the fences there never decrease.

use mongodb::bson::oid::ObjectId;
use mongodb::bson::{DateTime, Document, doc};
use serde::{Deserialize, Serialize};

/// A stage holder's fence: `(stage's place in the pipeline, lease token)`, ordered as that pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunFence(i64);

/// Lease tokens of one job grow by one per claim; 2^40 claims leave plenty of room.
const TOKEN_BITS: u32 = 40;

impl RunFence {
    /// The fence of a finished run: above every holder's, so that a holder still at work when
    /// the run was finished from outside (cancelled, timed out) lands nothing more on it.
    pub const CLOSED: RunFence = RunFence(i64::MAX);

    /// The fence of the holder of stage number `stage` (its place in the pipeline) under lease
    /// `token`.
    pub fn new(stage: u8, token: i64) -> RunFence {
        RunFence((i64::from(stage) << TOKEN_BITS) | token.clamp(0, (1 << TOKEN_BITS) - 1))
    }

    pub fn stage(self) -> u8 {
        (self.0 >> TOKEN_BITS) as u8
    }

    pub fn token(self) -> i64 {
        self.0 & ((1 << TOKEN_BITS) - 1)
    }
}

impl std::fmt::Display for RunFence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if *self == RunFence::CLOSED {
            return f.write_str("closed (the run is finished)");
        }
        write!(f, "stage {} token {}", self.stage(), self.token())
    }
}

/// Who writes to a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunWriter {
    /// A stage holder: the write lands only while the run's fence is its own, and is logged.
    Holder(RunFence),
    /// Not a stage holder (an operator's cancel, a reaper, a stitch fan-out to another run, the
    /// run's creator): unfenced.
    Outside,
}

/// A write made on behalf of run `run_id` by `writer` outside the run's own document: to its
/// tenant's keyed sets ([`crate::materialize`]), or to the run's sync and evidence pack. A
/// holder's such write is refused once the run's fence is no longer its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForRun {
    pub run_id: ObjectId,
    pub writer: RunWriter,
}

impl ForRun {
    /// For a run as its stage holder took it up: fenced by the fence it holds.
    pub fn holder_of(run: &crate::ScanRun) -> ForRun {
        ForRun {
            run_id: run.id,
            writer: run.fence.map_or(RunWriter::Outside, RunWriter::Holder),
        }
    }

    /// A write from outside the stages, for run `run_id`.
    pub fn outside(run_id: ObjectId) -> ForRun {
        ForRun {
            run_id,
            writer: RunWriter::Outside,
        }
    }

    /// The holder's fence; `None` from outside the stages.
    pub fn fence(self) -> Option<RunFence> {
        match self.writer {
            RunWriter::Holder(fence) => Some(fence),
            RunWriter::Outside => None,
        }
    }
}

/// One landed holder write, in the run's `fence_log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceEntry {
    pub fence: RunFence,
    /// `take_up`, `cell <name>`, `cells`, `sync`, `finish <status>`.
    pub write: String,
    pub at: DateTime,
}

impl RunWriter {
    /// The filter of a write by this writer to run `id`: exactly the fields of a unique index,
    /// as the stand needs (`{_id, tenant_id}` or `{_id, tenant_id, fence}`).
    pub(crate) fn filter(self, tenant_id: &str, id: ObjectId) -> Document {
        let mut filter = doc! { "_id": id, "tenant_id": tenant_id };
        if let RunWriter::Holder(fence) = self {
            filter.insert("fence", fence.0);
        }
        filter
    }

    /// Adds the `fence_log` entry of a holder's `write` to `update`.
    pub(crate) fn log(self, update: &mut Document, write: &str) {
        if let RunWriter::Holder(fence) = self {
            update.insert(
                "$push",
                doc! { "fence_log": { "fence": fence.0, "write": write, "at": DateTime::now() } },
            );
        }
    }
}

/// How many times a take-up retries its compare-and-set when other holders move the fence
/// between its read and its write.
pub(crate) const TAKE_UP_TRIES: usize = 8;

/// The stale commits in a run's `fence_log`: entries that landed after one with a higher fence.
pub fn stale_entries(log: &[FenceEntry]) -> Vec<&FenceEntry> {
    let mut highest = None;
    let mut stale = Vec::new();
    for entry in log {
        if highest.is_some_and(|h| entry.fence < h) {
            stale.push(entry);
        } else {
            highest = Some(entry.fence);
        }
    }
    stale
}

impl From<RunFence> for mongodb::bson::Bson {
    fn from(fence: RunFence) -> Self {
        mongodb::bson::Bson::Int64(fence.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_stage_outranks_any_token_of_an_earlier_one() {
        assert!(RunFence::new(1, 1) > RunFence::new(0, 1_000_000));
        assert!(RunFence::new(2, 7) > RunFence::new(2, 6));
        assert_eq!(RunFence::new(3, 9).stage(), 3);
        assert_eq!(RunFence::new(3, 9).token(), 9);
    }

    #[test]
    fn an_entry_below_an_earlier_one_is_stale() {
        let entry = |stage, token| FenceEntry {
            fence: RunFence::new(stage, token),
            write: "w".into(),
            at: DateTime::from_millis(0),
        };
        let log = [
            entry(0, 1),
            entry(0, 1),
            entry(1, 1),
            entry(0, 1),
            entry(1, 2),
        ];
        let stale = stale_entries(&log);
        assert_eq!(stale, vec![&log[3]]);
        assert!(stale_entries(&log[..3]).is_empty());
    }
}
