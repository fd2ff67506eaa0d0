//! The attachments of this host: both ends of every endpoint's veth pair.

use crate::dataplane::Link;
use crate::model::{Endpoint, EndpointStatus};

use super::apply::{change, Change, Reconciler};

impl Reconciler {
    /// Puts the host end of `e`'s veth pair on `bridge`, up, and both ends at the attachment's
    /// MTU (the network's `network_mtu`, or the lower one the endpoint asked for). The
    /// container end is reached through the namespace id the kernel reports for the host
    /// end's peer, so it follows wherever the container lives. What cannot be done is the
    /// endpoint's status, not an error of the network: the other attachments still follow.
    pub(super) async fn attachment(
        &self,
        e: &Endpoint,
        bridge: &Link,
        network_mtu: u32,
        changes: &mut Vec<Change>,
    ) -> EndpointStatus {
        let want = e.attachment_mtu(network_mtu);
        let problem = |p: String| EndpointStatus {
            mtu: None,
            problem: Some(p),
        };
        let Some(name) = &e.host_ifname else {
            return problem("it has no host end".into());
        };
        let host = match self.dp.link(name).await {
            Ok(Some(l)) => l,
            Ok(None) => {
                return problem(format!(
                    "its host end {name} is missing (its container or namespace may be gone)"
                ))
            }
            Err(err) => return problem(format!("cannot read its host end {name}: {err}")),
        };
        // A veth whose bridge was recreated has lost its master: put it back.
        if let Err(err) = self.ensure_port(&host, bridge, want, changes).await {
            return problem(err.to_string());
        }
        let peer = match self.dp.veth_peer(&host).await {
            Ok(Some(p)) => p,
            Ok(None) => return problem(format!("the container end of {name} is gone")),
            Err(err) => return problem(format!("cannot reach the container end of {name}: {err}")),
        };
        if peer.mtu != want {
            if let Err(err) = self.dp.set_veth_peer_mtu(&host, want).await {
                return problem(format!(
                    "cannot set the MTU of its container end {}: {err}",
                    peer.name
                ));
            }
            changes.push(change(
                "set mtu",
                format!("{} (container end of {name}) {want}", peer.name),
            ));
        }
        EndpointStatus {
            mtu: Some(want),
            problem: None,
        }
    }
}
