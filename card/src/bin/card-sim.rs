//! `card-sim`: a simulated My Number (JPKI) or HPKI card attached to pcscd through vsmartcard's vpcd.
//! Everything is in [`card::sim::cli`]; `card-sim --help` documents the options.

fn main() -> std::process::ExitCode {
    card::sim::cli::main()
}
