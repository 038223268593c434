//! Which pairs run together. By default, rounds of a round-robin tournament (the circle
//! method): every round pairs disjoint agents, so no agent is ever in two tests at once, and
//! every ordered pair (a, b), a ≠ b, runs exactly once: 2(n − 1) rounds for an even n, 2n for
//! an odd n (one agent sits each round out). With `--concurrency N` the ordered pairs run N at
//! a time in the same order, sharing agents, to measure contention on purpose.

/// An ordered pair of agent indices: (source, target).
pub type Pair = (usize, usize);

/// Rounds of disjoint ordered pairs covering all n(n − 1) ordered pairs of `n` agents.
pub fn rounds(n: usize) -> Vec<Vec<Pair>> {
    if n < 2 {
        return Vec::new();
    }
    // With an odd n, a phantom agent `n` makes the count even; its partner sits out.
    let m = if n % 2 == 0 { n } else { n + 1 };
    let ring = m - 1;
    let unordered: Vec<Vec<Pair>> = (0..ring)
        .map(|r| {
            let mut round = vec![(ring, r)];
            for k in 1..m / 2 {
                round.push(((r + k) % ring, (r + ring - k) % ring));
            }
            round.retain(|&(a, b)| a < n && b < n);
            round
        })
        .collect();
    let forward = unordered.iter().cloned();
    let back = unordered
        .iter()
        .map(|round| round.iter().map(|&(a, b)| (b, a)).collect());
    forward.chain(back).collect()
}

/// The same ordered pairs, `concurrency` at a time regardless of shared agents.
pub fn batches(n: usize, concurrency: usize) -> Vec<Vec<Pair>> {
    let all: Vec<Pair> = rounds(n).into_iter().flatten().collect();
    all.chunks(concurrency.max(1))
        .map(<[Pair]>::to_vec)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_ordered_pair_once_and_no_agent_twice_in_a_round() {
        for n in 2..=9 {
            let rs = rounds(n);
            assert_eq!(
                rs.len(),
                if n % 2 == 0 { 2 * (n - 1) } else { 2 * n },
                "n={n}"
            );
            let mut seen = HashSet::new();
            for r in &rs {
                let mut busy = HashSet::new();
                for &(a, b) in r {
                    assert_ne!(a, b);
                    assert!(busy.insert(a) && busy.insert(b), "n={n}: {r:?}");
                    assert!(seen.insert((a, b)), "n={n}: ({a},{b}) twice");
                }
                assert_eq!(r.len(), n / 2, "n={n}: every round as full as it can be");
            }
            assert_eq!(seen.len(), n * (n - 1));
        }
        assert!(rounds(1).is_empty() && rounds(0).is_empty());
    }

    #[test]
    fn batches_share_agents_on_purpose() {
        let b = batches(4, 5);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [5, 5, 2]);
        assert_eq!(batches(3, 1).len(), 6);
    }
}
