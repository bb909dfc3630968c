//! Faults of the node, not the scene: the render storage read-only or not answering on this
//! node, Blender killed by a signal. They exit with the contract's node fault codes
//! (`exit::NODE_*`), which the operator counts against the node and retries elsewhere.

use std::fs;
use std::io::{self, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;

use render_contract::{Outcome, RenderArgs, SceneFacts, exit};

use crate::blender::Ended;
use crate::report;

/// The node fault an I/O error on the render storage is, if it is one.
pub fn storage_fault(e: &io::Error) -> Option<i32> {
    match e.raw_os_error()? {
        libc::EROFS => Some(exit::NODE_OUTPUT_READ_ONLY),
        libc::EIO | libc::ESTALE | libc::ENOTCONN | libc::ETIMEDOUT | libc::EHOSTDOWN => {
            Some(exit::NODE_STORAGE_UNREACHABLE)
        }
        _ => None,
    }
}

/// Reads the .blend's first bytes and writes a probe file in each output directory: a node
/// fault (see [`storage_fault`]) and its one-line message, or `None` (anything else is left to
/// the input checks, which tell the user what is wrong with the input).
pub fn probe(args: &RenderArgs) -> Option<(i32, String)> {
    let blend = &args.blend_file;
    let read = fs::File::open(blend).and_then(|mut f| f.read(&mut [0u8; 16]));
    if let Err(e) = read
        && let Some(code) = storage_fault(&e)
    {
        return Some((
            code,
            format!("cannot read {} on this node: {e}", blend.display()),
        ));
    }
    let mut dirs: Vec<String> = args
        .frames
        .frames()
        .iter()
        .filter_map(|f| {
            let file = args.output_file(*f);
            Some(Path::new(&file).parent()?.display().to_string())
        })
        .collect();
    dirs.dedup();
    dirs.into_iter().find_map(|dir| {
        let probe = Path::new(&dir).join(format!(".render-node-probe-{}", std::process::id()));
        let written = fs::create_dir_all(&dir).and_then(|()| fs::write(&probe, b""));
        let _ = fs::remove_file(&probe);
        let e = written.err()?;
        let code = storage_fault(&e)?;
        Some((
            code,
            format!("output directory {dir} is not writable on this node: {e}"),
        ))
    })
}

/// Ends the batch on a node fault found before Blender ran: the termination message (the
/// render failed, worth a retry elsewhere) and the node fault's exit code.
pub fn finish(log: &Path, code: i32, why: String) -> i32 {
    let msg = report::plain(Outcome::RenderFailed, why);
    report::finish(log, &msg, &SceneFacts::default());
    code
}

/// The exit code once Blender ran: [`exit::NODE_GPU_UNUSABLE`] instead of bad input when the
/// GPU the pod was given is not usable; [`exit::NODE_BLENDER_KILLED`] instead of a failed render
/// when Blender was killed by SIGSEGV, SIGBUS or SIGILL, or by SIGKILL while the cgroup's
/// out-of-memory count (readable, before and after) did not move: not by render-node, not
/// by the out-of-memory killer, which are the scene's.
pub fn after_blender(code: i32, ended: &Ended, oom_before: Option<u64>, gpu_unusable: bool) -> i32 {
    // A GPU the node was given and Blender cannot use: [`exit::NODE_GPU_UNUSABLE`].
    if gpu_unusable && code == exit::BAD_INPUT {
        return exit::NODE_GPU_UNUSABLE;
    }
    if code != exit::RENDER_FAILED || ended.killed || ended.stopped_by.is_some() {
        return code;
    }
    let oom_same = matches!((oom_before, report::oom_kills()), (Some(a), Some(b)) if a == b);
    match ended.status.signal() {
        Some(libc::SIGSEGV | libc::SIGBUS | libc::SIGILL) => exit::NODE_BLENDER_KILLED,
        Some(libc::SIGKILL) if oom_same => exit::NODE_BLENDER_KILLED,
        _ => code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use render_contract::FrameSet;

    #[test]
    fn storage_errors_of_the_node_are_told_from_the_rest() {
        let e = |n| io::Error::from_raw_os_error(n);
        assert_eq!(
            storage_fault(&e(libc::EROFS)),
            Some(exit::NODE_OUTPUT_READ_ONLY)
        );
        for n in [libc::EIO, libc::ESTALE, libc::ENOTCONN] {
            assert_eq!(storage_fault(&e(n)), Some(exit::NODE_STORAGE_UNREACHABLE));
        }
        for n in [libc::EACCES, libc::ENOENT, libc::ENOSPC] {
            assert_eq!(
                storage_fault(&e(n)),
                None,
                "the input's or the claim's: {n}"
            );
        }
    }

    #[test]
    fn a_writable_output_and_a_missing_blend_are_no_node_fault() {
        let dir = std::env::temp_dir().join(format!("render-node-fault-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let frames: FrameSet = "1..3".parse().expect("frames");
        let args = RenderArgs::new(
            dir.join("missing.blend"),
            frames,
            format!("{}/out/f_####", dir.display()),
        );
        assert_eq!(probe(&args), None);
        assert!(dir.join("out").is_dir(), "made, as Blender would");
        let left: Vec<_> = fs::read_dir(dir.join("out")).expect("dir").collect();
        assert!(left.is_empty(), "no probe left behind");
        let _ = fs::remove_dir_all(&dir);
    }
}
