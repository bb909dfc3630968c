//! Start ahead: a batch started while the batch before it in its slot still renders loads
//! Blender and the scene, then waits for that batch to be done before it renders, so a slot
//! never renders two batches at once and its next batch starts rendering without pod start,
//! Blender's start or the scene load in between.
//!
//! The two pods meet on the render's storage, which every batch of a render shares: a marker
//! file `.renderfarm/NAME` beside the frames. The batch rendering keeps it alive (`running N`,
//! N counting up every [`BEAT`]) and writes `done` once its Blender has ended; the batch
//! waiting reads it. Contents, not modification times, say it is alive: no clocks are compared
//! across machines, and NFS's attribute cache cannot make a live marker look still.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The folder of markers, beside the frames (hidden, like `.thumbs`).
pub const DIR: &str = ".renderfarm";
/// How often a rendering batch rewrites its marker.
pub const BEAT: Duration = Duration::from_secs(2);
/// A marker that has not changed for this long belongs to a batch that is gone (its pod was
/// killed or lost): the waiting batch renders.
pub const STALE: Duration = Duration::from_secs(30);
/// No marker at all for this long: the batch waited for never started (or an image from
/// before markers runs it): the waiting batch renders.
pub const ABSENT: Duration = Duration::from_secs(60);
/// How often the waiting batch reads the marker.
pub const POLL: Duration = Duration::from_millis(100);

/// The marker of batch `name` for frames written by `output` (a path pattern).
pub fn marker_path(output: &str, name: &str) -> PathBuf {
    let dir = Path::new(output).parent().unwrap_or(Path::new("."));
    dir.join(DIR).join(name)
}

/// Removes the markers named `prefix*` beside the frames `output` writes, and their folder once
/// it is empty; how many went. Run once every batch of the render is done (the preview step):
/// a batch nobody followed leaves its marker behind.
pub fn remove_markers(output: &str, prefix: &str) -> std::io::Result<usize> {
    let dir = marker_path(output, prefix);
    let Some(dir) = dir.parent() else {
        return Ok(0);
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            std::fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    // Another render's markers may share the folder: then it stays.
    let _ = std::fs::remove_dir(dir);
    Ok(removed)
}

/// Why the wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// The batch before is done.
    Done,
    /// Its marker stopped changing.
    Stale,
    /// It never wrote one.
    Absent,
}

impl Opened {
    pub fn as_str(self) -> &'static str {
        match self {
            Opened::Done => "done",
            Opened::Stale => "stale",
            Opened::Absent => "absent",
        }
    }
}

/// What the waiting batch has seen of the marker: fed each read, it says when to render.
#[derive(Debug)]
pub struct Gate {
    since: Instant,
    last: Option<String>,
    changed: Instant,
    seen: bool,
}

impl Gate {
    pub fn new(now: Instant) -> Gate {
        Gate {
            since: now,
            last: None,
            changed: now,
            seen: false,
        }
    }

    /// One read of the marker: its contents, or `None` when there is no such file. An empty
    /// read (the writer truncated it a moment ago) tells nothing.
    pub fn read(&mut self, contents: Option<&str>, now: Instant) -> Option<Opened> {
        match contents.map(str::trim) {
            Some("done") => Some(Opened::Done),
            Some("") => None,
            Some(text) => {
                if !self.seen || self.last.as_deref() != Some(text) {
                    self.seen = true;
                    self.last = Some(text.to_string());
                    self.changed = now;
                }
                (now.duration_since(self.changed) >= STALE).then_some(Opened::Stale)
            }
            None if self.seen => {
                // Removed after it was seen alive: it is not coming back.
                (now.duration_since(self.changed) >= STALE).then_some(Opened::Stale)
            }
            None => (now.duration_since(self.since) >= ABSENT).then_some(Opened::Absent),
        }
    }
}

/// Waits until the batch whose marker is `path` is done, or gone.
pub async fn wait(path: &Path) -> Opened {
    let mut gate = Gate::new(Instant::now());
    loop {
        let contents = std::fs::read_to_string(path).ok();
        if let Some(opened) = gate.read(contents.as_deref(), Instant::now()) {
            return opened;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// This batch's own marker, kept alive from [`Marker::start`] until [`Marker::done`] (or
/// until it is dropped).
pub struct Marker {
    path: PathBuf,
    beat: Option<tokio::task::JoinHandle<()>>,
}

impl Marker {
    /// Writes the marker and keeps it alive. A marker that cannot be written costs only the
    /// overlap: the batch started after this one renders once it finds no marker.
    pub fn start(path: PathBuf) -> Marker {
        if let Some(dir) = path.parent()
            && let Err(e) = std::fs::create_dir_all(dir)
        {
            eprintln!("render-node: cannot make {}: {e}", dir.display());
        }
        let beating = path.clone();
        let beat = tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                // In place, not by rename: a new file under the old name can hide behind a
                // client's cached directory entry on network storage.
                let _ = std::fs::write(&beating, format!("running {n}\n"));
                n += 1;
                tokio::time::sleep(BEAT).await;
            }
        });
        Marker {
            path,
            beat: Some(beat),
        }
    }

    /// This batch's Blender has ended: the batch waiting for it may render.
    pub fn done(&mut self) {
        if let Some(beat) = self.beat.take() {
            beat.abort();
            if let Err(e) = std::fs::write(&self.path, "done\n") {
                eprintln!("render-node: cannot write {}: {e}", self.path.display());
            }
        }
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        self.done();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_live_beside_the_frames() {
        assert_eq!(
            marker_path("/renders/shot/frame_####", "u-3"),
            PathBuf::from("/renders/shot/.renderfarm/u-3")
        );
    }

    #[test]
    fn a_renders_markers_go_with_their_folder_once_it_is_empty() {
        let root = std::env::temp_dir().join(format!("handoff-markers-{}", std::process::id()));
        let output = root.join("frame_####").display().to_string();
        assert_eq!(remove_markers(&output, "u-").expect("no folder"), 0);
        let dir = root.join(DIR);
        std::fs::create_dir_all(&dir).expect("folder");
        for name in ["u-0", "u-1"] {
            std::fs::write(dir.join(name), "done").expect("marker");
        }
        assert_eq!(remove_markers(&output, "u-").expect("remove"), 2);
        assert!(!dir.exists(), "the empty folder stays");
        std::fs::remove_dir_all(&root).expect("clean up");
    }

    #[test]
    fn done_opens_at_once() {
        let t = Instant::now();
        let mut g = Gate::new(t);
        assert_eq!(g.read(Some("running 0\n"), t), None);
        assert_eq!(g.read(Some("done\n"), t), Some(Opened::Done));
    }

    #[test]
    fn a_marker_kept_alive_holds_however_long() {
        let t = Instant::now();
        let mut g = Gate::new(t);
        for i in 0..100u64 {
            let now = t + BEAT * i as u32;
            assert_eq!(g.read(Some(&format!("running {i}")), now), None);
            // Reads between beats see the same contents, not yet stale.
            assert_eq!(g.read(Some(&format!("running {i}")), now + BEAT / 2), None);
        }
    }

    #[test]
    fn a_marker_that_stops_changing_opens_once_stale() {
        let t = Instant::now();
        let mut g = Gate::new(t);
        assert_eq!(g.read(Some("running 4"), t), None);
        assert_eq!(g.read(Some("running 4"), t + STALE / 2), None);
        assert_eq!(
            g.read(Some(""), t + STALE / 2),
            None,
            "a torn read says nothing"
        );
        assert_eq!(g.read(Some("running 4"), t + STALE), Some(Opened::Stale));
    }

    #[test]
    fn a_marker_removed_after_it_was_seen_opens_once_stale() {
        let t = Instant::now();
        let mut g = Gate::new(t);
        assert_eq!(g.read(Some("running 1"), t), None);
        assert_eq!(g.read(None, t + STALE / 2), None);
        assert_eq!(g.read(None, t + STALE), Some(Opened::Stale));
    }

    #[test]
    fn no_marker_at_all_opens_after_absent() {
        let t = Instant::now();
        let mut g = Gate::new(t);
        assert_eq!(g.read(None, t + ABSENT / 2), None);
        assert_eq!(g.read(None, t + ABSENT), Some(Opened::Absent));
        // One that shows up late holds again.
        let mut g = Gate::new(t);
        assert_eq!(g.read(Some("running 0"), t + ABSENT / 2), None);
        assert_eq!(g.read(Some("running 1"), t + ABSENT * 2), None);
    }

    #[tokio::test]
    async fn a_marker_is_alive_while_kept_and_done_when_dropped() {
        let dir = std::env::temp_dir().join(format!("handoff-{}", std::process::id()));
        let path = dir.join(DIR).join("b-1");
        let marker = Marker::start(path.clone());
        tokio::time::sleep(Duration::from_millis(50)).await;
        let alive = std::fs::read_to_string(&path).expect("marker written");
        assert!(alive.starts_with("running "), "{alive:?}");
        drop(marker);
        assert_eq!(std::fs::read_to_string(&path).expect("marker"), "done\n");
        assert_eq!(wait(&path).await, Opened::Done);
        let _ = std::fs::remove_dir_all(dir);
    }
}
