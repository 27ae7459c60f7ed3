//! `card-agent`: the local program on the clinic PC that talks PC/SC for the browser.

fn main() {
    eprintln!("card-agent: not yet implemented in this build");
    std::process::exit(2);
}
