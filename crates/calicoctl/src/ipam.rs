//! `calicoctl ipam`: show, check, release, configure — upstream's subcommands, output and
//! messages, over `calico_ipam`.
//!
//! ```text
//!  args ──▶ connect ──▶ calico_ipam::Ipam (usage / config / release) or ipam_check ──▶ Outcome
//! ```

use std::net::IpAddr;
use std::sync::Arc;

use calico_api::Kind;
use calico_datastore::Datastore;
use calico_ipam::model::IpamConfig;
use calico_ipam::{Ipam, ReleaseRequest};
use clap::Subcommand;

use crate::client;
use crate::crud::Outcome;
use crate::ipam_check;
use crate::ipam_table::{Align, g5, render, with_percentage};

#[derive(Subcommand)]
pub enum IpamCommand {
    /// Show details of Calico IP address usage and configuration.
    Show {
        /// Report whether this specific IP address is in use.
        #[arg(long)]
        ip: Option<String>,
        /// Show detailed information about IP blocks as well as pools.
        #[arg(long = "show-blocks")]
        show_blocks: bool,
        /// Show detailed information about "borrowed" IP addresses.
        #[arg(long = "show-borrowed")]
        show_borrowed: bool,
        /// Show current Calico IPAM configuration.
        #[arg(long = "show-configuration")]
        show_configuration: bool,
        #[arg(short = 'c', long, default_value = client::DEFAULT_CONFIG)]
        config: String,
    },
    /// Check the integrity of the IPAM data.
    Check {
        /// Path to output report file.
        #[arg(short = 'o', long = "output")]
        output: Option<String>,
        /// Print all IPs that are checked.
        #[arg(long = "show-all-ips")]
        show_all_ips: bool,
        /// Print all IPs that are leaked or not allocated properly.
        #[arg(long = "show-problem-ips")]
        show_problem_ips: bool,
        #[arg(short = 'c', long, default_value = client::DEFAULT_CONFIG)]
        config: String,
    },
    /// Release a Calico assigned IP address, or the leaked addresses of `ipam check` reports.
    Release {
        /// IP address to release.
        #[arg(long)]
        ip: Option<String>,
        /// Release all leaked addresses from the report (only those leaked in every report).
        #[arg(long = "from-report")]
        from_report: Vec<String>,
        /// Force release of leaked addresses.
        #[arg(long)]
        force: bool,
        #[arg(short = 'c', long, default_value = client::DEFAULT_CONFIG)]
        config: String,
    },
    /// Split an IP pool into a number of smaller pools (a power of two).
    Split {
        /// How many pools to split into.
        number: String,
        /// CIDR of the IP pool to split.
        #[arg(long)]
        cidr: Option<String>,
        /// Name of the IP pool to split.
        #[arg(long)]
        name: Option<String>,
        #[arg(short = 'c', long, default_value = client::DEFAULT_CONFIG)]
        config: String,
    },
    /// Configure IPAM.
    Configure {
        /// Set StrictAffinity to true/false.
        #[arg(long = "strictaffinity")]
        strict_affinity: Option<bool>,
        /// Set the maximum number of blocks that can be affine to each host.
        #[arg(long = "max-blocks-per-host")]
        max_blocks_per_host: Option<u32>,
        #[arg(short = 'c', long, default_value = client::DEFAULT_CONFIG)]
        config: String,
    },
}

async fn ipam_for(config: &str) -> Result<(Ipam, Arc<dyn Datastore>), String> {
    let store = client::connect(Some(config)).await?;
    let ds = store.datastore().clone();
    Ok((Ipam::new(ds.clone()), ds))
}

pub async fn run(cmd: IpamCommand) -> Outcome {
    let r = match cmd {
        IpamCommand::Show {
            ip,
            show_blocks,
            show_borrowed,
            show_configuration,
            config,
        } => {
            show(
                &config,
                ip.as_deref(),
                show_blocks,
                show_borrowed,
                show_configuration,
            )
            .await
        }
        IpamCommand::Check {
            output,
            show_all_ips,
            show_problem_ips,
            config,
        } => ipam_check::run(&config, output.as_deref(), show_all_ips, show_problem_ips).await,
        IpamCommand::Release {
            ip,
            from_report,
            force,
            config,
        } => release(&config, ip.as_deref(), &from_report, force).await,
        IpamCommand::Split {
            number,
            cidr,
            name,
            config,
        } => crate::ipam_split::run(&config, &number, cidr.as_deref(), name.as_deref()).await,
        IpamCommand::Configure {
            strict_affinity,
            max_blocks_per_host,
            config,
        } => configure(&config, strict_affinity, max_blocks_per_host).await,
    };
    match r {
        Ok(out) => Outcome { out, err: None },
        Err(e) => Outcome {
            out: String::new(),
            err: Some(e),
        },
    }
}

fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("Invalid IP address specified: {s}"))
}

async fn show(
    config: &str,
    ip: Option<&str>,
    blocks: bool,
    borrowed: bool,
    configuration: bool,
) -> Result<String, String> {
    let (ipam, ds) = ipam_for(config).await?;
    if let Some(ip) = ip {
        let ip = parse_ip(ip)?;
        return match ipam.assignment_of(ip).await.map_err(|e| e.to_string())? {
            None => Ok(format!("{ip} is not assigned\n")),
            Some((handle, attrs)) => {
                let mut out = format!("IP {ip} is in use\n");
                out.push_str(&format!(
                    "Handle ID: {}\n",
                    handle.as_deref().unwrap_or("<none>")
                ));
                if attrs.is_empty() {
                    out.push_str("No Active Owner attributes defined\n");
                } else {
                    out.push_str("Active Owner Attributes:\n");
                    for (k, v) in &attrs {
                        out.push_str(&format!("  {k}: {v}\n"));
                    }
                }
                Ok(out)
            }
        };
    }
    if configuration {
        let c = ipam.config().await.map_err(|e| e.to_string())?;
        let rows = vec![
            vec!["StrictAffinity".to_string(), c.strict_affinity.to_string()],
            vec![
                "AutoAllocateBlocks".to_string(),
                c.auto_allocate_blocks.to_string(),
            ],
            vec![
                "MaxBlocksPerHost".to_string(),
                c.max_blocks_per_host.to_string(),
            ],
        ];
        return Ok(render(
            &["PROPERTY", "VALUE"],
            &[Align::Left, Align::Left],
            &rows,
        ));
    }
    if borrowed {
        return show_borrowed(&ds).await;
    }
    let usage = ipam.usage().await.map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for pool in &usage {
        if let Some(cidr) = pool.cidr {
            rows.push(vec![
                "IP Pool".to_string(),
                cidr.to_string(),
                g5(pool.total),
                with_percentage(pool.in_use, pool.total),
                with_percentage(pool.free(), pool.total),
            ]);
        }
        if blocks {
            for b in &pool.blocks {
                rows.push(vec![
                    "Block".to_string(),
                    b.cidr.to_string(),
                    g5(b.capacity),
                    with_percentage(b.in_use, b.capacity),
                    with_percentage(b.capacity - b.in_use, b.capacity),
                ]);
            }
        }
    }
    Ok(render(
        &["GROUPING", "CIDR", "IPS TOTAL", "IPS IN USE", "IPS FREE"],
        &[
            Align::Left,
            Align::Left,
            Align::Right,
            Align::Left,
            Align::Left,
        ],
        &rows,
    ))
}

async fn show_borrowed(ds: &Arc<dyn Datastore>) -> Result<String, String> {
    let mut rows = Vec::new();
    let mut unclassified = 0;
    for v6 in [false, true] {
        let listing = ds
            .list(&calico_datastore::keys::block_prefix(v6))
            .await
            .map_err(|e| e.to_string())?;
        for kv in listing.kvs {
            let Ok(b) = calico_ipam::AllocationBlock::from_json(&kv.value) else {
                continue;
            };
            let owner = b.host().unwrap_or("").to_string();
            for ip in b.in_use_ips() {
                let Some(attr) = b.attribute_of(ip).ok().flatten() else {
                    continue;
                };
                let Some(node) = attr.secondary.get("node") else {
                    unclassified += 1;
                    continue;
                };
                if *node == owner {
                    continue;
                }
                let ns = attr.secondary.get("namespace").cloned().unwrap_or_default();
                let (kind, to) = match (attr.secondary.get("pod"), attr.secondary.get("type")) {
                    (Some(pod), _) => ("pod".to_string(), format!("{ns}/{pod}")),
                    (None, Some(t)) => (t.clone(), String::new()),
                    (None, None) => (String::new(), String::new()),
                };
                rows.push(vec![
                    ip.to_string(),
                    node.clone(),
                    b.cidr.to_string(),
                    owner.clone(),
                    kind,
                    to,
                ]);
            }
        }
    }
    let mut out = render(
        &[
            "IP",
            "BORROWING-NODE",
            "BLOCK",
            "BLOCK OWNER",
            "TYPE",
            "ALLOCATED-TO",
        ],
        &[Align::Left; 6],
        &rows,
    );
    if unclassified > 0 {
        out.push_str(&format!(
            "\nNote: found {unclassified} IP allocations without an explicit node association. Unable to determine if they are borrowed.\n"
        ));
    }
    Ok(out)
}

async fn configure(
    config: &str,
    strict: Option<bool>,
    max_blocks: Option<u32>,
) -> Result<String, String> {
    if strict.is_none() && max_blocks.is_none() {
        return Err(
            "Invalid option: give --strictaffinity=<true/false> and/or --max-blocks-per-host=<N>"
                .into(),
        );
    }
    let (ipam, _) = ipam_for(config).await?;
    let current = ipam.config().await.map_err(|e| e.to_string())?;
    let new = IpamConfig {
        strict_affinity: strict.unwrap_or(current.strict_affinity),
        max_blocks_per_host: max_blocks.unwrap_or(current.max_blocks_per_host),
        ..current
    };
    ipam.set_config(new)
        .await
        .map_err(|e| format!("Error: {e}"))?;
    Ok(
        "Successfully set StrictAffinity to: ".to_string()
            + &new.strict_affinity.to_string()
            + "\n",
    )
}

async fn release(
    config: &str,
    ip: Option<&str>,
    reports: &[String],
    force: bool,
) -> Result<String, String> {
    let (ipam, ds) = ipam_for(config).await?;
    if !reports.is_empty() {
        let mut out = ipam_check::release_from_reports(&ipam, &ds, reports, force).await?;
        out.push_str("You may now unlock the data store.\n");
        return Ok(out);
    }
    let Some(ip) = ip else {
        return Err("Invalid option: give --ip=<IP> or --from-report=<REPORT>".into());
    };
    let ip = parse_ip(ip)?;
    let r = ipam
        .release_ips(&[ReleaseRequest {
            ip,
            handle: None,
            sequence_number: None,
        }])
        .await
        .map_err(|e| format!("error: {e}"))?;
    if !r.not_allocated.is_empty() {
        return Err(format!("IP address {ip} is not assigned"));
    }
    Ok(format!("Successfully released IP address {ip}\n"))
}

/// The ClusterInformation `default` (GUID, revision, whether the datastore is locked).
pub(crate) async fn cluster_info(
    ds: &Arc<dyn Datastore>,
) -> Result<(String, String, bool), String> {
    let store = calico_datastore::resources::ResourceStore::new(ds.clone());
    match store.get(Kind::ClusterInformation, None, "default").await {
        Ok(calico_api::Resource::ClusterInformation(ci)) => Ok((
            ci.spec.cluster_guid.clone(),
            ci.metadata.resource_version.clone().unwrap_or_default(),
            ci.spec.datastore_ready == Some(false),
        )),
        Ok(_) | Err(calico_datastore::resources::StoreError::NotFound { .. }) => {
            Ok((String::new(), String::new(), false))
        }
        Err(e) => Err(e.to_string()),
    }
}
