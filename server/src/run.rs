//! `sluice server`: resolve the data directory, start one shard per core, serve until
//! SIGTERM or SIGINT, then shut down gracefully (stop accepting, finish in-flight
//! requests, snapshot every partition, exit 0).

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use glommio::channels::channel_mesh::MeshBuilder;
use glommio::net::TcpListener;
use sluice_http::dms::DmsConfig;
use sluice_http::service::ServiceConfig;
use sluice_node::tenants::{Quotas, TenantDirectory};
use sluice_node::Job;
use sluice_rocketmq::RocketMqConfig;
use sluice_shard::executor::ShardStartup;
use sluice_tcp::kafka::KafkaConfig;

use crate::cluster::{ClusterNet, ShardNet, TransportLimits};
use crate::config::Config;
use crate::datadir::{self, ServerFile};
use crate::http::Role;
use crate::password_pool::PasswordPool;
use crate::shard::{ServerHost, Shard};
use crate::shared::Shared;

/// Messages buffered per pair of shards on the mesh.
const MESH_CHANNEL_CAPACITY: usize = 4096;
/// Start-up barriers re-check this often.
const BARRIER_POLL_MS: u64 = 2;
/// Longest a shutdown waits for in-flight requests (long polls end within a second).
const DRAIN_MS_MAX: u64 = 30_000;

/// What the first start prints: the default tenant's credentials.
pub struct FirstStart {
    pub tenant: sluice_node::tenants::Tenant,
    pub password: String,
}

pub fn run(config: Config) -> Result<(), String> {
    config.validate()?;
    let cluster = config.cluster()?;
    // Fail-stop: a shard that panics (a broken invariant) takes the process down, so no
    // other shard waits forever on it; restart recovers from the logs.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        std::process::abort();
    }));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let shard_count = if config.shards == 0 {
        cores
    } else {
        config.shards as usize
    };
    let partitions_wanted = if config.partitions == 0 {
        u32::try_from(shard_count).expect("at most 256 shards")
    } else {
        config.partitions
    };
    let (facts, secrets, _) = datadir::open_or_init(&config.data_dir, partitions_wanted)?;
    let _lock = lock_data_dir(&config.data_dir)?;
    // A server.json left by a killed server names a dead address: remove it before this
    // server starts, so a client waits for the new one (docs/server.md, "Start-up").
    datadir::remove_server_file(&config.data_dir)
        .map_err(|e| format!("cannot remove the old {}: {e}", datadir::SERVER_FILE))?;
    let mut tenants = datadir::load_tenants(&config.data_dir)?;
    // No tenants file: a new data directory (or one whose first start stopped before
    // writing it). After that, partition 0 holds the tenants, and deleting them all does
    // not bring a default back.
    let first_start = if !datadir::has_tenants_file(&config.data_dir) {
        let password = datadir::random_alnum(20, false);
        let quotas = Quotas {
            queues_max: config.tenant_queues_max,
            groups_per_queue_max: config.tenant_groups_per_queue_max,
        };
        let now_ms = crate::shared::wall_ms();
        let hash = crate::secrets::hash_password(&password);
        let tenant = datadir::new_tenant("default", Some(hash), quotas, now_ms);
        tenants.push(tenant.clone());
        datadir::store_tenants(&config.data_dir, &tenants).map_err(|e| e.to_string())?;
        Some(FirstStart { tenant, password })
    } else {
        None
    };
    let passwords = PasswordPool::start(
        usize::try_from(config.password_threads).expect("u32 fits"),
        usize::try_from(config.password_queue_max).expect("u32 fits"),
    )?;
    let shared = Shared::new(
        config.clone(),
        facts,
        secrets,
        shard_count,
        TenantDirectory::new(tenants),
        passwords,
        cluster,
    );
    let mut net = start_cluster_net(&shared)?;
    install_signal_handler(shared.clone())?;
    let spin =
        (config.spin_before_park_us > 0).then(|| Duration::from_micros(config.spin_before_park_us));
    let startup = ShardStartup::prepare(u32::try_from(shard_count).expect("small"), spin);
    let mesh = MeshBuilder::<Job<ServerHost>, _>::full(shard_count, MESH_CHANNEL_CAPACITY);
    let first_start = Arc::new(std::sync::Mutex::new(first_start));
    let mut handles = Vec::new();
    for index in 0..shard_count {
        let shared = shared.clone();
        let mesh = mesh.clone();
        let first_start = first_start.clone();
        let shard_net = net.as_ref().map(|net| net.shard(index));
        let handle = startup
            .builder(index % cores)
            .name(&format!("sluice-shard-{index}"))
            .spawn(move || async move {
                let result = shard_main(index, shared.clone(), mesh, first_start, shard_net).await;
                if result.is_err() {
                    // Let the other shards leave their barriers.
                    shared.stopping.store(true, Ordering::Release);
                }
                result
            })
            .map_err(|e| format!("cannot start shard {index}: {e}"))?;
        handles.push(handle);
    }
    let mut failure = None;
    for (index, handle) in handles.into_iter().enumerate() {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => failure = failure.or(Some(format!("shard {index}: {error}"))),
            Err(error) => failure = failure.or(Some(format!("shard {index} crashed: {error}"))),
        }
    }
    if let Some(net) = net.as_mut() {
        net.stop();
    }
    // Still holding the lock: no other server can have written the file since.
    if let Err(error) = datadir::remove_server_file(&config.data_dir) {
        eprintln!("sluice: cannot remove {}: {error}", datadir::SERVER_FILE);
    }
    match failure {
        Some(error) => Err(error),
        None => {
            eprintln!("sluice: stopped cleanly");
            Ok(())
        }
    }
}

/// Cluster mode: binds the cluster port (`--cluster-listen`) for every shard's
/// transport, which each shard starts on its executor. `None` on a single node.
fn start_cluster_net(shared: &Shared) -> Result<Option<ClusterNet>, String> {
    let Some(cluster) = &shared.cluster else {
        return Ok(None);
    };
    let net = ClusterNet::bind(cluster, shared.shard_count, TransportLimits::standard())?;
    eprintln!(
        "sluice: cluster mode: node {} of {}, cluster port {}; every partition is a Raft \
         group of every node",
        cluster.node_id,
        cluster.peers.len(),
        net.local_addr()
    );
    Ok(Some(net))
}

/// One server per data directory: a second one would corrupt the logs.
fn lock_data_dir(data_dir: &std::path::Path) -> Result<std::fs::File, String> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let path = data_dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(datadir::FILE_MODE)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    // An older LOCK keeps its mode through `open`: set it (docs/server.md, "Data directory").
    file.set_permissions(std::fs::Permissions::from_mode(datadir::FILE_MODE))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(format!(
                "{} is in use by another sluice server (cannot lock {})",
                data_dir.display(),
                path.display()
            ))
        }
        Err(std::fs::TryLockError::Error(error)) => {
            return Err(format!("cannot lock {}: {error}", path.display()))
        }
    }
    Ok(file)
}

fn install_signal_handler(shared: Arc<Shared>) -> Result<(), String> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    std::thread::Builder::new()
        .name("sluice-signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                eprintln!("sluice: signal {signal}: shutting down");
                shared.stopping.store(true, Ordering::Release);
            }
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    Ok(())
}

/// Waits until `done()` or the server is stopping; Err when it stopped first.
async fn barrier(shared: &Shared, what: &str, done: impl Fn() -> bool) -> Result<(), String> {
    // Bounded by start-up: every shard either reaches the barrier or fails and stops all.
    while !done() {
        if shared.stopping() {
            return Err(format!("stopped while waiting for {what}"));
        }
        glommio::timer::sleep(Duration::from_millis(BARRIER_POLL_MS)).await;
    }
    Ok(())
}

async fn shard_main(
    index: usize,
    shared: Arc<Shared>,
    mesh: glommio::channels::channel_mesh::MeshBuilder<
        Job<ServerHost>,
        glommio::channels::channel_mesh::Full,
    >,
    first_start: Arc<std::sync::Mutex<Option<FirstStart>>>,
    net: Option<ShardNet>,
) -> Result<(), String> {
    let (senders, receivers) = mesh.join().await.map_err(|e| format!("mesh: {e}"))?;
    let own_peer = senders.peer_id();
    shared.peer_of_shard[index].store(own_peer, Ordering::Release);
    barrier(&shared, "the mesh", || {
        shared
            .peer_of_shard
            .iter()
            .all(|p| p.load(Ordering::Acquire) != usize::MAX)
    })
    .await?;
    let peers = senders.nr_consumers();
    let directories = shared.directories.clone();
    let shard = Shard::open(index, shared.clone(), directories, senders).await?;
    if let Some(net) = net {
        shard.start_replication(net);
    }
    let receivers = Rc::new(receivers);
    for peer in (0..peers).filter(|p| *p != own_peer) {
        shard.spawn_mesh_receiver(receivers.clone(), peer);
    }
    if index == 0 {
        reconcile(&shard).await?;
        let node = shard.node.clone();
        glommio::spawn_local(async move { node.follow_metadata().await }).detach();
        shared.directory_ready.store(true, Ordering::Release);
        // The console's charts: every queue's counts, sampled at the configured interval.
        let (node, every) = (shard.node.clone(), shared.config.monitor_interval_ms);
        let sampler = shared.clone();
        glommio::spawn_local(async move {
            // Runs until the node stops.
            while !sampler.stopping() {
                node.sample_monitor().await;
                glommio::timer::sleep(Duration::from_millis(every)).await;
            }
        })
        .detach();
    }
    barrier(&shared, "the directory", || {
        shared.directory_ready.load(Ordering::Acquire)
    })
    .await?;
    shard.spawn_tickers();
    // Shard 0 holds the port (bound, not listening) until every shard listens on it.
    let reservation = if index == 0 {
        Some(reserve_port(&shared)?)
    } else {
        None
    };
    // After `bind`, which waits for shard 0's port: every shard's endpoint (the Keystone
    // catalog's URL) names the real port, never 0.
    let listener = bind(&shard).await?;
    let kafka = bind_kafka(&shard).await?;
    let rocketmq = bind_rocketmq(&shard).await?;
    let endpoint = format!(
        "http://{}:{}",
        shared.config.http_listen.ip(),
        shared.port.load(Ordering::Acquire)
    );
    shared.listening.fetch_add(1, Ordering::AcqRel);
    barrier(&shared, "every shard to listen", || {
        shared.listening.load(Ordering::Acquire) == shared.shard_count
    })
    .await?;
    drop(reservation);
    let service = Rc::new(service_config(&shared, &endpoint));
    if index == 0 {
        let metrics = match shared.config.metrics_listen {
            Some(address) => {
                let listener = TcpListener::bind(address)
                    .map_err(|e| format!("cannot listen on {address} (metrics_listen): {e}"))?;
                let bound = listener.local_addr().map_err(|e| e.to_string())?;
                let loop_ = crate::http::accept_loop(
                    shard.clone(),
                    listener,
                    service.clone(),
                    Role::Metrics,
                );
                glommio::spawn_local(loop_).detach();
                Some(bound)
            }
            None => None,
        };
        let kafka = kafka
            .as_ref()
            .map(|(_, bound, config)| crate::kafka::describe(*bound, config));
        let rocketmq = rocketmq
            .as_ref()
            .map(|(_, bound, _)| crate::rocketmq::describe(*bound));
        // The banner names every extra listener after the HTTP one.
        let kafka = match (kafka, rocketmq) {
            (Some(kafka), Some(rocketmq)) => Some(format!("{kafka}; {rocketmq}")),
            (kafka, rocketmq) => kafka.or(rocketmq),
        };
        announce(&shared, &endpoint, metrics, kafka, first_start)?;
    }
    if let Some((listener, _, config)) = kafka {
        let loop_ = crate::kafka::accept_loop(shard.clone(), listener, config);
        glommio::spawn_local(loop_).detach();
    }
    if let Some((listener, _, config)) = rocketmq {
        let loop_ = crate::rocketmq::accept_loop(shard.clone(), listener, config);
        glommio::spawn_local(loop_).detach();
    }
    crate::http::accept_loop(shard.clone(), listener, service, Role::Api).await;
    drain(&shard).await;
    static DRAINED: AtomicUsize = AtomicUsize::new(0);
    DRAINED.fetch_add(1, Ordering::AcqRel);
    // Keep serving other shards' forwarded calls until every shard has drained.
    while DRAINED.load(Ordering::Acquire) < shared.shard_count {
        glommio::timer::sleep(Duration::from_millis(BARRIER_POLL_MS)).await;
    }
    shard.sync_all().await;
    shard.stop_replication().await;
    Ok(())
}

/// Shard 0's repair of the partitions' metadata before serving. On a single node a
/// failure stops start-up. In a cluster a repair writes to partitions that other nodes
/// may lead, which answer "not leader": the failure is logged and the next metadata
/// change repairs first (docs/server.md, "Cluster mode").
async fn reconcile(shard: &Shard) -> Result<(), String> {
    match shard.node.reconcile().await {
        Ok(()) => Ok(()),
        Err(error) if shard.shared.cluster.is_some() => {
            eprintln!("sluice: metadata repair at start-up deferred: {error}");
            Ok(())
        }
        Err(error) => Err(error),
    }
}

/// Shard 0's start-up step before anyone listens: binds the configured address without
/// listening (resolving port 0), writes `server.json` with the bound port, and only then
/// publishes the port to the other shards, which (like shard 0 itself) then bind and
/// listen on it. So the port accepts no connection before `server.json` names it: a
/// client that reaches the port finds the file (docs/server.md, "Start-up"). The returned
/// socket holds the port (SO_REUSEPORT, like glommio's listeners) until every shard
/// listens; a bound socket that does not listen receives no connections.
fn reserve_port(shared: &Shared) -> Result<socket2::Socket, String> {
    let wanted = shared.config.http_listen;
    let cannot = |e: std::io::Error| format!("cannot listen on {wanted}: {e}");
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(wanted),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .map_err(cannot)?;
    socket.set_reuse_port(true).map_err(cannot)?;
    socket.bind(&wanted.into()).map_err(cannot)?;
    let port = socket
        .local_addr()
        .map_err(cannot)?
        .as_socket()
        .expect("an IP socket has an IP address")
        .port();
    let server = ServerFile {
        http: format!("http://{}:{port}", wanted.ip()),
        pid: std::process::id(),
    };
    datadir::write_server_file(&shared.config.data_dir, &server)
        .map_err(|e| format!("cannot write {}: {e}", datadir::SERVER_FILE))?;
    shared.port.store(port, Ordering::Release);
    Ok(socket)
}

/// Every shard binds and listens on the port shard 0 reserved (SO_REUSEPORT).
async fn bind(shard: &Rc<Shard>) -> Result<TcpListener, String> {
    let shared = &shard.shared;
    barrier(shared, "shard 0's port", || {
        shared.port.load(Ordering::Acquire) != 0
    })
    .await?;
    let address = std::net::SocketAddr::new(
        shared.config.http_listen.ip(),
        shared.port.load(Ordering::Acquire),
    );
    TcpListener::bind(address).map_err(|e| format!("cannot listen on {address}: {e}"))
}

/// With `kafka_listen`: every shard's Kafka listener (SO_REUSEPORT), on the port shard 0
/// bound first (which resolves port 0), its address, and what the adapter tells clients.
async fn bind_kafka(
    shard: &Rc<Shard>,
) -> Result<Option<(TcpListener, SocketAddr, Arc<KafkaConfig>)>, String> {
    let shared = &shard.shared;
    let Some(wanted) = shared.config.kafka_listen else {
        return Ok(None);
    };
    let address = if shard.index == 0 {
        wanted
    } else {
        barrier(shared, "shard 0's Kafka port", || {
            shared.kafka_port.load(Ordering::Acquire) != 0
        })
        .await?;
        SocketAddr::new(wanted.ip(), shared.kafka_port.load(Ordering::Acquire))
    };
    let listener = TcpListener::bind(address)
        .map_err(|e| format!("cannot listen on {address} (kafka_listen): {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    if shard.index == 0 {
        shared.kafka_port.store(bound.port(), Ordering::Release);
    }
    let config = Arc::new(shared.config.kafka_config(bound));
    Ok(Some((listener, bound, config)))
}

/// With `rocketmq_listen`: every shard's RocketMQ listener (SO_REUSEPORT), on the port
/// shard 0 bound first (which resolves port 0), its address, and what the adapter tells
/// clients.
async fn bind_rocketmq(
    shard: &Rc<Shard>,
) -> Result<Option<(TcpListener, SocketAddr, Arc<RocketMqConfig>)>, String> {
    let shared = &shard.shared;
    let Some(wanted) = shared.config.rocketmq_listen else {
        return Ok(None);
    };
    let address = if shard.index == 0 {
        wanted
    } else {
        barrier(shared, "shard 0's RocketMQ port", || {
            shared.rocketmq_port.load(Ordering::Acquire) != 0
        })
        .await?;
        SocketAddr::new(wanted.ip(), shared.rocketmq_port.load(Ordering::Acquire))
    };
    let listener = TcpListener::bind(address)
        .map_err(|e| format!("cannot listen on {address} (rocketmq_listen): {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    if shard.index == 0 {
        shared.rocketmq_port.store(bound.port(), Ordering::Release);
    }
    let config = Arc::new(shared.config.rocketmq_config(bound));
    Ok(Some((listener, bound, config)))
}

fn announce(
    shared: &Shared,
    endpoint: &str,
    metrics: Option<std::net::SocketAddr>,
    kafka: Option<String>,
    first_start: Arc<std::sync::Mutex<Option<FirstStart>>>,
) -> Result<(), String> {
    let metrics = match metrics {
        Some(address) => format!("; metrics on http://{address}"),
        None => String::new(),
    };
    let kafka = match kafka {
        Some(kafka) => format!("; {kafka}"),
        None => String::new(),
    };
    println!(
        "sluice {} listening on {endpoint} ({} shards, {} partitions, data in \
         {}{metrics}{kafka})",
        env!("CARGO_PKG_VERSION"),
        shared.shard_count,
        shared.facts.partitions,
        shared.config.data_dir.display()
    );
    let first = first_start.lock().expect("not poisoned").take();
    if let Some(first) = first {
        println!("first start: created tenant \"default\"");
        println!("  project_id: {}", first.tenant.project_id);
        println!("  ak:         {}", first.tenant.ak);
        println!("  sk:         {}", first.tenant.sk);
        println!("  password:   {}", first.password);
        println!("  endpoint:   {endpoint}");
        println!(
            "(also kept in {}, mode 0600)",
            shared.config.data_dir.join(datadir::TENANTS_FILE).display()
        );
    }
    use std::io::Write;
    std::io::stdout().flush().map_err(|e| e.to_string())
}

/// The service's settings; the admin secrets are partition 0's (learned before any shard
/// serves, at shard 0's start).
fn service_config(shared: &Shared, endpoint: &str) -> ServiceConfig {
    let config = &shared.config;
    let secrets = shared.secrets();
    ServiceConfig {
        dms: DmsConfig {
            ack_wait_s_min: config.ack_wait_s_min,
            request_bytes_max: config.request_body_bytes_max,
            retention_minutes: config.queue_retention_minutes,
            ..DmsConfig::dms_default()
        },
        clock_skew_s_max: config.clock_skew_s_max,
        token_ttl_s: config.token_ttl_s,
        token_key: secrets.token_key_bytes(),
        admin_ak: secrets.admin_ak,
        admin_sk: secrets.admin_sk,
        endpoint: endpoint.to_string(),
        region: "region-1".to_string(),
    }
}

/// Waits for this shard's connections to finish their requests and close.
async fn drain(shard: &Shard) {
    let mut waited = 0;
    // Bounded by DRAIN_MS_MAX.
    while (shard.connections_open.get() > 0 || shard.requests_inflight.get() > 0)
        && waited < DRAIN_MS_MAX
    {
        glommio::timer::sleep(Duration::from_millis(10)).await;
        waited += 10;
    }
}
