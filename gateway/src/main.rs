//! `gateway` binary: everything lives in the library; see `gateway::cli`.

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut input = std::io::BufReader::new(std::io::stdin());
    let code = gateway::cli::run(args, &mut std::io::stdout(), &mut std::io::stderr(), &mut input).await;
    std::process::exit(code);
}
