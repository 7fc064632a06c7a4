//! The per-target reporter: the console's, with each line prefixed by the target.

use crate::deploy::{Reporter, StackEvent};
use crate::diff::StackDiff;
use crate::stage::CapacityReport;
use std::cell::RefCell;

/// Reports one target's progress through `inner` as `[eu-west-1/111111111111] line`; keeps
/// the target's diff and capacity instead of printing them (the fan-out prints one grouped
/// diff); never asks anything (approval is asked once, for every target).
pub struct Prefixed<'a> {
    label: String,
    inner: &'a dyn Reporter,
    diff: RefCell<Option<StackDiff>>,
    capacity: RefCell<Option<CapacityReport>>,
}

impl<'a> Prefixed<'a> {
    pub fn new(label: String, inner: &'a dyn Reporter) -> Prefixed<'a> {
        Prefixed {
            label,
            inner,
            diff: RefCell::new(None),
            capacity: RefCell::new(None),
        }
    }

    /// The diff this target's deploy reported, if it got that far.
    pub fn diff(&self) -> Option<StackDiff> {
        self.diff.borrow().clone()
    }

    /// The capacity this target's deploy decided, if it got that far.
    pub fn capacity(&self) -> Option<CapacityReport> {
        self.capacity.borrow().clone()
    }
}

impl Reporter for Prefixed<'_> {
    fn progress(&self, line: &str) {
        self.inner.progress(&format!("[{}] {line}", self.label));
    }

    fn event(&self, event: &StackEvent) {
        self.progress(&event.line());
    }

    fn diff(&self, diff: &StackDiff) {
        *self.diff.borrow_mut() = Some(diff.clone());
    }

    fn confirm(&self, _question: &str) -> bool {
        false
    }

    fn capacity(&self, report: &CapacityReport) {
        *self.capacity.borrow_mut() = Some(report.clone());
        self.progress(&report.line());
    }
}
