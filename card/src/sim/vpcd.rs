//! The simulator's wire side: a blocking client of vsmartcard's vpcd (docs/cards.md §4.1) and a line-based
//! control socket that removes and reinserts the card.
//!
//! vpcd frames every message in both directions as a 2-byte big-endian length and a payload. A 1-byte
//! payload is a control code (`00` power off, `01` power on, `02` reset: no reply; `04` get ATR: reply
//! with the ATR); anything longer is a command APDU, answered with the response APDU. "Card removed"
//! is a closed connection — never an empty ATR, which wedges pcscd 1.9.9.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use socket2::SockRef;

use crate::sim::card::SimCard;

/// How to reach vpcd and where to listen for control commands.
#[derive(Debug, Clone)]
pub struct VpcdOptions {
    /// vpcd's address, `host:port` (slot n listens on 35963 + n).
    pub address: String,
    /// How long to keep retrying the connection (pcscd may still be starting).
    pub connect_timeout: Duration,
    /// Unix socket for control commands (see [`run`]).
    pub control: Option<PathBuf>,
}

/// Interval between connection attempts while vpcd is not listening yet.
const CONNECT_RETRY: Duration = Duration::from_millis(20);
/// How long a control command waits for the card loop to act on it.
const CONTROL_WAIT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Link {
    inserted: bool,
    connected: bool,
    stream: Option<TcpStream>,
    pull_on_ins: Option<u8>,
}

#[derive(Default)]
struct Shared {
    link: Mutex<Link>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Link> {
        self.link.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until `done(link)` or the timeout; returns whether it became true.
    fn wait_for(&self, timeout: Duration, done: impl Fn(&Link) -> bool) -> bool {
        let guard = self.lock();
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |link| !done(link))
            .unwrap_or_else(PoisonError::into_inner);
        done(&guard)
    }

    /// Marks the card removed and closes the connection, which is what vpcd sees when a card is pulled.
    fn pull(&self, link: &mut Link) {
        link.inserted = false;
        link.pull_on_ins = None;
        if let Some(stream) = &link.stream {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        self.changed.notify_all();
    }
}

/// Why serving one connection ended.
enum End {
    /// The control socket pulled the card.
    Removed,
    /// vpcd closed the connection: pcscd went away.
    VpcdGone,
}

/// Runs the card until pcscd goes away.
///
/// With a control socket, each line received is a command, answered with one line (`ok` or
/// `error: …`): `remove` (closes the connection; PIN counters survive, volatile state does not),
/// `insert` (reconnects; answers once connected), `pull-on-ins XX` (the next command APDU with INS XX,
/// hex, is swallowed and the card removed: a card pulled mid-sequence), `status` (`inserted`/`removed`).
pub fn run(mut card: SimCard, options: &VpcdOptions) -> io::Result<()> {
    let shared = Arc::new(Shared::default());
    shared.lock().inserted = true;
    if let Some(path) = &options.control {
        let listener = bind_control(path)?;
        let shared = Arc::clone(&shared);
        thread::spawn(move || serve_control(&listener, &shared));
    }
    loop {
        drop(
            shared
                .changed
                .wait_while(shared.lock(), |link| !link.inserted)
                .unwrap_or_else(PoisonError::into_inner),
        );
        let stream = connect(&options.address, options.connect_timeout)?;
        stream.set_nodelay(true)?;
        {
            let mut link = shared.lock();
            link.stream = Some(stream.try_clone()?);
            link.connected = true;
            shared.changed.notify_all();
        }
        eprintln!(
            "card-sim: card inserted (connected to vpcd at {})",
            options.address
        );
        card.reset();
        let end = serve(&mut card, &stream, &shared);
        {
            let mut link = shared.lock();
            link.stream = None;
            link.connected = false;
            shared.changed.notify_all();
        }
        match end {
            End::Removed => eprintln!("card-sim: card removed"),
            End::VpcdGone => {
                eprintln!("card-sim: vpcd closed the connection; exiting");
                return Ok(());
            }
        }
    }
}

fn connect(address: &str, timeout: Duration) -> io::Result<TcpStream> {
    let deadline = Instant::now() + timeout;
    loop {
        match TcpStream::connect(address) {
            Ok(stream) => return Ok(stream),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => thread::sleep(CONNECT_RETRY),
        }
    }
}

fn serve(card: &mut SimCard, mut stream: &TcpStream, shared: &Shared) -> End {
    let gone = || {
        if shared.lock().inserted {
            End::VpcdGone
        } else {
            End::Removed
        }
    };
    loop {
        let Ok(Some(message)) = read_frame(stream) else {
            return gone();
        };
        let reply = match message.as_slice() {
            // Power off, power on, reset: the volatile state goes.
            [0x00..=0x02] => {
                card.reset();
                continue;
            }
            [0x04] => card.atr().to_vec(),
            [_] => continue,
            apdu => {
                let mut link = shared.lock();
                if link.pull_on_ins.is_some() && link.pull_on_ins == apdu.get(1).copied() {
                    shared.pull(&mut link);
                    return End::Removed;
                }
                drop(link);
                card.process(apdu)
            }
        };
        if write_frame(&mut stream, &reply).is_err() {
            return gone();
        }
    }
}

/// Reads one frame; `Ok(None)` on a clean end of stream.
fn read_frame(stream: &TcpStream) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    if !read_full(stream, &mut len)? {
        return Ok(None);
    }
    let mut payload = vec![0u8; usize::from(u16::from_be_bytes(len))];
    if !read_full(stream, &mut payload)? {
        return Ok(None);
    }
    Ok(Some(payload))
}

/// Fills `buf`; `false` if the peer closed first.
///
/// vpcd writes length and payload in two `send()` calls without TCP_NODELAY, so with delayed ACKs on our
/// side every exchange stalls ~40 ms on Nagle. Linux drops quick-ACK mode on its own, so it is re-armed
/// before every read (measured on the test machines: 48.5 ms → 0.1 ms per APDU).
fn read_full(mut stream: &TcpStream, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        SockRef::from(stream).set_tcp_quickack(true)?;
        match stream.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn write_frame(stream: &mut &TcpStream, payload: &[u8]) -> io::Result<()> {
    let len = u16::try_from(payload.len())
        .map_err(|_| io::Error::other("frame longer than 65535 bytes"))?;
    let mut frame = Vec::with_capacity(2 + payload.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(payload);
    stream.write_all(&frame)
}

fn bind_control(path: &Path) -> io::Result<UnixListener> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    UnixListener::bind(path)
}

fn serve_control(listener: &UnixListener, shared: &Shared) {
    for connection in listener.incoming() {
        let Ok(connection) = connection else { continue };
        // One client at a time is all the harness needs; a broken client only ends its own connection.
        let _ = serve_control_client(connection, shared);
    }
}

fn serve_control_client(connection: UnixStream, shared: &Shared) -> io::Result<()> {
    let mut writer = connection.try_clone()?;
    for line in BufReader::new(connection).lines() {
        let reply = control_command(line?.trim(), shared);
        writeln!(writer, "{reply}")?;
    }
    Ok(())
}

fn control_command(line: &str, shared: &Shared) -> String {
    let mut words = line.split_whitespace();
    match (words.next(), words.next()) {
        (Some("remove"), None) => {
            let mut link = shared.lock();
            shared.pull(&mut link);
            drop(link);
            if shared.wait_for(CONTROL_WAIT, |link| !link.connected) {
                "ok".into()
            } else {
                "error: card loop did not let go of the connection".into()
            }
        }
        (Some("insert"), None) => {
            {
                let mut link = shared.lock();
                link.inserted = true;
                shared.changed.notify_all();
            }
            if shared.wait_for(CONTROL_WAIT, |link| link.connected) {
                "ok".into()
            } else {
                "error: could not reconnect to vpcd".into()
            }
        }
        (Some("pull-on-ins"), Some(ins)) => match u8::from_str_radix(ins, 16) {
            Ok(ins) => {
                shared.lock().pull_on_ins = Some(ins);
                "ok".into()
            }
            Err(_) => "error: INS must be one hex byte".into(),
        },
        (Some("status"), None) => {
            if shared.lock().inserted {
                "inserted".into()
            } else {
                "removed".into()
            }
        }
        _ => format!("error: unknown command {line:?} (remove, insert, pull-on-ins XX, status)"),
    }
}
