//! What the agent says about lasting conditions, once per change rather than every pass:
//! networks it refuses to build, attachments it cannot reach.

use std::collections::BTreeMap;

use overlay_core::model::EndpointStatus;

/// The conditions logged so far.
#[derive(Debug, Default)]
pub struct Seen {
    refused: BTreeMap<String, String>,
    endpoints: BTreeMap<String, EndpointStatus>,
}

impl Seen {
    /// Logs each network newly refused (or refused for another reason), and each one no
    /// longer refused.
    pub fn refused(&mut self, now: &BTreeMap<String, String>) {
        for (net, why) in now {
            if self.refused.get(net) != Some(why) {
                tracing::error!(network = %net, "network {net} is {why}");
            }
        }
        for net in self.refused.keys().filter(|n| !now.contains_key(*n)) {
            tracing::info!(network = %net, "network {net} is no longer refused on this host");
        }
        self.refused = now.clone();
    }

    /// Logs each attachment that became unreachable (or for another reason), and each one
    /// reachable again.
    pub fn endpoints(&mut self, now: &BTreeMap<String, EndpointStatus>) {
        for (key, status) in now {
            let before = self.endpoints.get(key);
            match &status.problem {
                Some(p) if before.and_then(|b| b.problem.as_ref()) != Some(p) => {
                    tracing::warn!(endpoint = %key, "endpoint {key}: cannot bring its attachment in line: {p}");
                }
                None if before.is_some_and(|b| b.problem.is_some()) => {
                    tracing::info!(endpoint = %key, "endpoint {key}: attachment in line again ({})", status.summary());
                }
                _ => {}
            }
        }
        self.endpoints = now.clone();
    }
}
