//! calicoctl: the command-line front end. (Being written.)

fn main() {
    eprintln!("calicoctl: not built yet");
    std::process::exit(1);
}
