//! The PC/SC worker: one dedicated thread that performs every card operation, one at a time.
//!
//! PC/SC contexts are per thread (pcsc-lite; STYLE point 23), and a card must see one
//! select → verify → sign sequence at a time, so the async handlers never touch PC/SC themselves:
//! they send a [`Job`] and await the reply. A fresh context is established per job, so a restarted
//! pcscd is picked up without restarting the agent. Nothing here logs; the PIN lives in a
//! [`card::Pin`] (zeroized on drop) and is dropped as soon as the job ends.

use std::sync::mpsc;
use std::thread;

use card::pcsc::{self, ReaderStatus};
use card::{CardKind, CardSignature, Pin};
use tokio::sync::oneshot;

/// Work for the PC/SC thread.
enum Job {
    Status(oneshot::Sender<card::Result<Vec<ReaderStatus>>>),
    Sign {
        kind: CardKind,
        pin: Pin,
        message: Vec<u8>,
        reply: oneshot::Sender<card::Result<CardSignature>>,
    },
}

/// Handle to the PC/SC thread; cheap to clone. The thread ends when the last handle is dropped.
#[derive(Clone)]
pub struct Cards {
    jobs: mpsc::Sender<Job>,
}

/// The worker thread is gone (it panicked, or could not start).
#[derive(Debug, thiserror::Error)]
#[error("the PC/SC worker thread is not running")]
pub struct WorkerGone;

impl Cards {
    /// Starts the worker thread.
    pub fn start() -> std::io::Result<Cards> {
        let (jobs, rx) = mpsc::channel::<Job>();
        thread::Builder::new().name("pcsc".into()).spawn(move || {
            for job in rx {
                run(job);
            }
        })?;
        Ok(Cards { jobs })
    }

    /// A handle whose worker is already gone: every job answers [`WorkerGone`]. The fuzz target
    /// (`crate::fuzzing`) drives the HTTP layer with it, without PC/SC.
    #[cfg(feature = "fuzzing")]
    pub fn stopped() -> Cards {
        let (jobs, _) = mpsc::channel::<Job>();
        Cards { jobs }
    }

    /// Readers and the card in each.
    pub async fn status(&self) -> Result<card::Result<Vec<ReaderStatus>>, WorkerGone> {
        let (reply, rx) = oneshot::channel();
        self.jobs.send(Job::Status(reply)).map_err(|_| WorkerGone)?;
        rx.await.map_err(|_| WorkerGone)
    }

    /// Finds a reader with a `kind` card, verifies `pin` and signs SHA-256(`message`).
    pub async fn sign(
        &self,
        kind: CardKind,
        pin: Pin,
        message: Vec<u8>,
    ) -> Result<card::Result<CardSignature>, WorkerGone> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job::Sign {
                kind,
                pin,
                message,
                reply,
            })
            .map_err(|_| WorkerGone)?;
        rx.await.map_err(|_| WorkerGone)
    }
}

fn run(job: Job) {
    // A send error means the request was abandoned (client went away); nothing to do.
    match job {
        Job::Status(reply) => {
            let _ = reply.send(pcsc::establish().and_then(|ctx| pcsc::reader_status(&ctx)));
        }
        Job::Sign {
            kind,
            pin,
            message,
            reply,
        } => {
            let result = pcsc::establish().and_then(|ctx| {
                let reader = pcsc::find_reader(&ctx, kind)?;
                pcsc::with_card(&ctx, &reader, |t| {
                    card::authenticate(t, kind, &pin, &message)
                })
            });
            drop(pin);
            let _ = reply.send(result);
        }
    }
}
