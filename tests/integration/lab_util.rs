//! What the lab's integration tests share: the experiment of a claim, running it, and reading
//! the facts its parts recorded (panicking with the whole finding or part when one is missing).

use serde_json::Value;
use socklab::lab::{self, Experiment, Finding, Lab, Part};

/// The experiment of `claim`.
pub(crate) fn experiment(claim: u8) -> &'static dyn Experiment {
    lab::registry()
        .into_iter()
        .find(|e| e.claim() == claim)
        .unwrap_or_else(|| panic!("claim {claim} is not registered"))
}

/// Runs the experiment of `claim` in `lab`.
pub(crate) fn run(claim: u8, lab: &Lab) -> Finding {
    lab::run_one(experiment(claim), lab)
}

/// Part `id` of `f`.
pub(crate) fn part<'a>(f: &'a Finding, id: &str) -> &'a Part {
    f.parts
        .iter()
        .find(|p| p.id == id)
        .unwrap_or_else(|| panic!("no part {}{id}: {f:#?}", f.claim))
}

/// The fact `key` of part `p`.
pub(crate) fn fact<'a>(p: &'a Part, key: &str) -> &'a Value {
    p.evidence
        .facts
        .get(key)
        .unwrap_or_else(|| panic!("part {} has no fact {key}: {p:#?}", p.id))
}
