//! Which nodes form the cluster: `--node-id`, `--cluster-listen` and `--peers`, parsed
//! and checked together into a [`ClusterConfig`]. Runtime-free; the transport and (later)
//! Raft read it. Without these settings the server is the single-node server it was.

use std::net::SocketAddr;

use xxhash_rust::xxh3::xxh3_64;

use super::NodeId;

/// The most voters a cluster may name in `--peers`.
pub const CLUSTER_VOTERS_MAX: usize = 7;

/// A node as `--peers` names it: its id and the address of its cluster port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The node's id, at least 1.
    pub id: NodeId,
    /// Where the node accepts its peers' connections.
    pub address: SocketAddr,
}

/// Parses `--peers`: `ID=IP:PORT` entries separated by commas (spaces around them
/// ignored), for example `1=10.0.0.1:7000,2=10.0.0.2:7000,3=10.0.0.3:7000`. Only the
/// syntax is checked here; [`ClusterConfig::new`] checks the list as a whole. An empty
/// text is an empty list.
pub fn parse_peers(text: &str) -> Result<Vec<Peer>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split(',').map(parse_peer).collect()
}

fn parse_peer(entry: &str) -> Result<Peer, String> {
    let entry = entry.trim();
    let (id, address) = entry
        .split_once('=')
        .ok_or_else(|| format!("peer {entry:?} is not ID=IP:PORT"))?;
    let id = id
        .trim()
        .parse::<u64>()
        .map_err(|_| format!("peer {entry:?}: {:?} is not a node id", id.trim()))?;
    let address = address.trim().parse::<SocketAddr>().map_err(|_| {
        format!(
            "peer {entry:?}: {:?} is not an IP:port address",
            address.trim()
        )
    })?;
    Ok(Peer {
        id: NodeId(id),
        address,
    })
}

/// Formats a peer list the way [`parse_peers`] reads it.
pub fn format_peers(peers: &[Peer]) -> String {
    let entries: Vec<String> = peers
        .iter()
        .map(|peer| format!("{}={}", peer.id, peer.address))
        .collect();
    entries.join(",")
}

/// The checked cluster settings of this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This node (`--node-id`).
    pub node_id: NodeId,
    /// Where this node accepts its peers' connections (`--cluster-listen`).
    pub listen: SocketAddr,
    /// Every node of the cluster, this one included, by ascending id (`--peers`).
    pub peers: Vec<Peer>,
    /// The voters every partition's group starts with, by ascending id
    /// (`--initial-voters`; every peer unless set). Peers outside them hold no voting
    /// replica until a membership change adds them.
    pub initial_voters: Vec<NodeId>,
}

impl ClusterConfig {
    /// Checks the three settings together: ids at least 1 and unique, addresses unique,
    /// connectable (no port 0, no unspecified IP) and 1 to [`CLUSTER_VOTERS_MAX`] of them,
    /// this node among them, and its entry the listening address (or, when listening on
    /// every interface, the same port).
    pub fn new(
        node_id: NodeId,
        listen: SocketAddr,
        mut peers: Vec<Peer>,
    ) -> Result<ClusterConfig, String> {
        if listen.port() == 0 {
            return Err("cluster_listen needs a fixed port: the peers name it".into());
        }
        new_check_list(&peers)?;
        peers.sort_by_key(|peer| peer.id);
        let own = peers
            .iter()
            .find(|peer| peer.id == node_id)
            .ok_or_else(|| {
                format!(
                    "node_id {node_id} is not in peers ({})",
                    format_peers(&peers)
                )
            })?;
        let same_port = own.address.port() == listen.port();
        let same_ip = own.address.ip() == listen.ip() || listen.ip().is_unspecified();
        if !(same_port && same_ip) {
            return Err(format!(
                "peers names node {node_id} at {}, but cluster_listen is {listen}",
                own.address
            ));
        }
        let initial_voters = peers.iter().map(|peer| peer.id).collect();
        Ok(ClusterConfig {
            node_id,
            listen,
            peers,
            initial_voters,
        })
    }

    /// Every node but this one.
    pub fn others(&self) -> impl Iterator<Item = &Peer> {
        self.peers.iter().filter(|peer| peer.id != self.node_id)
    }

    /// Sets the first voters of every group (`--initial-voters`): a non-empty subset of
    /// the peers.
    pub fn with_initial_voters(mut self, mut voters: Vec<NodeId>) -> Result<ClusterConfig, String> {
        voters.sort();
        voters.dedup();
        if voters.is_empty() {
            return Err("initial_voters must name at least one node".into());
        }
        if let Some(stranger) = voters
            .iter()
            .find(|id| !self.peers.iter().any(|peer| peer.id == **id))
        {
            return Err(format!(
                "initial_voters names node {stranger}, which is not in peers ({})",
                format_peers(&self.peers)
            ));
        }
        self.initial_voters = voters;
        Ok(self)
    }

    /// Names this cluster in every hello: a hash of the peer list (and of the initial
    /// voters when they are not every peer), so that nodes given different lists (another
    /// cluster, or a mistake) refuse each other's connections.
    pub fn cluster_id(&self) -> u64 {
        let mut text = format!("sluice-cluster-v1 {}", format_peers(&self.peers));
        if self.initial_voters.len() != self.peers.len() {
            let voters: Vec<String> = self
                .initial_voters
                .iter()
                .map(ToString::to_string)
                .collect();
            text.push_str(&format!(" voters {}", voters.join(",")));
        }
        xxh3_64(text.as_bytes())
    }
}

/// The checks of a peer list on its own.
fn new_check_list(peers: &[Peer]) -> Result<(), String> {
    if peers.is_empty() || peers.len() > CLUSTER_VOTERS_MAX {
        return Err(format!(
            "peers must name 1 to {CLUSTER_VOTERS_MAX} nodes, not {}",
            peers.len()
        ));
    }
    for (index, peer) in peers.iter().enumerate() {
        if peer.id.0 == 0 {
            return Err("peers: node ids start at 1".into());
        }
        if peer.address.port() == 0 || peer.address.ip().is_unspecified() {
            return Err(format!(
                "peers: node {} at {} cannot be connected to (port 0 or unspecified IP)",
                peer.id, peer.address
            ));
        }
        for earlier in &peers[..index] {
            if earlier.id == peer.id {
                return Err(format!("peers: node id {} appears twice", peer.id));
            }
            if earlier.address == peer.address {
                return Err(format!(
                    "peers: nodes {} and {} share the address {}",
                    earlier.id, peer.id, peer.address
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(node_id: u64, listen: &str, peers: &str) -> Result<ClusterConfig, String> {
        ClusterConfig::new(
            NodeId(node_id),
            listen.parse().unwrap(),
            parse_peers(peers)?,
        )
    }

    const THREE: &str = "3=127.0.0.1:7003, 1=127.0.0.1:7001,2=127.0.0.1:7002";

    #[test]
    fn a_valid_list_is_sorted_and_names_the_others() {
        let config = check(2, "127.0.0.1:7002", THREE).unwrap();
        let ids: Vec<u64> = config.peers.iter().map(|peer| peer.id.0).collect();
        assert_eq!(ids, [1, 2, 3]);
        let others: Vec<u64> = config.others().map(|peer| peer.id.0).collect();
        assert_eq!(others, [1, 3]);
        assert_eq!(
            format_peers(&config.peers),
            "1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003"
        );
        let wildcard = check(2, "0.0.0.0:7002", THREE).unwrap();
        assert_eq!(
            wildcard.cluster_id(),
            config.cluster_id(),
            "one list, one id"
        );
        let other = check(1, "127.0.0.1:7001", "1=127.0.0.1:7001,2=127.0.0.1:7002").unwrap();
        assert_ne!(other.cluster_id(), config.cluster_id());
        assert!(
            check(1, "[::1]:7001", "1=[::1]:7001").is_ok(),
            "IPv6, one node"
        );
    }

    #[test]
    fn mistakes_are_refused_with_a_reason() {
        let cases = [
            (4, "127.0.0.1:7004", THREE, "not in peers"),
            (2, "127.0.0.1:7009", THREE, "cluster_listen is"),
            (2, "127.0.0.2:7002", THREE, "cluster_listen is"),
            (2, "127.0.0.1:0", THREE, "fixed port"),
            (
                1,
                "127.0.0.1:7001",
                "1=127.0.0.1:7001,1=127.0.0.1:7002",
                "twice",
            ),
            (
                1,
                "127.0.0.1:7001",
                "1=127.0.0.1:7001,2=127.0.0.1:7001",
                "share",
            ),
            (
                1,
                "127.0.0.1:7001",
                "1=127.0.0.1:7001,2=0.0.0.0:7002",
                "cannot be connected",
            ),
            (
                1,
                "127.0.0.1:7001",
                "1=127.0.0.1:7001,0=127.0.0.1:7000",
                "start at 1",
            ),
            (1, "127.0.0.1:7001", "", "1 to 7"),
            (1, "127.0.0.1:7001", "1=127.0.0.1:7001,2", "ID=IP:PORT"),
            (1, "127.0.0.1:7001", "x=127.0.0.1:7001", "not a node id"),
            (1, "127.0.0.1:7001", "1=localhost:7001", "IP:port"),
        ];
        for (node_id, listen, peers, reason) in cases {
            let error = check(node_id, listen, peers).unwrap_err();
            assert!(error.contains(reason), "{peers}: {error}");
        }
        let eight: Vec<String> = (1..=8)
            .map(|id| format!("{id}=127.0.0.1:{}", 7000 + id))
            .collect();
        let error = check(1, "127.0.0.1:7001", &eight.join(",")).unwrap_err();
        assert!(error.contains("1 to 7"), "{error}");
    }
}
