//! PC/SC transport (pcsc-lite on Linux, WinSCard on Windows, through the `pcsc` crate): reader listing
//! with card presence, connection, transactions, card-removal detection, and the agent's reader helpers.
//!
//! Threading (pcsc-rust's model): a [`Context`] per thread; a blocked call can be interrupted from
//! another thread with `Context::cancel`. Every multi-APDU sequence runs inside a [`PcscTransaction`],
//! which resets the card when it ends, so a verified PIN never outlives the sequence that verified it.
//! Nothing here logs: not the APDUs, not the status words.

use std::ffi::CString;
use std::time::{Duration, Instant};

pub use pcsc::Context;
use pcsc::{Disposition, Protocols, ReaderState, Scope, ShareMode, State};

use crate::error::{Error, Result};
use crate::transport::CardTransport;
use crate::{CardKind, detect};

impl From<pcsc::Error> for Error {
    fn from(e: pcsc::Error) -> Error {
        match e {
            pcsc::Error::RemovedCard => Error::CardRemoved,
            pcsc::Error::ResetCard => Error::CardReset,
            pcsc::Error::NoSmartcard => Error::NoCard,
            pcsc::Error::UnknownReader
            | pcsc::Error::ReaderUnavailable
            | pcsc::Error::NoReadersAvailable => Error::NoReader,
            pcsc::Error::NoService | pcsc::Error::ServiceStopped => Error::ServiceUnavailable,
            other => Error::Transport(Box::new(other)),
        }
    }
}

/// Establishes a PC/SC context (user scope). Honours `PCSCLITE_CSOCK_NAME` with pcsc-lite.
pub fn establish() -> Result<Context> {
    Ok(Context::establish(Scope::User)?)
}

/// A reader and whether a card sits in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderInfo {
    /// The PC/SC reader name, e.g. `Virtual PCD 00 00`.
    pub name: String,
    /// A powered-up-able card is present (PC/SC state PRESENT and not MUTE).
    pub card_present: bool,
}

/// Lists the readers with card presence. No readers is an empty list, not an error.
pub fn list_readers(ctx: &Context) -> Result<Vec<ReaderInfo>> {
    let names = match ctx.list_readers_owned() {
        Ok(names) => names,
        Err(pcsc::Error::NoReadersAvailable) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut states: Vec<ReaderState> = names
        .into_iter()
        .map(|n| ReaderState::new(n, State::UNAWARE))
        .collect();
    if states.is_empty() {
        return Ok(Vec::new());
    }
    // With UNAWARE as the known state, SCardGetStatusChange returns the current state at once.
    match ctx.get_status_change(Duration::ZERO, &mut states) {
        Ok(()) | Err(pcsc::Error::Timeout) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(states
        .iter()
        .map(|s| ReaderInfo {
            name: s.name().to_string_lossy().into_owned(),
            card_present: card_present(s.event_state()),
        })
        .collect())
}

fn card_present(state: State) -> bool {
    state.contains(State::PRESENT) && !state.contains(State::MUTE)
}

/// Waits until a card is present in (`present = true`) or absent from `reader`, up to `timeout`.
/// Returns whether the wanted state was reached. Uses SCardGetStatusChange, so it does not poll.
pub fn wait_for_card(
    ctx: &Context,
    reader: &str,
    present: bool,
    timeout: Duration,
) -> Result<bool> {
    let name = reader_name(reader)?;
    let deadline = Instant::now() + timeout;
    let mut states = [ReaderState::new(name, State::UNAWARE)];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match ctx.get_status_change(left, &mut states) {
            Ok(()) => {}
            Err(pcsc::Error::Timeout) => {
                return Ok(card_present(states[0].event_state()) == present);
            }
            Err(e) => return Err(e.into()),
        }
        let now = states[0].event_state();
        if !now.contains(State::UNKNOWN) && card_present(now) == present {
            return Ok(true);
        }
        if left.is_zero() {
            return Ok(false);
        }
        states[0].sync_current_state();
    }
}

fn reader_name(reader: &str) -> Result<CString> {
    CString::new(reader).map_err(|_| Error::NoReader)
}

/// What is in a reader, as the agent's status endpoint reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReaderCard {
    /// No card.
    None,
    /// A card that is neither JPKI nor HPKI (or that did not answer).
    Unknown,
    /// A JPKI or HPKI card.
    Known(CardKind),
}

impl ReaderCard {
    /// `none`, `unknown`, `jpki` or `hpki`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReaderCard::None => "none",
            ReaderCard::Unknown => "unknown",
            ReaderCard::Known(kind) => kind.as_str(),
        }
    }
}

/// A reader and the kind of card in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderStatus {
    /// The PC/SC reader name.
    pub name: String,
    /// What is inserted.
    pub card: ReaderCard,
}

/// Lists readers and detects the card in each (SELECT commands only; no PIN is touched). Each present
/// card is reset afterwards, like after every [`with_card`].
pub fn reader_status(ctx: &Context) -> Result<Vec<ReaderStatus>> {
    list_readers(ctx)?
        .into_iter()
        .map(|reader| {
            let card = if !reader.card_present {
                ReaderCard::None
            } else {
                match with_card(ctx, &reader.name, |t| detect(t)) {
                    Ok(Some(kind)) => ReaderCard::Known(kind),
                    Ok(None) => ReaderCard::Unknown,
                    Err(Error::NoCard | Error::CardRemoved) => ReaderCard::None,
                    Err(Error::ServiceUnavailable) => return Err(Error::ServiceUnavailable),
                    Err(_) => ReaderCard::Unknown,
                }
            };
            Ok(ReaderStatus {
                name: reader.name,
                card,
            })
        })
        .collect()
}

/// The first reader holding a card of `kind`.
///
/// [`Error::NoReader`] if there is no reader, [`Error::NoCard`] if no reader has a card,
/// [`Error::WrongCard`] if cards are present but none is of that kind.
pub fn find_reader(ctx: &Context, kind: CardKind) -> Result<String> {
    let readers = reader_status(ctx)?;
    if readers.is_empty() {
        return Err(Error::NoReader);
    }
    if readers.iter().all(|r| r.card == ReaderCard::None) {
        return Err(Error::NoCard);
    }
    readers
        .into_iter()
        .find(|r| r.card == ReaderCard::Known(kind))
        .map(|r| r.name)
        .ok_or(Error::WrongCard { expected: kind })
}

/// Connects to `reader`, runs `f` inside one transaction, and resets the card at the end.
///
/// `f`'s error wins over an error ending the transaction; if `f` succeeded and the card was pulled
/// right after, the result still stands (the reset the end would have done happened physically).
pub fn with_card<R>(
    ctx: &Context,
    reader: &str,
    f: impl FnOnce(&mut dyn CardTransport) -> Result<R>,
) -> Result<R> {
    let mut card = PcscCard::connect(ctx, reader)?;
    let mut tx = card.transaction()?;
    let out = f(&mut tx);
    let end = tx.end();
    match (out, end) {
        (Err(e), _) => Err(e),
        (Ok(v), Ok(()) | Err(Error::CardRemoved | Error::NoCard)) => Ok(v),
        (Ok(_), Err(e)) => Err(e),
    }
}

/// A connection to the card in one reader (shared mode, T=0 or T=1).
pub struct PcscCard {
    card: pcsc::Card,
}

impl PcscCard {
    /// Connects to the card in `reader`. [`Error::NoCard`] if the reader is empty.
    pub fn connect(ctx: &Context, reader: &str) -> Result<PcscCard> {
        let card = ctx.connect(&reader_name(reader)?, ShareMode::Shared, Protocols::ANY)?;
        Ok(PcscCard { card })
    }

    /// Begins a transaction: until it ends, no other application can send commands to the card, so
    /// the select → verify → sign sequence cannot be interleaved (PC/SC part 5, SCardBeginTransaction).
    ///
    /// If another application reset the card since we connected, the handle is reconnected once.
    pub fn transaction(&mut self) -> Result<PcscTransaction<'_>> {
        let tx = match self.card.transaction2() {
            Ok(tx) => tx,
            Err((card, pcsc::Error::ResetCard)) => {
                card.reconnect(ShareMode::Shared, Protocols::ANY, Disposition::LeaveCard)?;
                card.transaction()?
            }
            Err((_, e)) => return Err(e.into()),
        };
        Ok(PcscTransaction {
            tx: Some(tx),
            buffer: vec![0; pcsc::MAX_BUFFER_SIZE_EXTENDED],
        })
    }
}

/// An open PC/SC transaction; the [`CardTransport`] for one multi-APDU sequence.
///
/// Ending it (explicitly with [`PcscTransaction::end`] or by drop) resets the card: ISO 7816-4 §11.5.6
/// keeps a verified PIN valid until reset or deselection, and any other process could otherwise sign
/// with the authentication key after we are done.
pub struct PcscTransaction<'c> {
    tx: Option<pcsc::Transaction<'c>>,
    buffer: Vec<u8>,
}

impl PcscTransaction<'_> {
    /// Ends the transaction, resetting the card.
    pub fn end(mut self) -> Result<()> {
        match self.tx.take() {
            Some(tx) => tx.end(Disposition::ResetCard).map_err(|(_, e)| e.into()),
            None => Ok(()),
        }
    }
}

impl Drop for PcscTransaction<'_> {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            // Errors cannot be reported from drop; the card is gone or the context died, and either way
            // no verified state survives.
            let _ = tx.end(Disposition::ResetCard);
        }
    }
}

impl CardTransport for PcscTransaction<'_> {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>> {
        let tx = self.tx.as_ref().ok_or(Error::CardRemoved)?;
        match tx.transmit(command, &mut self.buffer) {
            Ok(response) if response.len() >= 2 => Ok(response.to_vec()),
            Ok(_) => Err(removed_or(
                tx,
                Error::Malformed("reader returned no status word"),
            )),
            Err(e) => match Error::from(e) {
                Error::Transport(e) => Err(removed_or(tx, Error::Transport(e))),
                e => Err(e),
            },
        }
    }
}

/// How long a failed exchange waits for pcscd to notice that the card is gone.
const REMOVAL_GRACE: Duration = Duration::from_secs(2);
const REMOVAL_POLL: Duration = Duration::from_millis(10);

/// Decides whether a failed exchange means the card was pulled.
///
/// Some IFD handlers (vpcd among them) report a card that vanished mid-command as a *successful*
/// exchange with no data, or as a generic communication error; pcscd only marks the card absent at its
/// next presence poll (every few hundred ms). So, on this error path only, the card's status is polled
/// for a bounded time: gone → [`Error::CardRemoved`], still there → `otherwise`.
fn removed_or(card: &pcsc::Card, otherwise: Error) -> Error {
    let deadline = Instant::now() + REMOVAL_GRACE;
    loop {
        match card.status2_owned() {
            Ok(status) if status.status().contains(pcsc::Status::PRESENT) => {}
            Ok(_) => return Error::CardRemoved,
            Err(e) => {
                return match Error::from(e) {
                    Error::CardRemoved | Error::NoCard | Error::CardReset => Error::CardRemoved,
                    _ => otherwise,
                };
            }
        }
        if Instant::now() >= deadline {
            return otherwise;
        }
        std::thread::sleep(REMOVAL_POLL);
    }
}
