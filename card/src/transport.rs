//! The [`CardTransport`] trait: the one seam between the card protocol and whatever carries APDUs
//! (PC/SC, the in-process simulator, a scripted fake in tests).

use crate::error::Result;

/// Carries one command APDU to a card and brings its response back.
///
/// Implementations do no interpretation: the status word stays at the end of the returned bytes, and
/// `61 xx`/`6C xx` are handled by [`crate::apdu::exchange`]. Implementations must not log the command
/// bytes (for VERIFY they contain the PIN); the INS byte and the status word are the most they may log.
///
/// A multi-APDU sequence (select, verify, sign) must run without other applications interleaving
/// commands; PC/SC transports therefore hand out a [`CardTransport`] only inside a transaction
/// (see `pcsc::PcscCard::transaction`).
pub trait CardTransport {
    /// Sends an encoded command APDU and returns the encoded response APDU (data ‖ SW1 SW2).
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>>;
}

impl<T: CardTransport + ?Sized> CardTransport for &mut T {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>> {
        (**self).transmit(command)
    }
}

impl<T: CardTransport + ?Sized> CardTransport for Box<T> {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>> {
        (**self).transmit(command)
    }
}
