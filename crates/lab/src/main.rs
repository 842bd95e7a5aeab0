//! `calico-lab`: command-line front of the lab (see the library for what each command does).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use calico_lab::{agents, lab, state};
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
    },
    /// Show the lab's namespaces, links, addresses and processes.
    Status,
    /// Run CMD inside a node's namespace (NAMESPACE/POD is reserved for pods).
    Exec {
        target: String,
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Ping every node address from every other node (1 s bound per ping).
    Check,
    /// Remove everything the lab created, also after a crash of `up`.
    Down { name: Option<String> },
    /// Check a topology file without creating anything.
    Validate { file: PathBuf },
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let root = state::Root(cli.state_dir);
    match cli.command {
        Command::Up {
            file,
            node_bin,
            no_node,
        } => {
            let agent = agents::resolve_node_agent(node_bin.as_deref(), no_node)?;
            lab::up(&root, &file, &agent)?;
        }
        Command::Status => {
            let text = lab::status(&root, &lab::pick(&root, cli.lab.as_deref())?)?;
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = std::io::stdout().write_all(text.as_bytes());
        }
        Command::Exec { target, cmd } => {
            let lab = lab::pick(&root, cli.lab.as_deref())?;
            let code = lab::exec(&root, &lab, &target, &cmd)?;
            return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
        }
        Command::Check => {
            if !lab::check(&root, &lab::pick(&root, cli.lab.as_deref())?)? {
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
