//! Signing keys: key files on disk, key ids, the public JWKS, JWT signing, and the rotation
//! rules that say which key signs when.
//!
//! - [`alg`]: the three algorithms (EdDSA, ES256, RS256), each bound to one key type.
//! - [`signer`]: generating keys, reading PKCS#8 PEM files of every algorithm, signing.
//! - [`jwk`]: public keys as JWKs, RFC 7638 thumbprints (the `kid`, which every node derives
//!   alike from the same public key), reading a JWKS or a public key PEM.
//! - [`dir`]: the key directory: `key-<unix-millis>.pem` files (owner-only: the daemon refuses
//!   others) and their retirement sidecars.
//! - [`schedule`]: the rotation rules: pre-publication of a successor, which key signs,
//!   retirement and withdrawal from the JWKS.
//! - [`set`]: a loaded directory with the rules applied at any time.
//!
//! At the bottom of the crate: this module imports only `files` and `time`.

pub mod alg;
pub mod dir;
pub mod error;
pub mod jwk;
pub mod schedule;
pub mod set;
pub mod signer;

pub use alg::{Alg, RsaBits};
pub use dir::{generate, load_public_dir, Generated};
pub use error::KeyError;
pub use jwk::{parse_jwks, PublicJwk};
pub use schedule::{Schedule, State};
pub use set::{KeySet, Provision};
pub use signer::Signer;
