//! The `sluice` binary: command-line wiring only. The server arrives with the
//! single-node server issue.

fn main() {
    eprintln!(
        "sluice {}: the server is not built yet",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
