//! `ninsho-signer`: see [`signer::cli`].

fn main() -> std::process::ExitCode {
    signer::cli::main()
}
