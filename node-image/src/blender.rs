//! Runs Blender once for a batch: builds its command line, streams its output through the
//! [`Tracker`], and forwards SIGTERM/SIGINT to it.

use std::io;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use render_contract::{ProgressEvent, RenderArgs};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;

use crate::check::blender_frames;
use crate::thumbs::Thumbnailer;
use crate::tracker::{self, Tracker};
use render_node::handoff;

/// How long Blender may take to stop after SIGTERM before it is killed.
const GRACE: Duration = Duration::from_secs(10);

/// How long `blender --version` may take (it loads Blender, not a scene).
const VERSION_TIMEOUT: Duration = Duration::from_secs(60);

/// The version `blender --version` prints (`4.5.15`), when the image does not say it.
pub async fn version(blender: &std::path::Path) -> Option<String> {
    let run = Command::new(blender)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(VERSION_TIMEOUT, run)
        .await
        .ok()?
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| match crate::parse::parse(l) {
            crate::parse::Line::Version(v) => Some(v),
            _ => None,
        })
}

const PREPARE_SCRIPT: &str = include_str!("prepare.py");

/// The Python run inside Blender before rendering (see `prepare.py`).
pub fn prepare_script(args: &RenderArgs) -> String {
    PREPARE_SCRIPT
        .replace("@DEVICE@", args.device.as_str())
        .replace("@MISSING@", args.missing_files.as_str())
        .replace(
            "@FALLBACK@",
            if args.allow_cpu_fallback {
                "True"
            } else {
                "False"
            },
        )
}

const CHOOSE_SCRIPT: &str = include_str!("choose.py");

/// The Python run right after the file loads (see `choose.py`): the scene, camera and view
/// layers to render, and whether the scene's data stays loaded between the `frames` frames
/// of this run (a batch of one frame gains nothing from it, and pays its memory).
pub fn choose_script(args: &RenderArgs, frames: usize) -> String {
    let choice = serde_json::json!({
        "scene": args.scene,
        "camera": args.camera,
        "view_layers": args.view_layers,
        "persistent": !args.no_persistent_data && frames > 1,
    });
    // A JSON string is a Python string literal too: the names arrive as they were given.
    let literal = serde_json::to_string(&choice.to_string()).unwrap_or_default();
    CHOOSE_SCRIPT.replace("@CHOICE@", &literal)
}

/// Blender 5.0 logs its render progress (`Fra: N | … | Sample 3/8`, `Time: …`) only with the
/// `render` log category at the INFO level, which the bpy module offers no way to ask for. It
/// hands the same text to `render_stats` handlers: this one prints it as 5.0 would log it, behind
/// a marker, with the frame `render_pre` saw. Before 5.0 Blender prints these lines itself.
const STATS: &str = r#"import bpy

def render_node_stats():
    if bpy.app.version < (5, 0, 0):
        return
    frame = 0

    @bpy.app.handlers.persistent
    def pre(scene, *_):
        nonlocal frame
        frame = scene.frame_current

    @bpy.app.handlers.persistent
    def stats(text, *_):
        if isinstance(text, str):
            if not text.startswith("Time: "):
                text = "Fra: %d | %s" % (frame, text)
            print("RENDER_NODE:STATS " + text, flush=True)

    bpy.app.handlers.render_pre.append(pre)
    bpy.app.handlers.render_stats.append(stats)

render_node_stats()
"#;

/// Run after the prepare script when the batch waits for another: blocks until a line comes.
const HOLD: &str = "import sys; print('RENDER_NODE:HELD', flush=True); sys.stdin.readline()";

/// Blender's arguments. Order matters: Blender applies them left to right, so auto-run is off
/// before the file loads, and the output, format, engine, threads, prepare script and progress
/// handler come before `-f`, which renders; what follows `--` is for Cycles.
pub fn command_line(args: &RenderArgs, frames: &[i32]) -> Vec<String> {
    let mut argv: Vec<String> = vec![
        // Image sequences have no sound; skipping audio spares probing PulseAudio/ALSA.
        "-noaudio".into(),
        "-b".into(),
        // A scene is untrusted input: none of its Python runs (text blocks, drivers).
        "--disable-autoexec".into(),
        args.blend_file.display().to_string(),
        // The scene chosen before `-o`, `-F` and `-E`, which set the current scene's; a
        // Python error there ends Blender rather than render another scene.
        "--python-exit-code".into(),
        "1".into(),
        "--python-expr".into(),
        choose_script(args, frames.len()),
        "-o".into(),
        args.output.clone(),
        "-F".into(),
        args.format.as_str().into(),
        "-x".into(),
        "1".into(),
        "-E".into(),
        args.engine.as_str().into(),
    ];
    if args.threads > 0 {
        argv.extend(["-t".into(), args.threads.to_string()]);
    }
    argv.extend([
        "--python-exit-code".into(),
        "1".into(),
        "--python-expr".into(),
        prepare_script(args),
        "--python-expr".into(),
        STATS.into(),
    ]);
    if args.after.is_some() {
        // Started ahead: the scene is loaded and checked; hold here until render-node says
        // the batch before is done (one line on stdin).
        argv.extend(["--python-expr".into(), HOLD.into()]);
    }
    argv.extend([
        "-f".into(),
        blender_frames(frames),
        "--".into(),
        "--cycles-device".into(),
        args.device.as_str().into(),
    ]);
    argv
}

/// SIGTERM and SIGINT, listened to from the start so that neither kills render-node.
pub struct Stop {
    term: Signal,
    int: Signal,
}

impl Stop {
    pub fn listen() -> io::Result<Stop> {
        Ok(Stop {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    pub(crate) async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// How Blender ended.
#[derive(Debug)]
pub struct Ended {
    pub status: ExitStatus,
    /// The signal render-node received and passed on, if any.
    pub stopped_by: Option<&'static str>,
    /// Blender did not stop within [`GRACE`] and was killed.
    pub killed: bool,
    /// When Blender started (files written after this were written by this run).
    pub spawned: std::time::SystemTime,
}

fn emit(event: &ProgressEvent) {
    println!("{}", event.to_line());
}

/// Signal Blender's whole process group.
fn signal_group(pgid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on the process group of a child we spawned and have not reaped yet.
    unsafe {
        libc::kill(-(pgid as libc::pid_t), sig);
    }
}

fn forward_lines<R: AsyncRead + Unpin + Send + 'static>(
    stream: R,
    tx: mpsc::UnboundedSender<String>,
) {
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        // Bytes, not `lines()`: a path that is not UTF-8 must not stop the reading (and block
        // Blender on a full pipe).
        while let Ok(n) = reader.read_until(b'\n', &mut buf).await {
            if n == 0
                || tx
                    .send(
                        String::from_utf8_lossy(&buf)
                            .trim_end_matches(['\n', '\r'])
                            .to_string(),
                    )
                    .is_err()
            {
                break;
            }
            buf.clear();
        }
    });
}

/// Run Blender on `todo` (frame, expected file), printing progress events on stdout and
/// Blender's other lines on stderr, and asking `thumbs` for the thumbnail of each frame saved.
pub async fn render(
    args: &RenderArgs,
    todo: &[(i32, String)],
    stop: &mut Stop,
    thumbs: &Thumbnailer,
) -> io::Result<(Tracker, Ended)> {
    let frames: Vec<i32> = todo.iter().map(|(f, _)| *f).collect();
    let after = args
        .after
        .as_ref()
        .map(|name| (name.clone(), handoff::marker_path(&args.output, name)));
    let mut cmd = command(args, &frames, after.is_some());
    let spawned_at = std::time::SystemTime::now();
    let spawned = Instant::now();
    let mut child = cmd.spawn()?;
    let pgid = child.id().unwrap_or(0);
    let mut rx = output_lines(&mut child);
    let mut run = Running {
        tracker: Tracker::new(spawned, args.device.as_str(), todo),
        hold: child.stdin.take(),
        waiting: after.is_some(),
        held_at: None,
        stopped_by: None,
        killed: false,
        pgid,
        ready_port: args.ready_port,
    };
    let gate = handoff_gate(&after);
    tokio::pin!(gate);
    let deadline = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            (opened, name) = &mut gate, if run.waiting => {
                run.handed_off(opened, name, &after, spawned).await;
            }
            line = rx.recv() => {
                let Some(line) = line else { break };
                run.line(&line, thumbs);
            }
            name = stop.recv(), if run.stopped_by.is_none() => {
                run.stop(name);
                deadline.as_mut().reset(tokio::time::Instant::now() + GRACE);
            }
            _ = &mut deadline, if !run.killed => run.kill(),
        }
    }
    run.finish(child, thumbs, spawned_at).await
}

/// Blender's command: held on a piped stdin when started ahead (`--after`), in a process group
/// of its own, and killed with render-node.
fn command(args: &RenderArgs, frames: &[i32], held: bool) -> Command {
    let mut cmd = Command::new(&args.blender);
    cmd.args(command_line(args, frames))
        .stdin(if held { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // SAFETY: prctl(2) only, between fork and exec: Blender dies with render-node, even when
    // render-node is killed with SIGKILL, so it never outlives it.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// Blender's stdout and stderr lines, on one channel that closes once both have ended.
fn output_lines(child: &mut Child) -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    if let Some(out) = child.stdout.take() {
        forward_lines(out, tx.clone());
    }
    if let Some(err) = child.stderr.take() {
        forward_lines(err, tx.clone());
    }
    rx
}

/// Once the batch this one follows is done (or its marker says it will not be): the marker's
/// verdict and the batch's name. Never, for a batch not started ahead.
async fn handoff_gate(after: &Option<(String, PathBuf)>) -> (handoff::Opened, String) {
    match after {
        Some((name, path)) => {
            emit(&ProgressEvent::Waiting {
                after: name.clone(),
            });
            (handoff::wait(path).await, name.clone())
        }
        None => std::future::pending().await,
    }
}

/// The `--ready-port` listener, once the first frame is saved.
static READY: std::sync::OnceLock<std::net::TcpListener> = std::sync::OnceLock::new();

/// Listen on `port` for the rest of render-node's life. Once: a second Blender run of the batch
/// (frames rendered again) finds it listening. Without it the pod turns Ready only later
/// (never, for this batch), so a failure is said and the batch goes on.
fn listen_ready(port: u16) {
    if READY.get().is_some() {
        return;
    }
    let bound = std::net::TcpListener::bind(("::", port))
        .or_else(|_| std::net::TcpListener::bind(("0.0.0.0", port)));
    match bound {
        Ok(listener) => {
            let _ = READY.set(listener);
        }
        Err(e) => eprintln!("render-node: cannot listen on port {port}: {e}"),
    }
}

/// Print `events`, asking for the thumbnail of each frame saved; whether one was.
fn emit_all(events: Vec<ProgressEvent>, thumbs: &Thumbnailer) -> bool {
    let mut saved = false;
    for event in events {
        emit(&event);
        if let ProgressEvent::FrameSaved { frame, .. } = event {
            thumbs.add(frame);
            saved = true;
        }
    }
    saved
}

/// Blender while it runs: its output read so far, its hold, and how it is being stopped.
struct Running {
    tracker: Tracker,
    /// Blender's stdin while it is held (started ahead): a line on it lets it render.
    hold: Option<ChildStdin>,
    waiting: bool,
    /// When Blender reached the hold, the scene loaded.
    held_at: Option<Instant>,
    stopped_by: Option<&'static str>,
    killed: bool,
    pgid: u32,
    /// `--ready-port`, until the first frame is saved.
    ready_port: Option<u16>,
}

impl Running {
    /// The batch followed is done: let Blender render.
    async fn handed_off(
        &mut self,
        opened: handoff::Opened,
        name: String,
        after: &Option<(String, PathBuf)>,
        spawned: Instant,
    ) {
        self.waiting = false;
        if let (handoff::Opened::Done, Some((_, path))) = (opened, after) {
            // Its last reader: nothing else waits for a batch that is done.
            let _ = std::fs::remove_file(path);
        }
        let waited = spawned.elapsed();
        emit(&ProgressEvent::Handoff {
            after: name,
            opened: opened.as_str().to_string(),
            waited_seconds: tracker::round3(waited.as_secs_f64()),
        });
        // Blender's start does not count the time it sat loaded, waiting.
        self.tracker
            .held(self.held_at.map(|t| t.elapsed()).unwrap_or_default());
        if let Some(mut stdin) = self.hold.take() {
            // Blender gone already (bad input): its exit says why, not this write.
            let _ = stdin.write_all(b"go\n").await;
        }
    }

    fn line(&mut self, line: &str, thumbs: &Thumbnailer) {
        if self.waiting && line.trim() == "RENDER_NODE:HELD" {
            self.held_at = Some(Instant::now());
        }
        let events = self.tracker.line(line, Instant::now());
        self.emit(events, thumbs);
        if Tracker::echo(line) {
            eprintln!("blender: {line}");
        }
    }

    /// Print `events`; at the first frame saved the scene renders: listening on
    /// `--ready-port` turns the pod Ready.
    fn emit(&mut self, events: Vec<ProgressEvent>, thumbs: &Thumbnailer) {
        if emit_all(events, thumbs)
            && let Some(port) = self.ready_port.take()
        {
            listen_ready(port);
        }
    }

    fn stop(&mut self, name: &'static str) {
        eprintln!("render-node: {name} received, stopping Blender");
        self.stopped_by = Some(name);
        if self.pgid != 0 {
            signal_group(self.pgid, libc::SIGTERM);
        }
    }

    fn kill(&mut self) {
        eprintln!("render-node: Blender did not stop within {GRACE:?}; killing it");
        self.killed = true;
        if self.pgid != 0 {
            signal_group(self.pgid, libc::SIGKILL);
        }
    }

    /// Blender's output ended: the last events, its exit status, and no process of its group
    /// left.
    async fn finish(
        mut self,
        mut child: Child,
        thumbs: &Thumbnailer,
        spawned: std::time::SystemTime,
    ) -> io::Result<(Tracker, Ended)> {
        let events = self.tracker.finish(Instant::now());
        self.emit(events, thumbs);
        let status = child.wait().await?;
        // Anything left in Blender's group (it starts no helpers, but a scene's Python could).
        if self.pgid != 0 {
            signal_group(self.pgid, libc::SIGKILL);
        }
        Ok((
            self.tracker,
            Ended {
                status,
                stopped_by: self.stopped_by,
                killed: self.killed,
                spawned,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use render_contract::{Device, FrameSet, MissingFiles};

    #[test]
    fn everything_that_configures_the_render_comes_before_the_frames() {
        let mut a = RenderArgs::new(
            "/d/s.blend",
            FrameSet::Range {
                start: 1,
                end: 3,
                step: 1,
            },
            "/d/o/f_####",
        );
        a.threads = 4;
        a.device = Device::Cuda;
        let argv = command_line(&a, &[1, 3, 4]);
        let at = |flag: &str| argv.iter().position(|x| x == flag).unwrap_or(usize::MAX);
        assert_eq!(
            &argv[..4],
            ["-noaudio", "-b", "--disable-autoexec", "/d/s.blend"]
        );
        for flag in [
            "-o",
            "-F",
            "-x",
            "-E",
            "-t",
            "--python-exit-code",
            "--python-expr",
        ] {
            assert!(at(flag) < at("-f"), "{flag} must come before -f: {argv:?}");
        }
        assert!(
            argv[..at("-f")].iter().any(|x| x == STATS),
            "the progress handler must come before -f: {argv:?}"
        );
        assert_eq!(argv[at("-f") + 1], "1,3..4");
        let choose = argv.iter().position(|x| x.contains("CHOICE = json.loads("));
        assert!(
            choose.is_some_and(|c| c > 3 && c < at("-o")),
            "the scene is chosen before -o: {argv:?}"
        );
        assert_eq!(argv[at("-t") + 1], "4");
        assert_eq!(&argv[at("-f") + 2..], ["--", "--cycles-device", "CUDA"]);
    }

    #[test]
    fn choose_script_carries_names_as_given() {
        let mut a = RenderArgs::new("/d/s.blend", FrameSet::List(vec![1]), "/d/o/f_####");
        a.scene = Some("Shot \"10\"\n'b'".into());
        a.view_layers = vec!["Beauty".into(), "Shadow ✓".into()];
        let script = choose_script(&a, 8);
        assert!(!script.contains("@CHOICE@"));
        let line = script
            .lines()
            .find(|l| l.starts_with("CHOICE = json.loads("))
            .expect("CHOICE line");
        let literal = &line["CHOICE = json.loads(".len()..line.len() - 1];
        let json: String = serde_json::from_str(literal).expect("a string literal");
        let choice: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        assert_eq!(choice["scene"], "Shot \"10\"\n'b'");
        assert_eq!(choice["camera"], serde_json::Value::Null);
        assert_eq!(choice["view_layers"][1], "Shadow ✓");
        assert_eq!(choice["persistent"], true);
        assert!(choose_script(&a, 1).contains(r#"\"persistent\":false"#));
        a.no_persistent_data = true;
        assert!(choose_script(&a, 8).contains(r#"\"persistent\":false"#));
    }

    #[test]
    fn prepare_script_is_filled_in() {
        let mut a = RenderArgs::new("/d/s.blend", FrameSet::List(vec![1]), "/d/o/f_####");
        a.device = Device::Optix;
        a.allow_cpu_fallback = true;
        a.missing_files = MissingFiles::Warn;
        let script = prepare_script(&a);
        assert!(
            script.contains("WANT = \"OPTIX\"")
                && script.contains("FALLBACK = True")
                && script.contains("MISSING = \"warn\"")
        );
        assert!(!script.contains('@'));
        assert_eq!(
            command_line(&a, &[1])
                .iter()
                .filter(|x| x.as_str() == "-t")
                .count(),
            0
        );
    }
}
