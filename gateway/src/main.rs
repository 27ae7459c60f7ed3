//! `gateway` binary: everything lives in the library; see `gateway::cli`.

/// mimalloc rather than glibc's malloc: a request allocates and frees many small buffers on
/// whichever worker thread polls it, and glibc's arenas spent about a tenth of the gateway's CPU
/// on a login (docs/decisions/0028-mimalloc.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut input = std::io::BufReader::new(std::io::stdin());
    let code = gateway::cli::run(args, &mut std::io::stdout(), &mut std::io::stderr(), &mut input).await;
    std::process::exit(code);
}
