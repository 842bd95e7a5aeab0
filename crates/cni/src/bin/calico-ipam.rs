//! The `calico-ipam` CNI plugin binary: all logic lives in `calico_cni::ipam_plugin`.

fn main() {
    calico_cni::spec::run::run_process(&mut calico_cni::ipam_plugin::CalicoIpam)
}
