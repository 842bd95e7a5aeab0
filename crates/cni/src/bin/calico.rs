//! The `calico` CNI plugin binary: all logic lives in `calico_cni::calico_plugin`.

fn main() {
    let mut plugin = calico_cni::calico_plugin::Calico;
    let code = calico_cni::spec::run::run_io(
        std::io::stdin(),
        std::io::stdout(),
        |k| std::env::var(k).ok(),
        &mut plugin,
    );
    std::process::exit(code);
}
