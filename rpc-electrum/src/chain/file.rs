//! The verified headers on disk, so a restart does not fetch them again
//! (80 MB for a million headers is minutes from a public server).
//!
//! The file is `RPCEHDR1`, the checkpoint's height (4 bytes, little
//! endian) and hash (32 bytes), then the headers above the checkpoint, 80
//! bytes each. It is a cache, not a source of truth: on load every header
//! is verified again (linkage, difficulty rule, proof of work; about 0.6 µs
//! a header), a file for another checkpoint is started over, and a header
//! that does not verify (a torn or edited file) ends the load there. New
//! headers are appended; a reorganisation truncates to the fork first.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{Header, HeaderChain};

const MAGIC: &[u8; 8] = b"RPCEHDR1";
const PREFIX: u64 = 8 + 4 + 32;
/// Headers connected at a time while loading (as a server sends them).
const LOAD_CHUNK: usize = 2016;

/// An open header file and how many headers it holds.
#[derive(Debug)]
pub(crate) struct HeaderFile {
    path: PathBuf,
    file: File,
    stored: u32,
}

impl HeaderFile {
    /// Opens (or creates) the file at `path` for `chain`'s checkpoint and
    /// connects the headers it holds to `chain` (which must be empty).
    /// Returns the file and how many headers were loaded.
    pub(crate) fn open(path: &Path, chain: &mut HeaderChain) -> std::io::Result<(Self, u32)> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let cp = chain.params().checkpoint;
        let mut prefix = Vec::with_capacity(PREFIX as usize);
        prefix.extend_from_slice(MAGIC);
        prefix.extend_from_slice(&cp.height.to_le_bytes());
        prefix.extend_from_slice(&cp.hash);
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let mut loaded = 0u32;
        if bytes.len() as u64 >= PREFIX && bytes[..PREFIX as usize] == prefix[..] {
            let headers: Vec<Header> = bytes[PREFIX as usize..]
                .chunks_exact(80)
                .map(|c| {
                    let mut raw = [0u8; 80];
                    raw.copy_from_slice(c);
                    Header::from_bytes(raw)
                })
                .collect();
            for chunk in headers.chunks(LOAD_CHUNK) {
                let start = chain.tip_height() + 1;
                match chain.connect(start, chunk) {
                    Ok(_) => loaded += chunk.len() as u32,
                    Err(e) => {
                        tracing::warn!(
                            path = %path.display(),
                            error = %e,
                            "header file: a header does not verify; kept the ones before it"
                        );
                        // Keep the verified prefix of this chunk.
                        for (k, h) in chunk.iter().enumerate() {
                            if chain
                                .connect(start + k as u32, std::slice::from_ref(h))
                                .is_err()
                            {
                                break;
                            }
                            loaded += 1;
                        }
                        break;
                    }
                }
            }
        } else if !bytes.is_empty() {
            tracing::warn!(
                path = %path.display(),
                "header file: for another chain or checkpoint (or not a header file); starting it over"
            );
        }
        // Exactly the prefix and the headers that verified.
        if loaded == 0 {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            file.write_all(&prefix)?;
            file.flush()?;
        } else {
            file.set_len(PREFIX + 80 * u64::from(loaded))?;
        }
        let this = HeaderFile {
            path: path.to_owned(),
            file,
            stored: loaded,
        };
        Ok((this, loaded))
    }

    /// Makes the file hold `chain`'s headers, `changed` being the lowest
    /// height that changed since the last sync (a reorganisation's fork, or
    /// the first new header).
    pub(crate) fn sync(&mut self, chain: &HeaderChain, changed: u32) -> std::io::Result<()> {
        let base = chain.params().checkpoint.height;
        let keep = changed.saturating_sub(base + 1).min(self.stored);
        if keep < self.stored {
            self.file.set_len(PREFIX + 80 * u64::from(keep))?;
            self.stored = keep;
        }
        self.file
            .seek(SeekFrom::Start(PREFIX + 80 * u64::from(self.stored)))?;
        let tip = chain.tip_height();
        let mut out =
            Vec::with_capacity(80 * (tip - base - self.stored).min(LOAD_CHUNK as u32) as usize);
        for height in base + 1 + self.stored..=tip {
            if let Some(h) = chain.header(height) {
                out.extend_from_slice(h.as_bytes());
            }
            if out.len() >= 80 * LOAD_CHUNK {
                self.file.write_all(&out)?;
                out.clear();
            }
        }
        self.file.write_all(&out)?;
        self.file.flush()?;
        self.stored = tip - base;
        Ok(())
    }

    /// Where it is.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::store::tests::{branch, regtest};

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("rpc-electrum-{}-{name}", std::process::id()))
    }

    #[test]
    fn headers_survive_a_restart_and_a_reorganisation() {
        let path = temp("restart");
        let _ = std::fs::remove_file(&path);
        let mut chain = regtest();
        let (mut file, loaded) = HeaderFile::open(&path, &mut chain).expect("open");
        assert_eq!(loaded, 0);
        let main = branch(chain.tip_hash(), 1_700_000_000, 30, 1);
        chain.connect(1, &main).expect("valid");
        file.sync(&chain, 1).expect("sync");
        // A heavier branch from 21 replaces the top.
        let heavier = branch(main[19].hash(), 1_700_000_001, 12, 2);
        chain.connect(21, &heavier).expect("more work");
        file.sync(&chain, 21).expect("sync");
        drop(file);
        assert_eq!(
            std::fs::metadata(&path).expect("file").len(),
            PREFIX + 80 * 32
        );

        let mut again = regtest();
        let (_, loaded) = HeaderFile::open(&path, &mut again).expect("reopen");
        assert_eq!(loaded, 32);
        assert_eq!(
            (again.tip_height(), again.tip_hash()),
            (chain.tip_height(), chain.tip_hash())
        );
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_damaged_file_keeps_what_verifies_and_another_checkpoint_starts_over() {
        let path = temp("damaged");
        let _ = std::fs::remove_file(&path);
        let mut chain = regtest();
        let (mut file, _) = HeaderFile::open(&path, &mut chain).expect("open");
        chain
            .connect(1, &branch(chain.tip_hash(), 1_700_000_000, 10, 1))
            .expect("valid");
        file.sync(&chain, 1).expect("sync");
        drop(file);
        // Flip a byte of header 6 (its link to 5) and cut the last one short.
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[PREFIX as usize + 5 * 80 + 4] ^= 0xff;
        bytes.truncate(bytes.len() - 7);
        std::fs::write(&path, &bytes).expect("write");
        let mut again = regtest();
        let (_, loaded) = HeaderFile::open(&path, &mut again).expect("reopen");
        assert_eq!((loaded, again.tip_height()), (5, 5));
        assert_eq!(
            std::fs::metadata(&path).expect("file").len(),
            PREFIX + 80 * 5,
            "the file holds exactly what verified"
        );
        // Another checkpoint: nothing loaded, the file starts over.
        let other =
            crate::chain::ChainParams::bitcoin_regtest().checkpoint(crate::chain::Checkpoint {
                height: 3,
                hash: [9; 32],
                time: 0,
                next_bits: 0x207f_ffff,
            });
        let mut fresh = HeaderChain::new(other);
        let (_, loaded) = HeaderFile::open(&path, &mut fresh).expect("reopen");
        assert_eq!(loaded, 0);
        assert_eq!(std::fs::metadata(&path).expect("file").len(), PREFIX);
        let _ = std::fs::remove_file(&path);
    }
}
