//! `agent-card-sim`: the card simulator (`card::sim::cli`) built as a binary of this package, so the
//! agent's tests can run it (feature `test-sim`); identical to `card-sim`.

fn main() -> std::process::ExitCode {
    card::sim::cli::main()
}
