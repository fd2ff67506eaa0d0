//! Placement: which host gets a new replica, and which replicas go when a service shrinks.
//! Pure functions over host names, so the rules are easy to read and to test: spread the
//! replicas of a service evenly over the live hosts (Swarm's default "spread" strategy).

use std::collections::BTreeMap;

/// The host for a new replica of a service whose replicas run on `current` (one host name per
/// replica): the live host (from `live`) with the fewest of them, the first by name on a tie.
/// `None` when no host is live.
pub fn place<'a>(live: &'a [String], current: &[&str]) -> Option<&'a str> {
    live.iter()
        .map(String::as_str)
        .min_by_key(|h| (current.iter().filter(|c| *c == h).count(), *h))
}

/// The replicas to remove when a service with replicas on `current` (one host name per
/// replica, oldest first) shrinks by `n`: indexes into `current`, one at a time from the host
/// that has the most (the last by name on a tie), its newest replica first. Fewer than `n`
/// when there are fewer replicas.
pub fn surplus(current: &[&str], n: usize) -> Vec<usize> {
    let mut left: Vec<usize> = (0..current.len()).collect();
    let mut out = Vec::new();
    while out.len() < n && !left.is_empty() {
        let mut per_host: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for &i in &left {
            per_host.entry(current[i]).or_default().push(i);
        }
        let (_, busiest) = per_host
            .iter()
            .max_by_key(|(h, v)| (v.len(), *h))
            .expect("left is not empty");
        let newest = *busiest.last().expect("a host listed has replicas");
        left.retain(|&i| i != newest);
        out.push(newest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn spreads_six_over_three_hosts() {
        let live = hosts(&["h1", "h2", "h3"]);
        let mut current: Vec<&str> = Vec::new();
        for _ in 0..6 {
            let h = place(&live, &current).unwrap();
            current.push(h);
        }
        assert_eq!(current, ["h1", "h2", "h3", "h1", "h2", "h3"]);
    }

    #[test]
    fn fills_the_emptiest_host_and_skips_dead_ones() {
        let live = hosts(&["h1", "h3"]);
        // h2 is dead: its replicas are gone; h3 has fewer than h1.
        assert_eq!(place(&live, &["h1", "h1", "h3"]), Some("h3"));
        assert_eq!(place(&[], &["h1"]), None);
    }

    #[test]
    fn shrinks_the_busiest_host_newest_first() {
        let current = ["h1", "h2", "h3", "h1", "h2", "h3", "h1"];
        // h1 has 3: its newest (6) goes first; then h3 (the last by name of the hosts with 2).
        assert_eq!(surplus(&current, 3), vec![6, 5, 4]);
        assert_eq!(surplus(&current[..2], 5), vec![1, 0]);
    }
}
