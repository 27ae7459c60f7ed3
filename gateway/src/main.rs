//! `gateway` binary: everything lives in the library; see `gateway::cli`.

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut input = std::io::BufReader::new(std::io::stdin());
    let mut out = std::io::stdout();
    let code = gateway::cli::run(args, &mut out, &mut input).await;
    std::process::exit(code);
}
