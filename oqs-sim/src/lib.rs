//! A simulator of the clinic's online qualification (OQS) terminal, as its file interface shows it.
//!
//! Clinic systems drop a request file such as `EPSsiDMP01req_<id>.xml` into a shared request folder
//! (`req`); the terminal's linkage application picks it up within seconds, removes it, and writes
//! the answer `EPSsiDMP01res_<id>.xml` into the answer folder (`res`). This crate stands in for the
//! terminal in tests, the demo and the benchmark: [`run`] polls the folders (the `oqs-sim` binary is a
//! thin command line around it), and the pure functions [`answer_name`] and [`answer`] give the name
//! and bytes of an answer without any folder. Scenarios are chosen by the request's
//! `ArbitraryFileIdentifier` (`ERROR…`, `NOANSWER…`, `CHECK…`) and by [`Options`] (dropped requests,
//! answers written in two parts). See the crate's README for the message formats.
#![forbid(unsafe_code)]

mod message;
mod name;
mod terminal;

pub use message::{
    CHARACTER_CODE_UTF8, CHECK_PREFIX, ERROR_PREFIX, FORMAT_ERROR_CODE, FORMAT_ERROR_MESSAGE, NO_ANSWER_PREFIX,
    Outcome, REQUESTED_ERROR_CODE, SEGMENT_ERROR, SEGMENT_SUCCESS, answer,
};
pub use name::{Family, answer_name, family, is_request_name};
pub use terminal::{Options, run};
