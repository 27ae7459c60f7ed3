//! The PKCS#11 backend (`cryptoki`): RSA key pairs generated inside the token, sensitive and never
//! extractable; signing by `CKM_RSA_PKCS` over a DigestInfo or by `CKM_RSA_PKCS_PSS`.
//!
//! Threads: a cryptoki `Session` is `Send` but not `Sync`, and PKCS#11 runs one operation at a time
//! per session, while a token serves many sessions at once. A single `Mutex<Session>` would
//! serialise every signature of the signer on one core, so each [`Token`] keeps a small pool of
//! idle sessions: a caller takes one (or opens a new one when none is idle), signs without holding
//! any lock, and puts it back. Sessions opened after the login share it (login state is per
//! application and token, PKCS#11 v2.40 §5.6). The session that logged in is kept apart and never
//! closed, because closing an application's last session on a token logs it out.
//!
//! Process-wide state, on purpose: a module is loaded and `C_Initialize`d once per process and never
//! finalised (`C_Finalize` would end every other user's sessions), and two [`Pkcs11Backend`]s on
//! the same module and token share one [`Token`], since the second `C_Login` would only answer
//! `CKR_USER_ALREADY_LOGGED_IN` without checking its PIN; the PIN is checked against the first's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError, Weak};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use secrecy::{ExposeSecret, SecretString};

use crate::software::{rsa_spki, sha256};
use crate::{KeyError, PSS_SALT_LEN, SignAlgorithm, StoredKey, hex};

/// The DER encoding of the SHA-256 `DigestInfo` up to the digest: RFC 8017 §9.2, note 1
/// (`30 31 30 0d 06 09 60 86 48 01 65 03 04 02 01 05 00 04 20 || H`). `CKM_RSA_PKCS` pads what it is
/// given as is, so the DigestInfo is built here, as a card does for style-J signing.
const SHA256_DIGEST_INFO_PREFIX: [u8; 19] =
    [0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20];

/// Idle sessions a token keeps; more are opened under load and closed when returned.
const MAX_IDLE_SESSIONS: usize = 8;

/// Length of the random `CKA_ID` given to each key pair.
const KEY_ID_LEN: usize = 16;

/// Where the signer's PKCS#11 keys live. `Debug` does not show the PIN.
#[derive(Debug, Clone)]
pub struct Pkcs11Config {
    /// The PKCS#11 module (for SoftHSM2, `/usr/lib/softhsm/libsofthsm2.so`).
    pub module: PathBuf,
    /// The token's label. Tokens are found by label, never by slot index: slot numbers change when
    /// tokens are initialised or plugged in.
    pub token_label: String,
    /// The user PIN.
    pub pin: SecretString,
}

/// An open, logged-in token (see the module documentation for its threading).
pub struct Pkcs11Backend {
    token: Arc<Token>,
}

impl std::fmt::Debug for Pkcs11Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Backend").field("module", &self.token.module).field("token", &self.token.label).finish()
    }
}

struct Token {
    ctx: Pkcs11,
    slot: Slot,
    module: PathBuf,
    label: String,
    /// SHA-256 of the PIN that logged in, to check a second opener's PIN (never stored elsewhere).
    pin_digest: Vec<u8>,
    /// The session that logged in; kept open so the token stays logged in.
    _login: Mutex<Session>,
    idle: Mutex<Vec<Session>>,
    /// Private-key handles by `CKA_ID`: handles of token objects stay valid for every session of
    /// this application, and a search per signature costs as much as the signature on SoftHSM2.
    handles: Mutex<HashMap<Vec<u8>, ObjectHandle>>,
}

type TokenKey = (PathBuf, String);

static CONTEXTS: LazyLock<Mutex<HashMap<PathBuf, Pkcs11>>> = LazyLock::new(Default::default);
static TOKENS: LazyLock<Mutex<HashMap<TokenKey, Weak<Token>>>> = LazyLock::new(Default::default);

/// A poisoned lock only means another thread panicked while holding it; the data (sessions, handles)
/// stays usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn ck(operation: &'static str) -> impl FnOnce(CkError) -> KeyError {
    move |source| KeyError::Pkcs11 { operation, source }
}

impl Pkcs11Backend {
    /// Loads the module, finds the token by label and logs in as the user.
    pub fn open(config: &Pkcs11Config) -> Result<Self, KeyError> {
        let pin_digest = sha256(config.pin.expose_secret().as_bytes())?;
        let mut tokens = lock(&TOKENS);
        let key = (config.module.clone(), config.token_label.clone());
        if let Some(token) = tokens.get(&key).and_then(Weak::upgrade) {
            if !openssl::memcmp::eq(&token.pin_digest, &pin_digest) {
                return Err(KeyError::WrongPin { label: config.token_label.clone() });
            }
            return Ok(Self { token });
        }
        let ctx = context(&config.module)?;
        let slot = find_token(&ctx, &config.token_label)?;
        let session = ctx.open_rw_session(slot).map_err(ck("C_OpenSession"))?;
        let label = || config.token_label.clone();
        match session.login(UserType::User, Some(&config.pin)) {
            Ok(()) => {}
            Err(CkError::Pkcs11(RvError::PinIncorrect | RvError::PinLenRange, _)) => {
                return Err(KeyError::WrongPin { label: label() });
            }
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => return Err(KeyError::PinLocked { label: label() }),
            // Includes CKR_USER_ALREADY_LOGGED_IN: someone else in this process logged in, and this
            // PIN was not checked, so it is refused rather than trusted.
            Err(e) => return Err(ck("C_Login")(e)),
        }
        let token = Arc::new(Token {
            ctx,
            slot,
            module: config.module.clone(),
            label: label(),
            pin_digest,
            _login: Mutex::new(session),
            idle: Mutex::new(Vec::new()),
            handles: Mutex::new(HashMap::new()),
        });
        tokens.retain(|_, t| t.strong_count() > 0);
        tokens.insert(key, Arc::downgrade(&token));
        Ok(Self { token })
    }

    /// The token's label.
    pub fn token_label(&self) -> &str {
        &self.token.label
    }

    pub(crate) fn generate_rsa(&self, label: &str, bits: u32) -> Result<(StoredKey, Vec<u8>), KeyError> {
        let mut id = vec![0u8; KEY_ID_LEN];
        openssl::rand::rand_bytes(&mut id)?;
        let public = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::Encrypt(false),
            Attribute::Wrap(false),
            Attribute::ModulusBits(u64::from(bits).into()),
            Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
            Attribute::Id(id.clone()),
            Attribute::Label(label.as_bytes().to_vec()),
        ];
        // A signing key only: sensitive and not extractable, so the token never lets its value out
        // (PKCS#11 v2.40 §4.9: CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE follow), and no
        // decryption or unwrapping with it.
        let private = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Decrypt(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
            Attribute::Id(id.clone()),
            Attribute::Label(label.as_bytes().to_vec()),
        ];
        let spki = self.token.with_session(|session| {
            let (public, private) = session
                .generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public, &private)
                .map_err(ck("C_GenerateKeyPair"))?;
            lock(&self.token.handles).insert(id.clone(), private);
            spki_of(session, public)
        })?;
        Ok((StoredKey::Pkcs11 { id }, spki))
    }

    pub(crate) fn public_key(&self, id: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.token.with_session(|session| {
            // The public object, or else the private one: an RSA private key's modulus and public
            // exponent are readable even when it is sensitive.
            let object = match find(session, ObjectClass::PUBLIC_KEY, id)? {
                Some(public) => public,
                None => find(session, ObjectClass::PRIVATE_KEY, id)?.ok_or_else(|| not_found(id))?,
            };
            spki_of(session, object)
        })
    }

    pub(crate) fn sign_digest(&self, id: &[u8], alg: SignAlgorithm, digest: &[u8]) -> Result<Vec<u8>, KeyError> {
        let (mechanism, data) = match alg {
            SignAlgorithm::RsaPkcs1Sha256 => (Mechanism::RsaPkcs, [&SHA256_DIGEST_INFO_PREFIX[..], digest].concat()),
            SignAlgorithm::RsaPssSha256 => (
                Mechanism::RsaPkcsPss(PkcsPssParams {
                    hash_alg: MechanismType::SHA256,
                    mgf: PkcsMgfType::MGF1_SHA256,
                    s_len: (PSS_SALT_LEN as u64).into(),
                }),
                digest.to_vec(),
            ),
        };
        self.token.with_session(|session| {
            let key = self.token.private_key(session, id)?;
            match session.sign(&mechanism, key, &data) {
                // The object went away (deleted by someone else): forget the handle, look again once.
                Err(CkError::Pkcs11(RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid, _)) => {
                    lock(&self.token.handles).remove(id);
                    let key = self.token.private_key(session, id)?;
                    session.sign(&mechanism, key, &data).map_err(ck("C_Sign"))
                }
                result => result.map_err(ck("C_Sign")),
            }
        })
    }
}

impl Token {
    /// Runs `f` on an idle session (or a new one), then returns the session to the pool.
    fn with_session<T>(&self, f: impl FnOnce(&Session) -> Result<T, KeyError>) -> Result<T, KeyError> {
        let idle = lock(&self.idle).pop();
        let session = match idle {
            Some(session) => session,
            None => self.ctx.open_rw_session(self.slot).map_err(ck("C_OpenSession"))?,
        };
        let result = f(&session);
        let broken = matches!(
            result,
            Err(KeyError::Pkcs11 {
                source: CkError::Pkcs11(
                    RvError::SessionHandleInvalid | RvError::SessionClosed | RvError::DeviceRemoved,
                    _
                ),
                ..
            })
        );
        let mut idle = lock(&self.idle);
        if !broken && idle.len() < MAX_IDLE_SESSIONS {
            idle.push(session);
        }
        result
    }

    fn private_key(&self, session: &Session, id: &[u8]) -> Result<ObjectHandle, KeyError> {
        if let Some(handle) = lock(&self.handles).get(id) {
            return Ok(*handle);
        }
        let handle = find(session, ObjectClass::PRIVATE_KEY, id)?.ok_or_else(|| not_found(id))?;
        lock(&self.handles).insert(id.to_vec(), handle);
        Ok(handle)
    }
}

fn not_found(id: &[u8]) -> KeyError {
    KeyError::KeyNotFound { id: hex(id) }
}

/// The one RSA object of `class` with this `CKA_ID`; more than one is an error.
fn find(session: &Session, class: ObjectClass, id: &[u8]) -> Result<Option<ObjectHandle>, KeyError> {
    let template = [Attribute::Class(class), Attribute::KeyType(KeyType::RSA), Attribute::Id(id.to_vec())];
    match session.find_objects(&template).map_err(ck("C_FindObjects"))?.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        more => Err(KeyError::KeyAmbiguous { id: hex(id), count: more.len() }),
    }
}

/// SubjectPublicKeyInfo DER from an RSA key object's modulus and public exponent, built by OpenSSL.
fn spki_of(session: &Session, object: ObjectHandle) -> Result<Vec<u8>, KeyError> {
    let attributes = session
        .get_attributes(object, &[AttributeType::Modulus, AttributeType::PublicExponent])
        .map_err(ck("C_GetAttributeValue"))?;
    let (mut modulus, mut exponent) = (None, None);
    for attribute in attributes {
        match attribute {
            Attribute::Modulus(n) => modulus = Some(n),
            Attribute::PublicExponent(e) => exponent = Some(e),
            _ => {}
        }
    }
    match (modulus, exponent) {
        (Some(n), Some(e)) => rsa_spki(&n, &e),
        _ => Err(KeyError::BadPublicKey("the token did not return CKA_MODULUS and CKA_PUBLIC_EXPONENT".into())),
    }
}

/// The module's context, loaded and initialised once per process.
fn context(module: &Path) -> Result<Pkcs11, KeyError> {
    let mut contexts = lock(&CONTEXTS);
    if let Some(ctx) = contexts.get(module) {
        return Ok(ctx.clone());
    }
    let fail = |reason: String| KeyError::Module { module: module.to_owned(), reason };
    if !module.is_file() {
        return Err(fail("no such file".into()));
    }
    let ctx = Pkcs11::new(module).map_err(|e| fail(format!("cannot load: {e}")))?;
    // OS locking: the signer calls the module from several threads at once.
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(fail(format!("C_Initialize: {e}"))),
    }
    contexts.insert(module.to_owned(), ctx.clone());
    Ok(ctx)
}

/// The slot holding the one token labelled `label`.
fn find_token(ctx: &Pkcs11, label: &str) -> Result<Slot, KeyError> {
    let mut found = Vec::new();
    for slot in ctx.get_slots_with_token().map_err(ck("C_GetSlotList"))? {
        let info = ctx.get_token_info(slot).map_err(ck("C_GetTokenInfo"))?;
        // Labels are blank-padded to 32 bytes on the wire.
        if info.label().trim_end() == label {
            found.push(slot);
        }
    }
    match found.as_slice() {
        [] => Err(KeyError::TokenNotFound { label: label.to_owned() }),
        [slot] => Ok(*slot),
        more => Err(KeyError::TokenAmbiguous { label: label.to_owned(), count: more.len() }),
    }
}
