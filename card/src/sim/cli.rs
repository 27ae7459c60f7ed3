//! The `card-sim` command line: a simulated My Number (JPKI) or HPKI card attached to pcscd through
//! vsmartcard's vpcd. The binary is a one-line wrapper, so other crates' tests can build the same
//! simulator as a binary of their own (`card::sim::cli::main()`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::hpki::{self, SignStyle};
use crate::sim::vpcd::{self, VpcdOptions};
use crate::sim::{Profile, SimCard, SimConfig, SimFiles};
use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Jpki,
    Hpki,
}

#[derive(Clone, Copy, ValueEnum)]
enum Style {
    /// `80 2A 00 80` with a DigestInfo; the card pads (JMA sample cards).
    CardPadded,
    /// MSE `00 22 41 B6` + PSO `00 2A 9E 9A` with a host-padded block (ISO 7816-8).
    HostPadded,
}

/// Simulated JPKI / HPKI smart card for pcscd + vsmartcard-vpcd.
///
/// DIR holds PEM files: auth-cert.pem (CERTIFICATE) and auth-key.pem (PKCS#8 PRIVATE KEY, RSA-2048)
/// are required; ca-cert.pem (CERTIFICATE, the issuing CA) is required for jpki (EF 000B) and ignored
/// for hpki; sign-cert.pem + sign-key.pem (optional, together) fill the JPKI signing EFs 0001/001A or the
/// HPKI signature application; sign-ca-cert.pem (optional) fills JPKI EF 0002.
///
/// The card connects to vpcd (slot n listens on port 35963 + n) and exits when pcscd closes the
/// connection. With --control, a unix socket accepts line commands: `remove`, `insert`,
/// `pull-on-ins XX` (pull the card when the next APDU with INS XX arrives), `status`.
#[derive(Parser)]
#[command(name = "card-sim", version)]
struct Args {
    /// Card type.
    #[arg(long, value_enum)]
    kind: Kind,
    /// Directory with the PEM files described above.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// HPKI signing command style.
    #[arg(long, value_enum, default_value = "card-padded")]
    hpki_style: Style,
    /// AID (hex) of the HPKI authentication application; the default is the JMA card's.
    #[arg(long, value_name = "HEX")]
    hpki_aid: Option<String>,
    /// Authentication PIN (JPKI EF 0018 / HPKI authentication application).
    #[arg(long, default_value = "1234")]
    pin: String,
    /// Signing PIN (JPKI signing password EF 001B / HPKI signature application).
    #[arg(long, default_value = "SIGN1234")]
    sign_pin: String,
    /// vpcd address.
    #[arg(long, default_value = "127.0.0.1:35963", value_name = "HOST:PORT")]
    vpcd: String,
    /// Seconds to keep retrying the connection to vpcd.
    #[arg(long, default_value_t = 10)]
    connect_timeout: u64,
    /// Unix socket for control commands.
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
}

/// Parses the process arguments and runs the simulator until pcscd disconnects.
pub fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("card-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let profile = match (args.kind, args.hpki_style) {
        (Kind::Jpki, _) => Profile::Jpki,
        (Kind::Hpki, Style::CardPadded) => Profile::Hpki(SignStyle::CardPadded),
        (Kind::Hpki, Style::HostPadded) => Profile::Hpki(SignStyle::HostPadded),
    };
    let hpki_auth_aid = match &args.hpki_aid {
        Some(hex) => parse_hex(hex).ok_or("--hpki-aid must be 5 to 16 hex bytes")?,
        None => hpki::JMA_AUTH_AID.to_vec(),
    };
    let files = SimFiles::load(&args.dir, profile)?;
    let card = SimCard::new(SimConfig {
        profile,
        files,
        pin: args.pin.into_bytes(),
        sign_pin: args.sign_pin.into_bytes(),
        hpki_auth_aid,
    });
    let options = VpcdOptions {
        address: args.vpcd,
        connect_timeout: Duration::from_secs(args.connect_timeout),
        control: args.control,
    };
    vpcd::run(card, &options)?;
    Ok(())
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let digits: Vec<char> = s
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':')
        .collect();
    let bytes: Option<Vec<u8>> = digits
        .chunks(2)
        .map(|pair| {
            let pair: String = pair.iter().collect();
            if pair.len() == 2 {
                u8::from_str_radix(&pair, 16).ok()
            } else {
                None
            }
        })
        .collect();
    bytes.filter(|b| (5..=16).contains(&b.len()))
}
