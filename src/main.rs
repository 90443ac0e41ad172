//! The `sluice` binary: command-line wiring only. `sluice server` runs the server
//! (sluice-server); the other commands are small clients of its HTTP API.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

mod cluster_cli;

use clap::{Parser, Subcommand};

/// mimalloc: the server allocates per request (bodies, JSON, records); glibc's malloc and
/// free took about 11% of its CPU under the HTTP produce benchmark.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use serde_json::{json, Value};
use sluice_server::client::{Client, Credentials};
use sluice_server::config::Config;
use sluice_server::datadir;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Sluice: a replicated multi-tenant message queue"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct Target {
    /// The server's data directory: its admin secrets, tenants and address are read from it.
    #[arg(long, env = "SLUICE_DATA_DIR", default_value = "./sluice-data")]
    data_dir: PathBuf,
    /// The server's base URL (default: the address the server wrote to the data directory).
    #[arg(long, env = "SLUICE_ENDPOINT")]
    endpoint: Option<String>,
}

#[derive(clap::Args, Clone)]
struct TenantCredentials {
    #[command(flatten)]
    target: Target,
    /// Act as this tenant (by name) from the data directory's tenant list (default: "default").
    #[arg(long, default_value = "default")]
    tenant: String,
    /// Or give the credentials explicitly (all three).
    #[arg(long, env = "SLUICE_PROJECT_ID", requires_all = ["ak", "sk"])]
    project_id: Option<String>,
    #[arg(long, env = "SLUICE_AK")]
    ak: Option<String>,
    #[arg(long, env = "SLUICE_SK")]
    sk: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (config: defaults < --config file < SLUICE_* variables < flags).
    Server {
        /// A TOML file of settings (see docs/server.md).
        #[arg(long, env = "SLUICE_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        http_listen: Option<String>,
        #[arg(long)]
        shards: Option<u32>,
        /// Serve /metrics on this IP:port only, not on the API's address.
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<String>,
        /// Label queue metrics with tenant names too (by default only project ids).
        #[arg(long)]
        metrics_tenant_names: bool,
        /// Serve the Kafka wire protocol on this IP:port (every shard; default: off).
        #[arg(long, value_name = "ADDR")]
        kafka_listen: Option<String>,
        /// The address Kafka clients are told to connect to (default: the
        /// --kafka-listen address, 127.0.0.1 for 0.0.0.0).
        #[arg(long, value_name = "HOST:PORT")]
        kafka_advertise: Option<String>,
        /// Every node's Kafka address in a cluster, this one included, the same list on
        /// every node: `1=HOST:PORT,2=HOST:PORT,...`; Metadata then names each
        /// partition's leader (default: this node alone, forwarding to the leaders).
        #[arg(long, value_name = "ID=HOST:PORT,...")]
        kafka_brokers: Option<String>,
        /// Serve the RocketMQ 5 gRPC protocol on this IP:port (every shard; default: off).
        #[arg(long, value_name = "ADDR")]
        rocketmq_listen: Option<String>,
        /// The address RocketMQ clients are told to connect to (default: the
        /// --rocketmq-listen address, 127.0.0.1 for 0.0.0.0).
        #[arg(long, value_name = "HOST:PORT")]
        rocketmq_advertise: Option<String>,
        /// This node's id in a cluster (with --cluster-listen and --peers).
        #[arg(long, value_name = "N")]
        node_id: Option<u64>,
        /// Where this node accepts its peers' connections, IP:port.
        #[arg(long, value_name = "ADDR")]
        cluster_listen: Option<String>,
        /// Every node of the cluster, this one included, the same list on every node:
        /// ID=IP:PORT,ID=IP:PORT,...
        #[arg(long, value_name = "ID=ADDR,...")]
        peers: Option<String>,
        /// The nodes of --peers every partition's group starts with (default: all of
        /// them); the others join by `sluice cluster add-node` or `move`. The same on
        /// every node.
        #[arg(long, value_name = "ID,...")]
        initial_voters: Option<String>,
        /// Any other setting, as key=value (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        settings: Vec<String>,
    },
    /// A local cluster for trying it out, and how a node sees its cluster.
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// Manage tenants through the admin API.
    Tenant {
        #[command(subcommand)]
        action: TenantAction,
    },
    /// Create a queue (NORMAL by default).
    QueueCreate {
        name: String,
        #[arg(long)]
        fifo: bool,
        /// Dead-letter after this many failed deliveries.
        #[arg(long)]
        max_consume_count: Option<u32>,
        #[command(flatten)]
        who: TenantCredentials,
    },
    /// Create a consumer group on a queue.
    GroupCreate {
        queue: String,
        name: String,
        #[command(flatten)]
        who: TenantCredentials,
    },
    /// Send messages (each argument is one message; JSON if it parses, else a string).
    Send {
        queue: String,
        #[arg(required = true)]
        messages: Vec<String>,
        #[command(flatten)]
        who: TenantCredentials,
    },
    /// Receive messages for a consumer group (prints handler and body per line).
    Receive {
        queue: String,
        group: String,
        #[arg(long, default_value_t = 10)]
        max: u32,
        /// Long-poll seconds.
        #[arg(long, default_value_t = 3)]
        wait: u32,
        /// Visibility timeout, seconds.
        #[arg(long, default_value_t = 30)]
        ack_wait: u32,
        #[command(flatten)]
        who: TenantCredentials,
    },
    /// A consumer group's dead letters.
    DeadLetters {
        #[command(subcommand)]
        action: DeadLettersAction,
    },
    /// Acknowledge received messages by handler.
    Ack {
        queue: String,
        group: String,
        #[arg(required = true)]
        handlers: Vec<String>,
        /// Report failure (the message comes back) instead of success.
        #[arg(long)]
        fail: bool,
        #[command(flatten)]
        who: TenantCredentials,
    },
}

#[derive(Subcommand)]
enum ClusterAction {
    /// Start NODES `sluice server` processes on 127.0.0.1 as one cluster (node N: HTTP on
    /// HTTP_BASE+N-1, cluster port CLUSTER_BASE+N-1, data in DIR/nodeN); Ctrl-C stops them.
    Local(cluster_cli::Local),
    /// A node's readiness and each partition's leader as it sees them (GET /readyz),
    /// then every partition's replicas as its leader sees them (GET /admin/cluster).
    Status {
        #[command(flatten)]
        target: Target,
    },
    /// Give node ID (one of --peers) a voting replica of every partition: it joins each
    /// group as a learner, copies the log, then votes. Traffic goes on meanwhile.
    AddNode {
        id: u64,
        #[command(flatten)]
        target: Target,
    },
    /// Move every partition's replica on node FROM to node TO (online: each partition
    /// adds TO as a learner, then swaps it in for FROM in one joint-consensus change).
    Move {
        from: u64,
        to: u64,
        #[command(flatten)]
        target: Target,
    },
    /// Take every partition's replica off node ID (leads hand over first); the node can
    /// then be stopped.
    RemoveNode {
        id: u64,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand)]
enum DeadLettersAction {
    /// Write every dead letter of GROUP of QUEUE to stdout as JSON lines (one message a
    /// line: body, attributes, tags, message_id, sent_time), without consuming them.
    Export {
        queue: String,
        group: String,
        #[command(flatten)]
        who: TenantCredentials,
    },
}

#[derive(Subcommand)]
enum TenantAction {
    Create {
        name: String,
        /// A password for Keystone logins (POST /v3/auth/tokens).
        #[arg(long)]
        password: Option<String>,
        /// Print exactly {"project_id", "ak", "sk"}.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    Delete {
        project_id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Set a tenant's quotas.
    Quotas {
        project_id: String,
        #[arg(long)]
        queues_max: u32,
        #[arg(long)]
        groups_per_queue_max: u32,
        #[command(flatten)]
        target: Target,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sluice: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Server {
            config,
            data_dir,
            http_listen,
            shards,
            metrics_listen,
            metrics_tenant_names,
            kafka_listen,
            kafka_advertise,
            kafka_brokers,
            rocketmq_listen,
            rocketmq_advertise,
            node_id,
            cluster_listen,
            peers,
            initial_voters,
            settings,
        } => {
            let mut resolved = Config::defaults();
            if let Some(path) = config {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                resolved
                    .apply_toml(&text)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
            resolved.apply_env(std::env::vars())?;
            if let Some(dir) = data_dir {
                resolved.data_dir = dir;
            }
            if let Some(listen) = http_listen {
                resolved.set("http_listen", &listen)?;
            }
            if let Some(shards) = shards {
                resolved.shards = shards;
            }
            if let Some(listen) = metrics_listen {
                resolved.set("metrics_listen", &listen)?;
            }
            if metrics_tenant_names {
                resolved.metrics_tenant_names = true;
            }
            if let Some(listen) = kafka_listen {
                resolved
                    .set("kafka_listen", &listen)
                    .map_err(|e| format!("--kafka-listen: {e}"))?;
            }
            if let Some(advertise) = kafka_advertise {
                resolved
                    .set("kafka_advertise", &advertise)
                    .map_err(|e| format!("--kafka-advertise: {e}"))?;
            }
            if let Some(brokers) = kafka_brokers {
                resolved
                    .set("kafka_brokers", &brokers)
                    .map_err(|e| format!("--kafka-brokers: {e}"))?;
            }
            if let Some(listen) = rocketmq_listen {
                resolved
                    .set("rocketmq_listen", &listen)
                    .map_err(|e| format!("--rocketmq-listen: {e}"))?;
            }
            if let Some(advertise) = rocketmq_advertise {
                resolved
                    .set("rocketmq_advertise", &advertise)
                    .map_err(|e| format!("--rocketmq-advertise: {e}"))?;
            }
            if let Some(node_id) = node_id {
                resolved.set("node_id", &node_id.to_string())?;
            }
            if let Some(listen) = cluster_listen {
                resolved
                    .set("cluster_listen", &listen)
                    .map_err(|e| format!("--cluster-listen: {e}"))?;
            }
            if let Some(peers) = peers {
                resolved
                    .set("peers", &peers)
                    .map_err(|e| format!("--peers: {e}"))?;
            }
            if let Some(voters) = initial_voters {
                resolved
                    .set("initial_voters", &voters)
                    .map_err(|e| format!("--initial-voters: {e}"))?;
            }
            for setting in settings {
                let (key, value) = setting
                    .split_once('=')
                    .ok_or_else(|| format!("--set {setting:?}: expected KEY=VALUE"))?;
                resolved.set(key, value)?;
            }
            sluice_server::run::run(resolved)
        }
        Command::Tenant { action } => tenant(action),
        Command::Cluster { action } => cluster(action),
        Command::QueueCreate {
            name,
            fifo,
            max_consume_count,
            who,
        } => {
            let mode = if fifo { "FIFO" } else { "NORMAL" };
            print_json(&client(&who)?.create_queue(&name, mode, max_consume_count)?)
        }
        Command::GroupCreate { queue, name, who } => {
            print_json(&client(&who)?.create_group(&queue, &name)?)
        }
        Command::Send {
            queue,
            messages,
            who,
        } => {
            let bodies: Vec<Value> = messages
                .iter()
                .map(|m| serde_json::from_str(m).unwrap_or_else(|_| Value::String(m.clone())))
                .collect();
            let client = client(&who)?;
            for chunk in bodies.chunks(10) {
                print_json(&client.send(&queue, chunk)?)?;
            }
            Ok(())
        }
        Command::Receive {
            queue,
            group,
            max,
            wait,
            ack_wait,
            who,
        } => {
            let got = client(&who)?.receive(&queue, &group, max, wait, ack_wait)?;
            for message in got.as_array().into_iter().flatten() {
                let handler = message["handler"].as_str().unwrap_or("");
                println!("{handler}\t{}", message["message"]["body"]);
            }
            Ok(())
        }
        Command::Ack {
            queue,
            group,
            handlers,
            fail,
            who,
        } => print_json(&client(&who)?.ack(&queue, &group, &handlers, !fail)?),
        Command::DeadLetters {
            action: DeadLettersAction::Export { queue, group, who },
        } => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let written = client(&who)?.export_dead_letters(&queue, &group, &mut out)?;
            std::io::Write::flush(&mut out).map_err(|e| e.to_string())?;
            eprintln!("sluice: exported {written} dead letters");
            Ok(())
        }
    }
}

fn print_json(value: &Value) -> Result<(), String> {
    println!("{value}");
    Ok(())
}

/// How long a command waits for a server that is starting: for its `server.json` to
/// appear in the data directory, then for the address in it to accept connections.
const SERVER_WAIT: Duration = Duration::from_millis(5_000);
/// Pause between two looks at the data directory while waiting.
const SERVER_POLL: Duration = Duration::from_millis(20);

/// A client of `endpoint`; one whose address came from the data directory waits up to
/// [`SERVER_WAIT`] for the server to accept connections.
fn client_of(target: &Target, credentials: Credentials) -> Result<Client, String> {
    let client = Client::new(&endpoint(target)?, credentials);
    Ok(match target.endpoint {
        Some(_) => client,
        None => client.with_connect_wait(SERVER_WAIT),
    })
}

/// `--endpoint`, or the address the server wrote to the data directory. The server
/// writes it before its port accepts connections and removes it when it stops
/// (docs/server.md, "Start-up"), so a missing file means no server or one starting:
/// wait up to [`SERVER_WAIT`] for it.
fn endpoint(target: &Target) -> Result<String, String> {
    if let Some(endpoint) = &target.endpoint {
        return Ok(endpoint.clone());
    }
    let deadline = Instant::now() + SERVER_WAIT;
    // Bounded by SERVER_WAIT.
    loop {
        if let Some(server) = datadir::read_server_file(&target.data_dir)? {
            return Ok(server.http);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no server address in {} after waiting {} ms: no server is running on \
                 this data directory (start one, or pass --endpoint)",
                target.data_dir.join(datadir::SERVER_FILE).display(),
                SERVER_WAIT.as_millis()
            ));
        }
        std::thread::sleep(SERVER_POLL);
    }
}

fn client(who: &TenantCredentials) -> Result<Client, String> {
    let credentials = match (&who.project_id, &who.ak, &who.sk) {
        (Some(project_id), Some(ak), Some(sk)) => Credentials {
            project_id: project_id.clone(),
            ak: ak.clone(),
            sk: sk.clone(),
        },
        _ => {
            let tenants = datadir::load_tenants(&who.target.data_dir)?;
            let tenant = tenants
                .into_iter()
                .find(|t| t.name == who.tenant)
                .ok_or_else(|| format!("no tenant named {:?} in the data directory", who.tenant))?;
            Credentials {
                project_id: tenant.project_id,
                ak: tenant.ak,
                sk: tenant.sk,
            }
        }
    };
    client_of(&who.target, credentials)
}

fn admin_client(target: &Target) -> Result<Client, String> {
    let secrets = datadir::load_secrets(&target.data_dir)?;
    let credentials = Credentials {
        project_id: String::new(),
        ak: secrets.admin_ak,
        sk: secrets.admin_sk,
    };
    client_of(target, credentials)
}

fn cluster(action: ClusterAction) -> Result<(), String> {
    match action {
        ClusterAction::Local(local) => cluster_cli::local(&local),
        ClusterAction::Status { target } => {
            let endpoint = endpoint(&target)?;
            let authority = endpoint
                .split_once("://")
                .map_or(endpoint.as_str(), |(_, rest)| rest)
                .trim_end_matches('/');
            let address = authority
                .parse()
                .map_err(|_| format!("{endpoint}: expected http://IP:PORT"))?;
            let (status, body) = cluster_cli::readyz(address)?;
            println!("{body}");
            if status != 200 {
                return Err(format!("not ready (HTTP {status})"));
            }
            let members = admin_client(&target)?.call("GET", "/admin/cluster", None)?;
            print_json(&members.ok()?)
        }
        ClusterAction::AddNode { id, target } => {
            let body = json!({ "id": id });
            let answer =
                admin_client(&target)?.call("POST", "/admin/cluster/nodes", Some(&body))?;
            print_json(&answer.ok()?)
        }
        ClusterAction::Move { from, to, target } => {
            let body = json!({ "from": from, "to": to });
            let answer = admin_client(&target)?.call("POST", "/admin/cluster/move", Some(&body))?;
            print_json(&answer.ok()?)
        }
        ClusterAction::RemoveNode { id, target } => {
            let path = format!("/admin/cluster/nodes/{id}");
            let answer = admin_client(&target)?.call("DELETE", &path, None)?;
            print_json(&answer.ok()?)
        }
    }
}

fn tenant(action: TenantAction) -> Result<(), String> {
    match action {
        TenantAction::Create {
            name,
            password,
            json,
            target,
        } => {
            let mut body = serde_json::json!({ "name": name });
            if let Some(password) = password {
                body["password"] = password.into();
            }
            let created = admin_client(&target)?
                .call("POST", "/admin/tenants", Some(&body))?
                .ok()?;
            if json {
                // Exactly these three fields, in this order.
                println!(
                    "{{\"project_id\": {}, \"ak\": {}, \"sk\": {}}}",
                    created["project_id"], created["ak"], created["sk"]
                );
            } else {
                println!("created tenant {name:?}");
                println!(
                    "  project_id: {}",
                    created["project_id"].as_str().unwrap_or("")
                );
                println!("  ak:         {}", created["ak"].as_str().unwrap_or(""));
                println!("  sk:         {}", created["sk"].as_str().unwrap_or(""));
            }
            Ok(())
        }
        TenantAction::List { json, target } => {
            let listed = admin_client(&target)?
                .call("GET", "/admin/tenants", None)?
                .ok()?;
            if json {
                println!("{listed}");
            } else {
                for tenant in listed["tenants"].as_array().into_iter().flatten() {
                    println!(
                        "{}\t{}\t{}",
                        tenant["project_id"].as_str().unwrap_or(""),
                        tenant["name"].as_str().unwrap_or(""),
                        tenant["ak"].as_str().unwrap_or("")
                    );
                }
            }
            Ok(())
        }
        TenantAction::Quotas {
            project_id,
            queues_max,
            groups_per_queue_max,
            target,
        } => {
            let body = serde_json::json!({
                "queues_max": queues_max,
                "groups_per_queue_max": groups_per_queue_max,
            });
            let path = format!("/admin/tenants/{project_id}/quotas");
            print_json(
                &admin_client(&target)?
                    .call("PUT", &path, Some(&body))?
                    .ok()?,
            )
        }
        TenantAction::Delete { project_id, target } => {
            admin_client(&target)?
                .call("DELETE", &format!("/admin/tenants/{project_id}"), None)?
                .ok()?;
            println!("deleted tenant {project_id}");
            Ok(())
        }
    }
}
