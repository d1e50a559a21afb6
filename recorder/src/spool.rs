//! The spool: requests waiting for the server, one file each, in the order they were cut.
//!
//! Each file is written whole to a temporary name, flushed to disk and renamed into place, so a
//! crash leaves either the whole request or none of it. A request's body is sealed to the server
//! before it gets here (an events batch always; see [`tracevault_codecs::sealed`]): what the
//! spool holds in the clear is only the request's routing (method, path with the session id,
//! idempotency key, event count), which the server needs to receive it anyway.
//!
//! The spool is bounded in bytes. When a new request would exceed the bound, the oldest events
//! batches are removed to make room (never a session's creation or close, which are tiny and
//! without which later batches could not land) and reported to the caller, who records the gap
//! in the session.
//!
//! File layout (docs/FORMAT.md "Recorder spool"): `TVSPOOL1`, the header's length (u32 LE), the
//! header (JSON: [`Header`]), the body.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 8] = b"TVSPOOL1";
const SUFFIX: &str = ".req";

/// Why the spool failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("spool: a request of {size} bytes does not fit in a spool of {max} bytes")]
    TooLarge { size: u64, max: u64 },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io { path: path.to_owned(), source }
}

/// What a request is, in the clear.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub method: String,
    pub path: String,
    pub idempotency_key: String,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    /// The session the request is for.
    pub session: String,
    /// Events the body holds (0 for a creation or a close), a gap marker included.
    pub events: u64,
    /// The gap this batch's first event (a marker) records: batches and events dropped before
    /// it. If this batch is dropped in turn, its gap is carried to the next one.
    #[serde(default)]
    pub gap_batches: u64,
    #[serde(default)]
    pub gap_events: u64,
}

/// A request to the server, as spooled and sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub header: Header,
    pub body: Vec<u8>,
}

impl Request {
    fn encode(&self) -> Vec<u8> {
        let header = serde_json::to_vec(&self.header).expect("a header serializes");
        let mut out = Vec::with_capacity(12 + header.len() + self.body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&self.body);
        out
    }

    fn decode(bytes: &[u8]) -> Result<Request, String> {
        let rest = bytes.strip_prefix(MAGIC).ok_or("not a spool file (no TVSPOOL1 magic)")?;
        let (len, rest) = rest.split_at_checked(4).ok_or("truncated before the header's length")?;
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        let (header, body) = rest.split_at_checked(len).ok_or("truncated in the header")?;
        let header = serde_json::from_slice(header).map_err(|e| format!("header: {e}"))?;
        Ok(Request { header, body: body.to_vec() })
    }
}

/// A request in the spool.
#[derive(Clone, Debug)]
pub struct Entry {
    pub number: u64,
    pub path: PathBuf,
    pub request: Request,
}

/// What was dropped to make room: the batches' session and how many events they held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    pub session: String,
    pub batches: u64,
    pub events: u64,
}

/// The on-disk queue.
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// (number, bytes, header), oldest first.
    entries: Vec<(u64, u64, Header)>,
    next: u64,
    /// The request being sent: never dropped to make room.
    in_flight: Option<u64>,
}

impl Spool {
    /// Opens (creating) a spool directory bounded to `max_bytes`. Temporary files a crash left
    /// are removed; files that do not parse are renamed `*.bad` and reported in the log.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
        }
        let mut entries = Vec::new();
        for item in fs::read_dir(dir).map_err(io(dir))? {
            let item = item.map_err(io(dir))?;
            let path = item.path();
            let name = item.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                fs::remove_file(&path).map_err(io(&path))?;
                continue;
            }
            let Some(number) = name.strip_suffix(SUFFIX).and_then(|n| n.parse::<u64>().ok()) else {
                continue;
            };
            let bytes = fs::read(&path).map_err(io(&path))?;
            match Request::decode(&bytes) {
                Ok(r) => entries.push((number, bytes.len() as u64, r.header)),
                Err(why) => {
                    tracing::error!("spool {}: {why}; set aside as .bad", path.display());
                    fs::rename(&path, path.with_extension("bad")).map_err(io(&path))?;
                }
            }
        }
        entries.sort_by_key(|e| e.0);
        let next = entries.last().map_or(1, |e| e.0 + 1);
        Ok(Spool { dir: dir.to_owned(), max_bytes, entries, next, in_flight: None })
    }

    /// Requests waiting.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes the waiting requests take.
    pub fn bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.1).sum()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn file(&self, number: u64) -> PathBuf {
        self.dir.join(format!("{number:020}{SUFFIX}"))
    }

    /// Adds a request durably (on disk before this returns); returns what was dropped to make
    /// room for it, oldest first, grouped by session.
    pub fn push(&mut self, request: &Request) -> Result<Vec<Dropped>, SpoolError> {
        let bytes = request.encode();
        let size = bytes.len() as u64;
        if size > self.max_bytes {
            return Err(SpoolError::TooLarge { size, max: self.max_bytes });
        }
        let mut dropped: Vec<Dropped> = Vec::new();
        // A session's creation or close (no events, a few hundred bytes) never makes room: it
        // may take the spool that far over its bound rather than cost a batch.
        while request.header.events > 0 && self.bytes() + size > self.max_bytes {
            let Some(i) = self.entries.iter().position(|e| e.2.events > 0 && Some(e.0) != self.in_flight)
            else {
                break;
            };
            let (number, _, h) = self.entries.remove(i);
            let path = self.file(number);
            fs::remove_file(&path).map_err(io(&path))?;
            // The batch's own events (its gap marker aside) and the gap it was carrying.
            let batches = 1 + h.gap_batches;
            let events = h.events - u64::from(h.gap_batches > 0) + h.gap_events;
            match dropped.iter_mut().find(|d| d.session == h.session) {
                Some(d) => {
                    d.batches += batches;
                    d.events += events;
                }
                None => dropped.push(Dropped { session: h.session, batches, events }),
            }
        }
        let number = self.next;
        let path = self.file(number);
        let tmp = path.with_extension("tmp");
        {
            let mut f = File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(&bytes).map_err(io(&tmp))?;
            f.sync_data().map_err(io(&tmp))?;
        }
        fs::rename(&tmp, &path).map_err(io(&path))?;
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io(&self.dir))?;
        self.next += 1;
        self.entries.push((number, size, request.header.clone()));
        Ok(dropped)
    }

    /// The oldest request, read from disk, marked in flight (not dropped while it is sent).
    pub fn oldest(&mut self) -> Result<Option<Entry>, SpoolError> {
        while let Some(&(number, ..)) = self.entries.first() {
            let path = self.file(number);
            let bytes = fs::read(&path).map_err(io(&path))?;
            match Request::decode(&bytes) {
                Ok(request) => {
                    self.in_flight = Some(number);
                    return Ok(Some(Entry { number, path, request }));
                }
                Err(why) => {
                    tracing::error!("spool {}: {why}; set aside as .bad", path.display());
                    fs::rename(&path, path.with_extension("bad")).map_err(io(&path))?;
                    self.entries.remove(0);
                }
            }
        }
        Ok(None)
    }

    /// Removes a request the server acknowledged.
    pub fn remove(&mut self, entry: &Entry) -> Result<(), SpoolError> {
        fs::remove_file(&entry.path).map_err(io(&entry.path))?;
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io(&self.dir))?;
        self.entries.retain(|e| e.0 != entry.number);
        self.in_flight = None;
        Ok(())
    }

    /// Moves a request the server refused out of the queue, into `rejected/` (still sealed), so
    /// nothing is lost silently and the queue behind it can drain.
    pub fn reject(&mut self, entry: &Entry) -> Result<PathBuf, SpoolError> {
        let dir = self.dir.join("rejected");
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let to = dir.join(entry.path.file_name().expect("a spool file has a name"));
        fs::rename(&entry.path, &to).map_err(io(&to))?;
        self.entries.retain(|e| e.0 != entry.number);
        self.in_flight = None;
        Ok(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(session: &str, events: u64, body: usize) -> Request {
        Request {
            header: Header {
                method: "POST".into(),
                path: format!("/v1/sessions/{session}/events"),
                idempotency_key: format!("k-{events}-{body}"),
                content_type: Some("application/msgpack".into()),
                content_encoding: None,
                session: session.into(),
                events,
                gap_batches: 0,
                gap_events: 0,
            },
            body: vec![7; body],
        }
    }

    #[test]
    fn keeps_order_across_reopen_and_drops_oldest_batches_when_full() {
        let dir = std::env::temp_dir().join(format!("tv-spool-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let mut spool = Spool::open(&dir, 4000).unwrap();
        let create = request("s", 0, 100);
        spool.push(&create).unwrap();
        for i in 1..=3 {
            assert!(spool.push(&request("s", i, 800)).unwrap().is_empty());
        }
        // Full: the fourth batch pushes out the first two batches, never the creation.
        let dropped = spool.push(&request("s", 4, 2000)).unwrap();
        assert_eq!(dropped, vec![Dropped { session: "s".into(), batches: 2, events: 3 }]);
        assert!(spool.bytes() <= 4000);
        fs::write(dir.join("00000000000000000099.tmp"), b"torn").unwrap();
        fs::write(dir.join("00000000000000000098.req"), b"garbage").unwrap();
        let mut spool = Spool::open(&dir, 4000).unwrap();
        assert!(!dir.join("00000000000000000099.tmp").exists());
        assert!(dir.join("00000000000000000098.bad").exists());
        let mut seen = Vec::new();
        while let Some(entry) = spool.oldest().unwrap() {
            seen.push(entry.request.header.events);
            spool.remove(&entry).unwrap();
        }
        assert_eq!(seen, vec![0, 3, 4]);
        assert!(matches!(spool.push(&request("s", 9, 5000)), Err(SpoolError::TooLarge { .. })));
        fs::remove_dir_all(&dir).unwrap();
    }
}
