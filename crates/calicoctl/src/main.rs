//! calicoctl: manage Calico resources in the datastore, with upstream calicoctl's commands,
//! flags, tables and messages.
//!
//! ```text
//!  argv ──clap──▶ command ──▶ crud (create/apply/replace/delete/validate) │ get │ edit (patch,
//!  label) │ version ──▶ Outcome { stdout text, error } ──▶ print, exit 0 / 1
//! ```
//!
//! Every command reads and checks all of its input before it writes anything (see `crud`).

mod args;
mod client;
mod crud;
mod edit;
mod get;
mod input;
mod ipam;
mod ipam_check;
mod ipam_split;
mod ipam_table;
mod node_delete;
mod output;
mod table;
mod version;

use clap::{Args, Parser, Subcommand};
use crud::{Action, Outcome};
use std::io::Write;

#[derive(Parser)]
#[command(
    name = "calicoctl",
    about = "Calico CLI tool for managing Calico resources",
    long_about = "The calicoctl command line tool is used to manage Calico network and security\n\
                  policy, to view and manage endpoint configuration, and to manage a Calico\n\
                  node instance.",
    version = concat!("v", env!("CARGO_PKG_VERSION"))
)]
struct Cli {
    /// Set the log level (panic, fatal, error, warn, info, debug).
    #[arg(short = 'l', long = "log-level", global = true, default_value = "panic",
          value_parser = ["panic", "fatal", "error", "warn", "warning", "info", "debug", "trace"])]
    log_level: String,
    /// The name of the kubeconfig context to use (accepted for compatibility).
    #[arg(long, global = true)]
    context: Option<String>,
    /// Allow client and cluster versions mismatch (accepted for compatibility).
    #[arg(long = "allow-version-mismatch", global = true)]
    allow_version_mismatch: bool,
    #[command(subcommand)]
    command: Command,
}

/// Flags shared by create/apply/replace/delete/get/validate.
#[derive(Args, Clone)]
struct Crud {
    /// Filename to use to create/apply/replace/delete the resource. Use '-' for stdin.
    #[arg(short = 'f', long = "filename")]
    filename: Option<String>,
    /// Process the filename specified in -f recursively.
    #[arg(short = 'R', long)]
    recursive: bool,
    /// Do not error if files contain no data.
    #[arg(long = "skip-empty")]
    skip_empty: bool,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Args, Clone)]
struct Conn {
    /// Path to the file containing connection configuration in YAML or JSON format.
    #[arg(short = 'c', long, default_value = client::DEFAULT_CONFIG)]
    config: String,
    /// Namespace of the resource.
    #[arg(short = 'n', long)]
    namespace: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Create a resource by file, directory or stdin.
    Create {
        #[command(flatten)]
        crud: Crud,
        /// Skip over resources that already exist.
        #[arg(long = "skip-exists")]
        skip_exists: bool,
    },
    /// Apply a resource by file, directory or stdin.
    Apply {
        #[command(flatten)]
        crud: Crud,
    },
    /// Replace a resource by file, directory or stdin.
    Replace {
        #[command(flatten)]
        crud: Crud,
    },
    /// Delete a resource by file, directory, stdin, or type and name.
    Delete {
        #[command(flatten)]
        crud: Crud,
        /// Skip over resources that do not exist.
        #[arg(short = 's', long = "skip-not-exists")]
        skip_not_exists: bool,
        kind: Option<String>,
        names: Vec<String>,
    },
    /// Get a resource by file, directory, stdin, or type and name.
    Get {
        #[command(flatten)]
        crud: Crud,
        /// Output format: yaml, json, ps, wide, name, custom-columns=...
        #[arg(short = 'o', long, default_value = "ps")]
        output: String,
        /// List the requested object(s) across all namespaces.
        #[arg(short = 'A', long = "all-namespaces", short_alias = 'a')]
        all_namespaces: bool,
        /// Strip cluster-specific information from the output.
        #[arg(long)]
        export: bool,
        kind: Option<String>,
        names: Vec<String>,
    },
    /// Patch a pre-existing resource in place.
    Patch {
        kind: String,
        name: String,
        #[command(flatten)]
        conn: Conn,
        /// Spec to use to patch the resource.
        #[arg(short = 'p', long)]
        patch: String,
        /// Format of patch type: strategic or merge (both apply a JSON merge patch).
        #[arg(short = 't', long = "type", default_value = "strategic")]
        patch_type: String,
    },
    /// Add or update labels of resources.
    Label {
        kind: String,
        name: String,
        /// key=value to set, or the key to remove with --remove.
        label: String,
        #[command(flatten)]
        conn: Conn,
        /// Overwrite the value when the key is already present in labels.
        #[arg(long)]
        overwrite: bool,
        /// Remove the specified key from labels.
        #[arg(long)]
        remove: bool,
    },
    /// Validate a resource by file, directory or stdin without applying it.
    Validate {
        #[command(flatten)]
        crud: Crud,
    },
    /// IP address management.
    Ipam {
        #[command(subcommand)]
        cmd: ipam::IpamCommand,
    },
    /// Display the version of this binary.
    Version {
        /// Path to the file containing connection configuration.
        #[arg(short = 'c', long)]
        config: Option<String>,
        /// Display the client version only.
        #[arg(long)]
        client: bool,
    },
}

fn crud_opts(c: &Crud) -> crud::Opts {
    crud::Opts {
        filename: c.filename.clone(),
        recursive: c.recursive,
        skip_empty: c.skip_empty,
        config: Some(c.conn.config.clone()),
        namespace: c.conn.namespace.clone(),
        ..Default::default()
    }
}

async fn dispatch(cmd: Command) -> Outcome {
    match cmd {
        Command::Create { crud, skip_exists } => {
            let o = crud::Opts {
                skip_exists,
                ..crud_opts(&crud)
            };
            crud::run(Action::Create, &o).await
        }
        Command::Apply { crud } => crud::run(Action::Apply, &crud_opts(&crud)).await,
        Command::Replace { crud } => crud::run(Action::Replace, &crud_opts(&crud)).await,
        Command::Validate { crud } => crud::run(Action::Validate, &crud_opts(&crud)).await,
        Command::Delete {
            crud,
            skip_not_exists,
            kind,
            names,
        } => {
            let o = crud::Opts {
                skip_not_exists,
                kind,
                names,
                ..crud_opts(&crud)
            };
            crud::run(Action::Delete, &o).await
        }
        Command::Get {
            crud,
            output,
            all_namespaces,
            export,
            kind,
            names,
        } => {
            let o = get::Opts {
                kind,
                names,
                filename: crud.filename,
                recursive: crud.recursive,
                skip_empty: crud.skip_empty,
                config: Some(crud.conn.config),
                namespace: crud.conn.namespace,
                all_namespaces,
                output,
                export,
            };
            get::run(&o).await
        }
        Command::Patch {
            kind,
            name,
            conn,
            patch,
            patch_type,
        } => {
            let o = edit::PatchOpts {
                kind,
                name,
                patch,
                patch_type,
                config: Some(conn.config),
                namespace: conn.namespace,
            };
            edit::patch(&o).await
        }
        Command::Label {
            kind,
            name,
            label,
            conn,
            overwrite,
            remove,
        } => {
            let o = edit::LabelOpts {
                kind,
                name,
                label,
                overwrite,
                remove,
                config: Some(conn.config),
                namespace: conn.namespace,
            };
            edit::label(&o).await
        }
        Command::Ipam { cmd } => ipam::run(cmd).await,
        Command::Version { config, client } => version::run(config.as_deref(), client).await,
    }
}

fn main() {
    let cli = Cli::parse();
    let _ = (&cli.log_level, &cli.context, cli.allow_version_mismatch);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let outcome = rt.block_on(dispatch(cli.command));
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(outcome.out.as_bytes());
    let _ = stdout.flush();
    if let Some(e) = outcome.err {
        eprintln!("{}", e.trim_end());
        std::process::exit(1);
    }
}
