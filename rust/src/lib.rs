//! The compiled core of kraken-recorder (`recorder._core`).
//!
//! Pure Rust, usable and tested without Python: exact decimal tokens ([`decimal`]), Kraken's
//! CRC32 checksum ([`checksum`]), the spot L2 and level3 books ([`l2`], [`l3`]) and the archive
//! replay that `recorder verify` runs ([`replay`]). The Python binding ([`python`], feature
//! `python`) is a thin layer: columns in, verdict columns out, errors mapped to the project's
//! exception classes. The Python books in `recorder/book/` are the reference model these are
//! tested against.

pub mod batch;
pub mod bookat;
pub mod checksum;
pub mod decimal;
pub mod error;
pub mod fix;
pub mod fixbook;
pub mod futures;
pub mod futures_bookat;
pub mod ingest;
pub mod l2;
pub mod l3;
pub mod lane;
pub mod replay;
pub mod spot;

#[cfg(feature = "python")]
mod fix_python;
#[cfg(feature = "python")]
mod fixbook_python;
#[cfg(feature = "python")]
mod python;
#[cfg(feature = "python")]
mod python_batch;
#[cfg(feature = "python")]
mod python_futures;
#[cfg(feature = "python")]
mod python_ingest;
#[cfg(feature = "python")]
mod python_lane;
#[cfg(feature = "python")]
mod python_spot;
