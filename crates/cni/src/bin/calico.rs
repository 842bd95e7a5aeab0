//! The `calico` CNI plugin binary: all logic lives in `calico_cni::calico_plugin`.

fn main() {
    calico_cni::spec::run::run_process(&mut calico_cni::calico_plugin::Calico)
}
