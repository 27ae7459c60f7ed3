//! Test-only scripted transport: a queue of expected command APDUs and canned responses.

use std::collections::VecDeque;

use crate::error::{Error, Result};
use crate::transport::CardTransport;

/// Parses "00 A4 04 0C" style hex (spaces optional).
pub(crate) fn hex(s: &str) -> Vec<u8> {
    let digits: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    assert!(digits.len().is_multiple_of(2), "odd hex: {s}");
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
        .collect()
}

enum Step {
    Reply(Vec<u8>, Vec<u8>),
    Fail(Vec<u8>, fn() -> Error),
}

/// A fake card that checks every command against a script, byte for byte.
pub(crate) struct Script {
    steps: VecDeque<Step>,
    sent: usize,
}

impl Script {
    pub(crate) fn new() -> Script {
        Script {
            steps: VecDeque::new(),
            sent: 0,
        }
    }

    /// Expect `command` (hex) next and answer `response` (hex, data then SW).
    pub(crate) fn expect(mut self, command: &str, response: &str) -> Script {
        self.steps
            .push_back(Step::Reply(hex(command), hex(response)));
        self
    }

    /// Expect raw command bytes next and answer raw bytes.
    pub(crate) fn expect_bytes(mut self, command: Vec<u8>, response: Vec<u8>) -> Script {
        self.steps.push_back(Step::Reply(command, response));
        self
    }

    /// Expect `command` next and fail the transport with `error`.
    pub(crate) fn fail(mut self, command: &str, error: fn() -> Error) -> Script {
        self.steps.push_back(Step::Fail(hex(command), error));
        self
    }

    /// Number of commands sent so far.
    pub(crate) fn sent(&self) -> usize {
        self.sent
    }

    /// Asserts the whole script was consumed.
    pub(crate) fn finish(&self) {
        assert!(
            self.steps.is_empty(),
            "{} scripted commands were never sent",
            self.steps.len()
        );
    }
}

impl CardTransport for Script {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>> {
        self.sent += 1;
        match self.steps.pop_front() {
            Some(Step::Reply(expected, response)) => {
                assert_eq!(
                    hex_string(command),
                    hex_string(&expected),
                    "command #{} differs from the script",
                    self.sent
                );
                Ok(response)
            }
            Some(Step::Fail(expected, error)) => {
                assert_eq!(
                    hex_string(command),
                    hex_string(&expected),
                    "command #{}",
                    self.sent
                );
                Err(error())
            }
            None => panic!("unexpected command #{}: {}", self.sent, hex_string(command)),
        }
    }
}

fn hex_string(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}
