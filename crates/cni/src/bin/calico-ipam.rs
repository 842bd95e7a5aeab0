//! The `calico-ipam` CNI plugin binary: all logic lives in `calico_cni::ipam_plugin`.

fn main() {
    let mut plugin = calico_cni::ipam_plugin::CalicoIpam;
    let code = calico_cni::spec::run::run_io(
        std::io::stdin(),
        std::io::stdout(),
        |k| std::env::var(k).ok(),
        &mut plugin,
    );
    std::process::exit(code);
}
