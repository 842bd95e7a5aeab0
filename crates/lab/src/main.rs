//! `calico-lab`: command-line front of the lab (see the library for what each command does).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use std::time::Duration;

use calico_lab::{agents, inspect, lab, pods, state};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "calico-lab",
    about = "A Calico cluster in network namespaces on this host, from a topology file",
    version
)]
struct Cli {
    /// Directory holding each lab's state directory (state file, datastore, logs).
    #[arg(long, global = true, env = "CALICO_LAB_STATE_DIR", default_value = state::DEFAULT_ROOT)]
    state_dir: PathBuf,
    /// The lab to act on (default: the only lab that is up).
    #[arg(long, global = true, env = "CALICO_LAB")]
    lab: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the lab described by FILE: switch, nodes, datastore, resources.
    Up {
        file: PathBuf,
        /// The node agent to start in every node (default: calico-node next to calico-lab,
        /// if it is there).
        #[arg(long, env = "CALICO_LAB_NODE_BIN")]
        node_bin: Option<PathBuf>,
        /// Start no node agent: only the network.
        #[arg(long, conflicts_with = "node_bin")]
        no_node: bool,
        /// Seconds to wait for the pod-block routes to take the seed shapes before printing.
        #[arg(long, default_value_t = 20)]
        wait: u64,
        /// Do not probe the pod reachability matrix after `up`.
        #[arg(long)]
        no_matrix: bool,
    },
    /// Create or remove a pod (a namespace wired by the calico CNI plugin in its node).
    Pod {
        #[command(subcommand)]
        action: PodAction,
    },
    /// Remove a node from the cluster (its pods, agent, IPAM blocks, Node resource, namespace).
    Node {
        #[command(subcommand)]
        action: NodeAction,
    },
    /// Create or replace Calico resources in the lab's datastore (like `calicoctl apply -f`).
    Apply {
        /// The lab (default: --lab, or the only lab that is up).
        name: Option<String>,
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// Then wait up to this many seconds for the block routes and print the report.
        #[arg(long)]
        wait: Option<u64>,
    },
    /// Block affinities, every node's pod-block routes, pods, and the pod reachability matrix.
    Report {
        /// The lab (default: --lab, or the only lab that is up).
        name: Option<String>,
        /// Seconds to wait for the routes to take the seed shapes first.
        #[arg(long, default_value_t = 0)]
        wait: u64,
    },
    /// Show the lab's namespaces, links, addresses and processes.
    Status {
        /// The lab (default: --lab, or the only lab that is up).
        name: Option<String>,
    },
    /// Run CMD inside a node's, router's or pod's (NAMESPACE/POD) namespace.
    Exec {
        target: String,
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// All-pairs reachability: nodes (ICMP), then pods (ICMP and TCP); exit 1 if a pair fails.
    Check {
        /// The lab (default: --lab, or the only lab that is up).
        name: Option<String>,
    },
    /// Remove everything the lab created, also after a crash of `up`.
    Down { name: Option<String> },
    /// Check a topology file without creating anything.
    Validate { file: PathBuf },
}

#[derive(Subcommand)]
enum NodeAction {
    /// Delete NODE of LAB as upstream's node controller cleans up a deleted node.
    Del { lab: String, node: String },
    /// Stop NODE's calico-node (SIGTERM, or SIGKILL with --kill) and start it again.
    Restart {
        lab: String,
        node: String,
        #[arg(long)]
        kill: bool,
    },
}

#[derive(Subcommand)]
enum PodAction {
    /// Create pod POD on NODE of LAB (a namespace, then CNI ADD run in the node).
    Add {
        lab: String,
        node: String,
        pod: String,
        #[arg(long, default_value = "default")]
        namespace: String,
        /// Pod labels, KEY=VALUE (repeatable).
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
    /// Remove pod POD of LAB (CNI DEL, then its namespace).
    Del {
        lab: String,
        pod: String,
        #[arg(long, default_value = "default")]
        namespace: String,
    },
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?}: labels are KEY=VALUE"))
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let root = state::Root(cli.state_dir);
    match cli.command {
        Command::Up {
            file,
            node_bin,
            no_node,
            wait,
            no_matrix,
        } => {
            let agent = agents::resolve_node_agent(node_bin.as_deref(), no_node)?;
            let opts = lab::UpOptions {
                converge_timeout: Duration::from_secs(wait),
                matrix: !no_matrix,
            };
            lab::up(&root, &file, &agent, opts)?;
        }
        Command::Pod { action } => match action {
            PodAction::Add {
                lab,
                node,
                pod,
                namespace,
                labels,
            } => {
                let labels = labels.into_iter().collect();
                let rec = pods::add(&root, &lab, &node, &namespace, &pod, &labels)?;
                println!(
                    "pod {} on {} is up: {} in {}",
                    rec.key(),
                    rec.node,
                    rec.address.as_deref().unwrap_or("(no address)"),
                    rec.netns
                );
            }
            PodAction::Del {
                lab,
                pod,
                namespace,
            } => {
                pods::del(&root, &lab, &namespace, &pod)?;
                println!("pod {namespace}/{pod} removed");
            }
        },
        Command::Node {
            action: NodeAction::Del { lab, node },
        } => {
            let r = calico_lab::nodes::del(&root, &lab, &node)?;
            println!(
                "node {node} removed: {} pod(s), {} process(es), block affinities released: {}",
                r.pods,
                r.processes,
                if r.blocks.is_empty() {
                    "none".into()
                } else {
                    r.blocks.join(", ")
                }
            );
        }
        Command::Node {
            action: NodeAction::Restart { lab, node, kill },
        } => {
            let how = if kill {
                calico_lab::nodes::StopWith::Kill
            } else {
                calico_lab::nodes::StopWith::Term
            };
            let (old, new) = calico_lab::nodes::restart(&root, &lab, &node, how)?;
            println!("calico-node of {node} restarted: pid {old} -> {new}");
        }
        Command::Apply { name, file, wait } => {
            let lab = lab::pick(&root, name.as_deref().or(cli.lab.as_deref()))?;
            let st = root
                .load(&lab)?
                .ok_or_else(|| anyhow::anyhow!("lab {lab:?} is not up"))?;
            let text = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
            let applied =
                calico_lab::datastore::apply_text(&st, &text, &file.display().to_string())?;
            println!("applied {}", applied.join(", "));
            if let Some(w) = wait {
                println!();
                if !inspect::report(&root, &lab, Duration::from_secs(w), true)? {
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        Command::Report { name, wait } => {
            let lab = lab::pick(&root, name.as_deref().or(cli.lab.as_deref()))?;
            if !inspect::report(&root, &lab, Duration::from_secs(wait), true)? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Status { name } => {
            let lab = lab::pick(&root, name.as_deref().or(cli.lab.as_deref()))?;
            let text = inspect::status(&root, &lab)?;
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = std::io::stdout().write_all(text.as_bytes());
        }
        Command::Exec { target, cmd } => {
            let lab = lab::pick(&root, cli.lab.as_deref())?;
            let code = inspect::exec(&root, &lab, &target, &cmd)?;
            return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
        }
        Command::Check { name } => {
            let lab = lab::pick(&root, name.as_deref().or(cli.lab.as_deref()))?;
            if !inspect::check(&root, &lab)? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Down { name } => {
            let lab = lab::pick(&root, name.as_deref().or(cli.lab.as_deref()))?;
            lab::down(&root, &lab)?;
        }
        Command::Validate { file } => {
            let t = calico_lab::topology::Topology::load(&file)?;
            println!(
                "{}: lab {} with {} subnet(s), {} node(s), {} router(s), {} resource(s), {} pod(s)",
                file.display(),
                t.name,
                t.subnets.len(),
                t.nodes.len(),
                t.routers.len(),
                t.resources.len(),
                t.pods.len()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("calico-lab: {e:#}");
            ExitCode::FAILURE
        }
    }
}
