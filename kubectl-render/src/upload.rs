//! Scene upload: files are hashed here, compared with what the claim already holds, and only
//! the missing ones are streamed as a tar into the transfer pod, which checks their hashes
//! before moving them into place (render pods never see a half-written file).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use sha2::{Digest, Sha256};
use tokio_util::io::SyncIoBridge;

use crate::error::{Error, Result};
use crate::pod::{MOUNT, TransferPod, lines};
use crate::progress;

/// A file to upload: its path in the bundle, on this machine, its size and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub rel: String,
    pub local: PathBuf,
    pub size: u64,
    pub sha256: String,
}

/// What goes into the claim: one .blend, or a packed tree with the .blend in it.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub entries: Vec<Entry>,
    /// The .blend's path inside the bundle.
    pub blend: String,
    /// Names the bundle's folder: the .blend's SHA-256, or the manifest's for a tree.
    pub digest: String,
}

/// Name of the manifest inside the tar stream.
const MANIFEST: &str = ".manifest.sha256";

impl Bundle {
    pub fn file(path: &Path) -> Result<Bundle> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::BlendUnreadable {
                path: path.to_path_buf(),
                reason: "the file name is not valid UTF-8".into(),
            })?
            .to_string();
        let entry = entry(path, name.clone())?;
        Ok(Bundle {
            digest: entry.sha256.clone(),
            entries: vec![entry],
            blend: name,
        })
    }

    /// Every file under `root`; `blend` is the scene's path relative to it.
    pub fn tree(root: &Path, blend: &str) -> Result<Bundle> {
        let mut files = Vec::new();
        walk(root, root, &mut files)?;
        files.sort();
        let entries = files
            .into_iter()
            .map(|(rel, local)| entry(&local, rel))
            .collect::<Result<Vec<_>>>()?;
        if !entries.iter().any(|e| e.rel == blend) {
            return Err(Error::Pack(format!("the pack has no {blend}")));
        }
        let digest = hex(&Sha256::digest(manifest(&entries).as_bytes()));
        Ok(Bundle {
            entries,
            blend: blend.to_string(),
            digest,
        })
    }

    /// The bundle's folder in the claim.
    pub fn dir(&self) -> String {
        format!("scenes/{}", &self.digest[..16])
    }

    /// The .blend's path in the claim, for `spec.blendFile`.
    pub fn blend_path(&self) -> String {
        format!("{}/{}", self.dir(), self.blend)
    }

    pub fn bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<()> {
    let read = std::fs::read_dir(dir).map_err(Error::io(format!("reading {}", dir.display())))?;
    for item in read {
        let item = item.map_err(Error::io(format!("reading {}", dir.display())))?;
        let path = item.path();
        let kind = item
            .file_type()
            .map_err(Error::io(format!("reading {}", path.display())))?;
        if kind.is_dir() {
            walk(root, &path, out)?;
        } else if kind.is_file() {
            let rel = path
                .strip_prefix(root)
                .ok()
                .and_then(|p| p.to_str())
                .ok_or_else(|| Error::Pack(format!("{} is not a UTF-8 path", path.display())))?;
            out.push((rel.replace('\\', "/"), path.clone()));
        }
    }
    Ok(())
}

fn entry(path: &Path, rel: String) -> Result<Entry> {
    check_rel(&rel)?;
    let unreadable = |e: std::io::Error| Error::BlendUnreadable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut file = std::fs::File::open(path).map_err(unreadable)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(unreadable)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok(Entry {
        rel,
        local: path.to_path_buf(),
        size,
        sha256: hex(&hasher.finalize()),
    })
}

/// Paths the remote scripts handle safely: relative, no `..`, no characters `sha256sum`
/// would escape.
fn check_rel(rel: &str) -> Result<()> {
    let bad = rel.is_empty()
        || rel.starts_with('/')
        || rel.split('/').any(|p| p == ".." || p.is_empty())
        || rel.contains(['\n', '\r', '\\'])
        || rel == MANIFEST;
    if bad {
        return Err(Error::Usage(format!("cannot upload a file named '{rel}'")));
    }
    Ok(())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `sha256sum` lines for the entries.
pub fn manifest<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> String {
    entries
        .into_iter()
        .map(|e| format!("{}  {}\n", e.sha256, e.rel))
        .collect()
}

/// Parse `sha256sum` output (`HASH  ./path`) into path → hash.
pub fn parse_sums(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let (hash, path) = l.split_once("  ").or_else(|| l.split_once(" *"))?;
            let ok = hash.len() == 64 && hash.bytes().all(|c| c.is_ascii_hexdigit());
            ok.then(|| {
                let path = path.strip_prefix("./").unwrap_or(path);
                (path.to_string(), hash.to_ascii_lowercase())
            })
        })
        .collect()
}

/// The hash-skip decision: the entries whose file the claim lacks or holds with other content.
pub fn to_send<'a>(entries: &'a [Entry], remote: &HashMap<String, String>) -> Vec<&'a Entry> {
    entries
        .iter()
        .filter(|e| remote.get(&e.rel) != Some(&e.sha256))
        .collect()
}

/// What an upload did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub files: usize,
    pub bytes: u64,
    pub skipped: usize,
}

const LIST_SCRIPT: &str = r#"cd "$1" 2>/dev/null || exit 0
find . -path './.incoming.*' -prune -o -type f -exec sha256sum {} +"#;

const UPLOAD_SCRIPT: &str = r#"set -eu
dest=$1
mkdir -p "$dest"
stage=$(mktemp -d "$dest/.incoming.XXXXXX")
trap 'rm -rf "$stage"' EXIT
tar -xf - -C "$stage" --no-same-owner --no-same-permissions
cd "$stage"
sha256sum -c --quiet --strict .manifest.sha256
while IFS= read -r line; do
  f=${line#*  }
  mkdir -p "$dest/$(dirname -- "$f")"
  mv -f -- "$f" "$dest/$f"
done < .manifest.sha256"#;

/// Upload what the claim does not hold yet.
pub async fn upload(pod: &TransferPod, bundle: &Bundle, bar: ProgressBar) -> Result<Report> {
    let dest = format!("{MOUNT}/{}", bundle.dir());
    let listing = pod
        .run("listing the scene folder", LIST_SCRIPT, &[&dest])
        .await?;
    let remote = parse_sums(&lines(&listing).collect::<Vec<_>>().join("\n"));
    let send: Vec<Entry> = to_send(&bundle.entries, &remote)
        .into_iter()
        .cloned()
        .collect();
    let report = Report {
        files: send.len(),
        bytes: send.iter().map(|e| e.size).sum(),
        skipped: bundle.entries.len() - send.len(),
    };
    if send.is_empty() {
        bar.finish_and_clear();
        return Ok(report);
    }
    bar.set_length(report.bytes);
    let mut proc = pod.exec(UPLOAD_SCRIPT, &[&dest], true, false).await?;
    let stdin = proc
        .stdin()
        .ok_or_else(|| Error::Kube("exec without stdin".into()))?;
    let writer = {
        let bar = bar.clone();
        tokio::task::spawn_blocking(move || write_tar(SyncIoBridge::new(stdin), &send, &bar))
    };
    let (written, finished) = tokio::join!(writer, pod.finish("unpacking the upload", proc));
    let written = written
        .map_err(|e| Error::Kube(format!("upload task: {e}")))
        .and_then(|r| r);
    match (finished, written) {
        (Err(Error::Remote { what, pod, reason }), _) => {
            let hint = if reason.contains("Permission denied") {
                format!("{reason} (the claim must be writable by uid 1000, as render pods are)")
            } else {
                reason
            };
            return Err(Error::Remote {
                what,
                pod,
                reason: hint,
            });
        }
        (Err(e), _) | (Ok(()), Err(e)) => return Err(e),
        (Ok(()), Ok(())) => {}
    }
    bar.finish_and_clear();
    Ok(report)
}

fn write_tar(
    out: SyncIoBridge<impl tokio::io::AsyncWrite + Unpin>,
    send: &[Entry],
    bar: &ProgressBar,
) -> Result<()> {
    let broken = |e: std::io::Error| Error::Io {
        context: "sending the upload".into(),
        source: e,
    };
    let mut tar = tar::Builder::new(out);
    let text = manifest(send);
    let mut header = tar::Header::new_gnu();
    header.set_size(text.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(now());
    tar.append_data(&mut header, MANIFEST, text.as_bytes())
        .map_err(broken)?;
    for e in send {
        let file = std::fs::File::open(&e.local).map_err(|err| Error::BlendUnreadable {
            path: e.local.clone(),
            reason: err.to_string(),
        })?;
        let mut header = tar::Header::new_gnu();
        header.set_size(e.size);
        header.set_mode(0o644);
        header.set_mtime(now());
        let counted = progress::Counted {
            inner: file.take(e.size),
            bar: bar.clone(),
        };
        tar.append_data(&mut header, &e.rel, counted)
            .map_err(broken)?;
    }
    tar.finish().map_err(broken)?;
    let mut out = tar.into_inner().map_err(broken)?;
    std::io::Write::flush(&mut out).map_err(broken)?;
    out.shutdown().map_err(broken)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(rel: &str, sha: char) -> Entry {
        Entry {
            rel: rel.into(),
            local: PathBuf::from(rel),
            size: 10,
            sha256: sha.to_string().repeat(64),
        }
    }

    #[test]
    fn sends_only_what_the_claim_lacks_or_holds_changed() {
        let entries = vec![
            e("shot.blend", 'a'),
            e("tex/wood.png", 'b'),
            e("tex/sky.exr", 'c'),
        ];
        let remote = parse_sums(&format!(
            "{}  ./shot.blend\n{}  ./tex/wood.png\nsha256sum: ./tex/x: Permission denied\n",
            "a".repeat(64),
            "f".repeat(64)
        ));
        let send: Vec<&str> = to_send(&entries, &remote)
            .iter()
            .map(|e| e.rel.as_str())
            .collect();
        assert_eq!(send, ["tex/wood.png", "tex/sky.exr"], "changed and missing");
        // Same content already there: nothing to send.
        let all = parse_sums(&manifest(&entries));
        assert!(to_send(&entries, &all).is_empty());
        // An empty folder: everything.
        assert_eq!(to_send(&entries, &HashMap::new()).len(), 3);
    }

    #[test]
    fn sums_parse_binary_mode_and_uppercase() {
        let sums = parse_sums(&format!("{} *a b.blend\n", "AB".repeat(32)));
        assert_eq!(
            sums.get("a b.blend").map(String::as_str),
            Some("ab".repeat(32).as_str())
        );
        assert!(parse_sums("not a sum\n").is_empty());
    }

    #[test]
    fn a_file_bundle_lives_under_its_hash() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("kubectl-render-unit-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("tex")).map_err(Error::io("mkdir"))?;
        std::fs::write(dir.join("shot.blend"), b"BLENDER-v304 test").map_err(Error::io("write"))?;
        std::fs::write(dir.join("tex/wood.png"), b"png").map_err(Error::io("write"))?;
        let b = Bundle::file(&dir.join("shot.blend"))?;
        // sha256("BLENDER-v304 test")
        assert_eq!(b.digest, hex(&Sha256::digest(b"BLENDER-v304 test")));
        assert_eq!(
            b.blend_path(),
            format!("scenes/{}/shot.blend", &b.digest[..16])
        );
        assert_eq!(b.bytes(), 17);
        let t = Bundle::tree(&dir, "shot.blend")?;
        let rels: Vec<&str> = t.entries.iter().map(|e| e.rel.as_str()).collect();
        assert_eq!(rels, ["shot.blend", "tex/wood.png"]);
        assert_ne!(t.digest, b.digest, "a tree is named by its manifest");
        assert!(Bundle::tree(&dir, "other.blend").is_err());
        std::fs::remove_dir_all(&dir).map_err(Error::io("cleanup"))?;
        Ok(())
    }

    #[test]
    fn unsafe_names_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "a\nb",
            ".manifest.sha256",
            "a//b",
        ] {
            assert!(check_rel(bad).is_err(), "{bad:?}");
        }
        assert!(check_rel("tex/wood grain.png").is_ok());
    }
}
