//! render-node with real Blender 4.5 on real scenes that these tests make. Blender is PyPI's bpy
//! in a venv that `hack/blender.sh` installs (4.5, and 5.0 for a scene saved by a newer Blender
//! and for 5.0's output), with `scripts/blender.py` as its `blender`; the tests fail, not skip,
//! without it.
//! `RENDER_NODE_TEST_BLENDER_4_5` / `_5_0` name another `blender` command.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use render_contract::{Outcome, ProgressEvent, TerminationMessage, TerminationReport, exit};
use renderfarm_testkit::frame::{Frame, check_png, decode_png};

mod common;
use common::{blender, blender_of};

const BIN: &str = env!("CARGO_BIN_EXE_render-node");
const WIDTH: u32 = 160;
const HEIGHT: u32 = 90;

/// Run a Python script in `blender` (`blender -b --python SCRIPT -- ARGS`); panics when it fails.
fn run_script(blender: &Path, script: &Path, args: &[&std::ffi::OsStr]) {
    // Tests run scripts side by side: each run gets a folder of its own.
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("script-tmp-{}-{run}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).expect("tmp");
    let out = Command::new(blender)
        .env("TMPDIR", &tmp)
        .args([
            "-b",
            "--factory-startup",
            "--python-exit-code",
            "1",
            "--python",
        ])
        .arg(script)
        .arg("--")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{} does not run: {e}", blender.display()));
    assert!(
        out.status.success(),
        "{} failed: {}{}",
        script.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Its session folder (a new one after --factory-startup) went with it.
    assert_nothing_left(&tmp);
    let _ = std::fs::remove_dir(&tmp);
}

/// Panics unless `tmp`, the TMPDIR a Blender that ended on its own had, is empty.
fn assert_nothing_left(tmp: &Path) {
    let left: Vec<_> = std::fs::read_dir(tmp)
        .expect("tmp")
        .map(|e| e.map(|e| e.file_name()))
        .collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
}

/// The demo scene (`scripts/make-scene.py`) saved by `blender` into `dir`: 160×90, Cycles,
/// 4 samples, a cube moving over 12 frames.
fn make_scene(blender: &Path, dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).expect("temp dir");
    let blend = dir.join("scene.blend");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-scene.py");
    let (w, h) = (WIDTH.to_string(), HEIGHT.to_string());
    let args: [&std::ffi::OsStr; 5] = [
        blend.as_os_str(),
        "12".as_ref(),
        w.as_ref(),
        h.as_ref(),
        "4".as_ref(),
    ];
    run_script(blender, &script, &args);
    assert!(blend.exists(), "make-scene.py wrote no {}", blend.display());
    blend
}

/// The scene, made once per test binary by Blender 4.5.
fn scene() -> &'static Path {
    static SCENE: OnceLock<PathBuf> = OnceLock::new();
    SCENE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("render-node-scene-{}", std::process::id()));
        make_scene(blender(), &dir)
    })
}

/// A test scene script of `tests/scenes/`.
fn scene_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scenes")
        .join(name)
}

fn workdir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("render-node-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("work dir");
    dir
}

fn command(dir: &Path, blend: &Path, frames: &str, extra: &[&str]) -> Command {
    command_using(blender(), dir, blend, frames, extra)
}

fn command_using(
    blender: &Path,
    dir: &Path,
    blend: &Path,
    frames: &str,
    extra: &[&str],
) -> Command {
    let out = dir.join("out/frame_####");
    command_writing(
        blender,
        blend,
        frames,
        &out,
        &dir.join("termination-log"),
        extra,
    )
}

fn command_writing(
    blender: &Path,
    blend: &Path,
    frames: &str,
    out: &Path,
    log: &Path,
    extra: &[&str],
) -> Command {
    let mut cmd = Command::new(BIN);
    // Blender's session folder goes beside the log, not into /tmp: a Blender these tests kill
    // cannot remove its own.
    let tmp = log.parent().expect("log in a folder").join("tmp");
    std::fs::create_dir_all(&tmp).expect("tmp");
    // Not the image's: render-node asks Blender its version.
    cmd.env("TMPDIR", tmp)
        .env_remove("RENDER_NODE_BLENDER_VERSION")
        .arg("--blender")
        .arg(blender)
        .arg("--blend-file")
        .arg(blend)
        .args(["--frames", frames, "--output"])
        .arg(out)
        .arg("--termination-log")
        .arg(log)
        .args(extra);
    cmd
}

fn report(dir: &Path) -> TerminationReport {
    let text =
        std::fs::read_to_string(dir.join("termination-log")).expect("termination message written");
    TerminationReport::parse(&text)
        .unwrap_or_else(|| panic!("termination message is not valid: {text}"))
}

fn message(dir: &Path) -> TerminationMessage {
    report(dir).message
}

/// Run render-node; (its output, the termination message, the whole report).
fn render_reporting(
    dir: &Path,
    blend: &Path,
    frames: &str,
    extra: &[&str],
) -> (Output, TerminationReport) {
    let _ = std::fs::remove_file(dir.join("termination-log"));
    let started = Instant::now();
    let out = command(dir, blend, frames, extra)
        .output()
        .expect("render-node runs");
    println!(
        "render-node {frames} {extra:?} of {}: exit {:?} in {:.1}s",
        blend.display(),
        out.status.code(),
        started.elapsed().as_secs_f64()
    );
    (out, report(dir))
}

fn render(dir: &Path, blend: &Path, frames: &str, extra: &[&str]) -> (Output, TerminationMessage) {
    let (out, r) = render_reporting(dir, blend, frames, extra);
    (out, r.message)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every stdout line is a progress event.
fn events(out: &Output) -> Vec<ProgressEvent> {
    stdout(out)
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a progress event ({e}): {l}"))
        })
        .collect()
}

fn saved(events: &[ProgressEvent]) -> Vec<i32> {
    events
        .iter()
        .filter_map(|e| {
            if let ProgressEvent::FrameSaved { frame, .. } = e {
                Some(*frame)
            } else {
                None
            }
        })
        .collect()
}

/// A rendered frame: decoded, `WIDTH`x`HEIGHT` and not blank; panics (at the caller) naming
/// what is wrong.
#[track_caller]
fn check_frame(path: &Path) {
    if let Err(e) = check_png(path, WIDTH, HEIGHT) {
        panic!("{e:#}");
    }
}

/// A frame decoded to RGB; panics (at the caller) naming the file when it cannot be.
#[track_caller]
fn decode(path: &Path) -> Frame {
    match decode_png(path) {
        Ok(frame) => frame,
        Err(e) => panic!("{e:#}"),
    }
}

#[test]
fn renders_three_frames_and_reports_them() {
    let dir = workdir("render");
    let (out, msg) = render(&dir, scene(), "1..3", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Blender ended on its own: its session folder went with it.
    assert_nothing_left(&dir.join("tmp"));
    let mut images = Vec::new();
    for f in 1..=3 {
        let path = dir.join(format!("out/frame_{f:04}.png"));
        check_frame(&path);
        images.push(decode(&path).rgb);
    }
    // The cube moves: no two frames are the same picture.
    assert!(
        images[0] != images[1] && images[1] != images[2],
        "frames do not differ"
    );

    assert_eq!(
        (msg.outcome, msg.frames_rendered, msg.frames_skipped),
        (Outcome::Succeeded, 3, 0)
    );
    assert!(
        msg.frames_missing.is_empty() && msg.message.is_none(),
        "{msg:?}"
    );
    assert_eq!(msg.device.as_deref(), Some("CPU"));
    assert!(
        msg.blender_version
            .as_deref()
            .is_some_and(|v| v.starts_with("4.5.")),
        "{msg:?}"
    );
    assert_eq!(report(&dir).scene.file_version.as_deref(), Some("4.5"));
    assert!(msg.seconds_per_frame.is_some_and(|s| s > 0.0), "{msg:?}");
    println!("seconds per frame: {:?}", msg.seconds_per_frame);

    let ev = events(&out);
    assert_eq!(saved(&ev), [1, 2, 3]);
    assert!(matches!(&ev[0], ProgressEvent::Start { to_render, .. } if to_render == &[1, 2, 3]));
    assert!(ev.iter().any(
        |e| matches!(e, ProgressEvent::Rendering { startup_seconds, .. } if *startup_seconds > 0.0)
    ));
    assert!(
        ev.iter()
            .any(|e| matches!(e, ProgressEvent::Device { used, .. } if used == "CPU"))
    );
    assert!(ev.iter().any(|e| matches!(
        e,
        ProgressEvent::Samples {
            frame: 3,
            done: 4,
            total: 4
        }
    )));
    assert!(matches!(
        ev.last(),
        Some(ProgressEvent::Done {
            rendered: 3,
            skipped: 0,
            exit_code: 0,
            ..
        })
    ));
}

#[test]
fn skips_frames_on_disk_unless_overwriting() {
    let dir = workdir("skip");
    let (first, _) = render(&dir, scene(), "2", &[]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let frame2 = std::fs::metadata(dir.join("out/frame_0002.png"))
        .and_then(|m| m.modified())
        .expect("frame 2");

    let (out, msg) = render(&dir, scene(), "1..3", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!((msg.frames_rendered, msg.frames_skipped), (2, 1));
    let ev = events(&out);
    assert!(
        matches!(&ev[0], ProgressEvent::Start { to_render, skipped, .. } if to_render == &[1, 3] && skipped == &[2])
    );
    assert_eq!(saved(&ev), [1, 3]);
    assert_eq!(
        std::fs::metadata(dir.join("out/frame_0002.png"))
            .and_then(|m| m.modified())
            .ok(),
        Some(frame2)
    );

    let (out, msg) = render(&dir, scene(), "1..3", &["--overwrite"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!((msg.frames_rendered, msg.frames_skipped), (3, 0));
    assert_eq!(saved(&events(&out)), [1, 2, 3]);

    // Nothing missing: Blender is not even started.
    let (out, msg) = render(&dir, scene(), "1..3", &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        (msg.outcome, msg.frames_rendered, msg.frames_skipped),
        (Outcome::Succeeded, 0, 3)
    );
    assert!(
        !stderr(&out).contains("blender:"),
        "Blender ran for nothing: {}",
        stderr(&out)
    );
}

#[test]
fn bad_input_exits_64_with_one_line_saying_why() {
    let dir = workdir("bad");
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let corrupt = dir.join("corrupt.blend");
    std::fs::write(&corrupt, &noise).expect("write");
    // Passes the header check, so Blender itself reads it and refuses it.
    let truncated = dir.join("truncated.blend");
    std::fs::write(&truncated, [b"BLENDER-v405".as_slice(), &noise].concat()).expect("write");
    // No one, not even root, can create a folder under a regular file.
    let a_file = dir.join("not-a-dir");
    std::fs::write(&a_file, b"x").expect("write");
    let under_file = format!("{}/out/f_####", a_file.display());
    let blend = scene().to_path_buf();
    let ok = format!("{}/o/f_####", dir.display());

    // (case, blend file, frames, output pattern, what the message says)
    let cases: [(&str, &Path, &str, &str, &str); 6] = [
        (
            "missing",
            &dir.join("nope.blend"),
            "1..2",
            &ok,
            "cannot read blend file",
        ),
        ("corrupt", &corrupt, "1..2", &ok, "is not a .blend file"),
        ("truncated", &truncated, "1..2", &ok, "Missing DNA block"),
        (
            "unwritable output",
            &blend,
            "1..2",
            &under_file,
            "cannot create output directory",
        ),
        (
            "reversed frames",
            &blend,
            "5..1",
            &ok,
            "frame range end 1 is before its start 5",
        ),
        (
            "unknown device",
            &blend,
            "1",
            &ok,
            "invalid value 'TPU' for '--device",
        ),
    ];
    for (case, blend, frames, output, why) in cases {
        let _ = std::fs::remove_file(dir.join("term"));
        let mut cmd = Command::new(BIN);
        cmd.arg("--blender")
            .arg(blender())
            .arg("--blend-file")
            .arg(blend)
            .args(["--frames", frames, "--output", output]);
        cmd.arg("--termination-log").arg(dir.join("term"));
        if case == "unknown device" {
            cmd.args(["--device", "TPU"]);
        }
        let out = cmd.output().expect("runs");
        assert_eq!(
            out.status.code(),
            Some(exit::BAD_INPUT),
            "{case}: {}",
            stderr(&out)
        );
        let msg = TerminationMessage::parse(
            &std::fs::read_to_string(dir.join("term")).unwrap_or_default(),
        )
        .unwrap_or_else(|| panic!("{case}: no termination message"));
        let text = msg.message.unwrap_or_default();
        assert_eq!(msg.outcome, Outcome::BadInput, "{case}");
        assert!(
            text.contains(why) && !text.contains('\n'),
            "{case}: message {text:?} should say {why:?}"
        );
        assert!(
            stderr(&out).contains(why),
            "{case}: stderr lacks {why:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn frames_outside_the_scene_render_with_a_warning() {
    // Blender renders frames past the scene's end (the animation holds its last pose); so does
    // render-node, and it says so.
    let dir = workdir("outside");
    let (out, msg) = render(&dir, scene(), "12..13", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!((msg.outcome, msg.frames_rendered), (Outcome::Succeeded, 2));
    let text = msg.message.unwrap_or_default();
    assert!(
        text.contains("frames 13 are outside the scene's frame range 1..12"),
        "{text}"
    );
    assert!(
        events(&out)
            .iter()
            .any(|e| matches!(e, ProgressEvent::Warning { .. }))
    );
}

#[test]
fn a_missing_gpu_is_its_nodes_fault_unless_fallback_is_allowed() {
    let dir = workdir("gpu");
    let (out, msg) = render(&dir, scene(), "1", &["--device", "CUDA"]);
    // The pod was given a GPU and Blender sees none: retried on another node.
    assert_eq!(
        out.status.code(),
        Some(exit::NODE_GPU_UNUSABLE),
        "{}",
        stderr(&out)
    );
    assert_eq!(msg.outcome, Outcome::BadInput);
    let text = msg.message.unwrap_or_default();
    assert!(
        text.contains("no CUDA device found") && text.contains("--allow-cpu-fallback"),
        "{text}"
    );
    assert!(!dir.join("out/frame_0001.png").exists());
    assert!(
        !events(&out)
            .iter()
            .any(|e| matches!(e, ProgressEvent::FrameStarted { .. })),
        "no frame should render: {}",
        stdout(&out)
    );

    let (out, msg) = render(
        &dir,
        scene(),
        "1",
        &["--device", "CUDA", "--allow-cpu-fallback"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        (msg.outcome, msg.device.as_deref()),
        (Outcome::Succeeded, Some("CPU"))
    );
    assert!(
        msg.message
            .unwrap_or_default()
            .contains("no CUDA device found; rendering on the CPU")
    );
    let ev = events(&out);
    assert!(
        ev.iter().any(|e| matches!(e, ProgressEvent::Device { requested, used, fallback: true, .. } if requested == "CUDA" && used == "CPU")),
        "{}",
        stdout(&out)
    );
}

#[test]
fn workbench_renders_without_frame_lines() {
    let dir = workdir("workbench");
    let (out, msg) = render(&dir, scene(), "1..2", &["--engine", "BLENDER_WORKBENCH"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        (msg.frames_rendered, msg.device.as_deref()),
        (2, Some("OPENGL"))
    );
    assert_eq!(saved(&events(&out)), [1, 2]);
    check_frame(&dir.join("out/frame_0002.png"));
}

#[test]
fn eevee_is_this_blenders_eevee() {
    // The CRD's BLENDER_EEVEE is BLENDER_EEVEE_NEXT in Blender 4.2 to 4.5; rendered headless
    // through EGL with Mesa's software OpenGL.
    let dir = workdir("eevee");
    let (out, msg) = render(&dir, scene(), "1", &["--engine", "BLENDER_EEVEE"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        (msg.frames_rendered, msg.device.as_deref()),
        (1, Some("OPENGL"))
    );
    assert!(
        events(&out).iter().any(|e| matches!(e, ProgressEvent::Device { detail: Some(d), .. } if d == "BLENDER_EEVEE_NEXT")),
        "{}",
        stdout(&out)
    );
    check_frame(&dir.join("out/frame_0001.png"));
}

/// Processes whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let status = std::fs::read_to_string(e.path().join("status")).ok()?;
            let ppid: u32 = status
                .lines()
                .find_map(|l| l.strip_prefix("PPid:"))?
                .trim()
                .parse()
                .ok()?;
            (ppid == pid).then(|| e.file_name().to_str()?.parse().ok())?
        })
        .collect()
}

fn alive(pid: u32) -> bool {
    // A zombie is dead; anything else under /proc/<pid> is running.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// Start a 12-frame render and return once render-node printed the `until` event (the first
/// `frame_started` or `frame_saved`), with Blender's pid.
fn start_long_render(dir: &Path, until: &str) -> (std::process::Child, u32) {
    let mut child = command(dir, scene(), "1..12", &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    let until = format!("\"event\":\"{until}\"");
    while stdout.read_line(&mut line).unwrap_or(0) > 0 && !line.contains(&until) {
        line.clear();
    }
    assert!(line.contains(&until), "render-node ended before {until}");
    // Keep draining stdout so render-node never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    // Its other children are ffmpeg, making thumbnails; between fork and exec one is still a
    // copy of render-node. Blender is the child that runs neither.
    let blender: Vec<u32> = children(child.id())
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let argv0 = c.split(|b| *b == 0).next().unwrap_or_default();
                let name = String::from_utf8_lossy(argv0);
                let name = name.rsplit('/').next().unwrap_or_default();
                !name.is_empty() && name != "ffmpeg" && name != "render-node"
            })
        })
        .collect();
    assert_eq!(
        blender.len(),
        1,
        "render-node should run exactly one Blender: {blender:?}"
    );
    (child, blender[0])
}

/// Progress events, each with when it was read.
type Stamped = Vec<(Instant, ProgressEvent)>;

/// Runs render-node in the background: its exit code and stamped events.
fn spawn_stamped(mut cmd: Command) -> std::thread::JoinHandle<(Option<i32>, Stamped)> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn render-node");
    let stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    std::thread::spawn(move || {
        let events = stdout
            .lines()
            .map_while(Result::ok)
            .map(|l| {
                let e = serde_json::from_str(&l)
                    .unwrap_or_else(|e| panic!("not a progress event ({e}): {l}"));
                (Instant::now(), e)
            })
            .collect();
        (child.wait().expect("render-node ends").code(), events)
    })
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    l.local_addr().expect("addr").port()
}

/// Dials `port` every 10 ms for up to two minutes: when it first took a connection.
fn first_listening(port: u16) -> std::thread::JoinHandle<Option<Instant>> {
    std::thread::spawn(move || {
        let until = Instant::now() + Duration::from_secs(120);
        while Instant::now() < until {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    })
}

fn mtime(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_batch_started_ahead_renders_only_once_the_batch_before_is_done() {
    let dir = workdir("ahead");
    let out = dir.join("out/frame_####");
    // Ports of their own: tests run side by side.
    let (port_a, port_b) = (free_port(), free_port());
    let (ready_a, ready_b) = (port_a.to_string(), port_b.to_string());
    let (dial_a, dial_b) = (first_listening(port_a), first_listening(port_b));
    let first = command_writing(
        blender(),
        scene(),
        "1..3",
        &out,
        &dir.join("log-a"),
        &["--marker", "u-0", "--ready-port", &ready_a],
    );
    let a = spawn_stamped(first);
    // Started at once: it loads the scene while the first batch renders, then waits for it.
    let second = command_writing(
        blender(),
        scene(),
        "4..6",
        &out,
        &dir.join("log-b"),
        &[
            "--marker",
            "u-1",
            "--after",
            "u-0",
            "--ready-port",
            &ready_b,
        ],
    );
    let b = spawn_stamped(second);
    let (code_a, ev_a) = a.join().expect("first batch");
    let (code_b, ev_b) = b.join().expect("second batch");
    assert_eq!((code_a, code_b), (Some(0), Some(0)));
    let only =
        |ev: &[(Instant, ProgressEvent)]| ev.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>();
    assert_eq!(saved(&only(&ev_a)), [1, 2, 3]);
    assert_eq!(saved(&only(&ev_b)), [4, 5, 6]);

    let at = |ev: &[(Instant, ProgressEvent)], want: fn(&ProgressEvent) -> bool| {
        ev.iter().find(|(_, e)| want(e)).map(|(t, _)| *t)
    };
    let a_last_saved = ev_a
        .iter()
        .rev()
        .find(|(_, e)| matches!(e, ProgressEvent::FrameSaved { .. }))
        .map(|(t, _)| *t)
        .expect("first batch saved frames");
    let waiting = at(
        &ev_b,
        |e| matches!(e, ProgressEvent::Waiting { after } if after == "u-0"),
    )
    .expect("the second batch says it waits");
    let handoff = ev_b
        .iter()
        .find_map(|(t, e)| match e {
            ProgressEvent::Handoff {
                opened,
                waited_seconds,
                ..
            } => Some((*t, opened.clone(), *waited_seconds)),
            _ => None,
        })
        .expect("the second batch's wait ends");
    let b_first_started = at(&ev_b, |e| matches!(e, ProgressEvent::FrameStarted { .. }))
        .expect("second batch started a frame");
    assert_eq!(handoff.1, "done", "the first batch ended normally");
    assert!(waiting < handoff.0 && handoff.0 <= b_first_started);
    assert!(
        a_last_saved <= handoff.0,
        "the second batch rendered before the first was done"
    );
    // The files agree, by the kernel's clock.
    assert!(mtime(&dir.join("out/frame_0003.png")) <= mtime(&dir.join("out/frame_0004.png")));
    // Each listens on its ready port (the pod turns Ready) once its first frame is saved,
    // before its second; the batch started ahead not while it waits.
    let saved_at = |ev: &[(Instant, ProgressEvent)], n: usize| {
        ev.iter()
            .filter(|(_, e)| matches!(e, ProgressEvent::FrameSaved { .. }))
            .nth(n)
            .map(|(t, _)| *t)
            .expect("frames saved")
    };
    let (ra, rb) = (
        dial_a
            .join()
            .expect("dial a")
            .expect("first batch never listened"),
        dial_b
            .join()
            .expect("dial b")
            .expect("second batch never listened"),
    );
    let started_a = at(&ev_a, |e| matches!(e, ProgressEvent::FrameStarted { .. })).expect("start");
    assert!(
        started_a < ra && ra <= saved_at(&ev_a, 1),
        "first batch's ready port"
    );
    assert!(
        handoff.0 < rb && rb <= saved_at(&ev_b, 1),
        "second batch's ready port"
    );
    // Its start counts loading, not the time it sat loaded.
    let startup = ev_b
        .iter()
        .find_map(|(_, e)| match e {
            ProgressEvent::Rendering {
                startup_seconds, ..
            } => Some(*startup_seconds),
            _ => None,
        })
        .expect("rendering event");
    println!(
        "second batch: waited {:.2} s in all, Blender's start {startup:.2} s",
        handoff.2
    );
    assert!(startup < handoff.2, "{startup} ≥ {}", handoff.2);
    // The first batch's marker is gone (read by its follower); the second's says done.
    let markers = dir.join("out/.renderfarm");
    assert!(!markers.join("u-0").exists());
    assert_eq!(
        std::fs::read_to_string(markers.join("u-1")).ok().as_deref(),
        Some("done\n")
    );
}

#[test]
fn sigterm_stops_blender_and_leaves_no_process() {
    let dir = workdir("sigterm");
    // After the first frame is saved, so that there is a whole frame to keep and others to lose.
    let (mut child, blender) = start_long_render(&dir, "frame_saved");
    // SAFETY: signalling a child we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let stopped = Instant::now();
    let status = child.wait().expect("wait");
    println!("render-node stopped {:?} after SIGTERM", stopped.elapsed());
    assert_eq!(status.code(), Some(exit::TERMINATED));
    assert!(!alive(blender), "Blender ({blender}) outlived render-node");
    let msg = message(&dir);
    assert_eq!(msg.outcome, Outcome::Terminated);
    assert!(
        msg.message
            .as_deref()
            .unwrap_or("")
            .starts_with("stopped by SIGTERM")
    );
    assert!(
        msg.frames_rendered >= 1
            && !msg.frames_missing.is_empty()
            && msg.frames_missing.len() + msg.frames_rendered as usize == 12,
        "{msg:?}"
    );
    // The frames reported rendered are whole on disk (a retry skips them safely); the others
    // are not there at all (a frame cut short was removed).
    for f in 1..=12 {
        let path = dir.join(format!("out/frame_{f:04}.png"));
        if msg.frames_missing.contains(&f) {
            assert!(!path.exists(), "frame {f} is reported missing but on disk");
        } else {
            check_frame(&path);
        }
    }
}

#[test]
fn blender_dies_with_render_node_even_on_sigkill() {
    let dir = workdir("sigkill");
    let (mut child, blender) = start_long_render(&dir, "frame_started");
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(blender) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(blender), "Blender ({blender}) was orphaned");
}

/// The RGB of pixel (x, y) of a PNG, top-left origin.
fn pixel(path: &Path, x: u32, y: u32) -> [u8; 3] {
    let frame = decode(path);
    frame.rgb[(y * frame.width + x) as usize]
}

#[test]
fn a_scene_saved_by_a_newer_blender_is_refused() {
    let dir = workdir("newer");
    let blend = make_scene(&blender_of("5.0"), &dir.join("scene"));
    let (out, r) = render_reporting(&dir, &blend, "1..2", &[]);
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT), "{}", stderr(&out));
    let msg = &r.message;
    assert_eq!(msg.outcome, Outcome::BadInput);
    let text = msg.message.clone().unwrap_or_default();
    assert!(
        text.contains("saved by Blender 5.0")
            && text.contains("Blender 4.5.")
            && text.contains("spec.blenderVersion to \"5.0\""),
        "{text}"
    );
    assert_eq!(r.scene.file_version.as_deref(), Some("5.0"));
    assert!(
        msg.blender_version
            .as_deref()
            .is_some_and(|v| v.starts_with("4.5.")),
        "{msg:?}"
    );
    assert_eq!(msg.frames_missing, [1, 2]);
    // Refused before Blender opened the file.
    assert!(
        !events(&out)
            .iter()
            .any(|e| matches!(e, ProgressEvent::Rendering { .. })),
        "{}",
        stdout(&out)
    );

    // Blender 5.0 renders it, and says both versions.
    let out = command_using(&blender_of("5.0"), &dir, &blend, "1", &[])
        .output()
        .expect("render-node runs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let r = report(&dir);
    assert_eq!(r.scene.file_version.as_deref(), Some("5.0"));
    assert!(
        r.message
            .blender_version
            .as_deref()
            .is_some_and(|v| v.starts_with("5.0.")),
        "{r:?}"
    );
}

/// What render-node made of one frame: started, all its samples, saved (with seconds) and
/// thumbnailed, in that order.
#[track_caller]
fn assert_frame_reported(ev: &[ProgressEvent], frame: i32, samples: u32) -> f64 {
    let at = |want: &dyn Fn(&ProgressEvent) -> bool| {
        ev.iter()
            .position(want)
            .unwrap_or_else(|| panic!("frame {frame}: an event is missing: {ev:?}"))
    };
    let started = at(&|e| matches!(e, ProgressEvent::FrameStarted { frame: f } if *f == frame));
    let sampled = at(&|e| {
        matches!(e, ProgressEvent::Samples { frame: f, done, total }
            if *f == frame && *done == samples && *total == samples)
    });
    let saved = at(&|e| matches!(e, ProgressEvent::FrameSaved { frame: f, .. } if *f == frame));
    let thumb = at(&|e| matches!(e, ProgressEvent::Thumbnail { frame: f, .. } if *f == frame));
    assert!(
        started < sampled && sampled < saved && saved < thumb,
        "frame {frame}: events out of order: {ev:?}"
    );
    let ProgressEvent::FrameSaved { seconds, .. } = &ev[saved] else {
        unreachable!()
    };
    let seconds = seconds.unwrap_or_else(|| panic!("frame {frame}: no seconds"));
    // Blender's own `Time:` line, in hundredths; render-node's clock would give thousandths.
    assert!(
        seconds > 0.0 && ((seconds * 100.0).round() - seconds * 100.0).abs() < 1e-6,
        "frame {frame}: {seconds} s is not Blender's `Time:`"
    );
    seconds
}

#[test]
fn blender_5_0_reports_frames_samples_seconds_and_thumbnails() {
    // Blender 5.0 logs through its logging system, and its progress only at a level the module
    // cannot ask for: the same events as with 4.5 all the same.
    let blender = blender_of("5.0");
    let dir = workdir("blender-5-0");
    let blend = make_scene(&blender, &dir.join("scene"));
    let out = command_using(&blender, &dir, &blend, "1..3", &[])
        .output()
        .expect("render-node runs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let r = report(&dir);
    assert_eq!(
        (r.message.outcome, r.message.frames_rendered),
        (Outcome::Succeeded, 3)
    );
    assert!(
        r.message
            .blender_version
            .as_deref()
            .is_some_and(|v| v.starts_with("5.0.")),
        "{r:?}"
    );
    let ev = events(&out);
    assert_eq!(saved(&ev), [1, 2, 3]);
    let mut seconds = Vec::new();
    for f in 1..=3 {
        check_frame(&dir.join(format!("out/frame_{f:04}.png")));
        let thumb = dir.join(format!("out/.thumbs/frame_{f:04}.jpg"));
        assert!(thumb.is_file(), "no {}", thumb.display());
        seconds.push(assert_frame_reported(&ev, f, 4));
    }
    let mean = (seconds.iter().sum::<f64>() / 3.0 * 1000.0).round() / 1000.0;
    assert_eq!(r.message.seconds_per_frame, Some(mean), "{seconds:?}");
    assert!(matches!(
        ev.last(),
        Some(ProgressEvent::Done { seconds_per_frame: Some(s), .. }) if *s == mean
    ));
    // Blender's progress lines became events; they are not echoed as well.
    assert!(!stderr(&out).contains("Saved:"), "{}", stderr(&out));
}

#[test]
fn scenes_run_no_python() {
    let dir = workdir("python");
    let markers = dir.join("markers");
    std::fs::create_dir_all(&markers).expect("markers dir");
    run_script(
        blender(),
        &scene_script("untrusted.py"),
        &[dir.as_os_str(), markers.as_os_str()],
    );
    let ran = || -> Vec<String> {
        std::fs::read_dir(&markers)
            .expect("markers dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(
        ran(),
        Vec::<String>::new(),
        "making the scenes ran their code"
    );

    // A registered text block and a Python driver: skipped, the frames render, a warning says so.
    let scripts = dir.join("scripts");
    std::fs::create_dir_all(&scripts).expect("dir");
    let (out, msg) = render(&scripts, &dir.join("scripts.blend"), "1..2", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!((msg.outcome, msg.frames_rendered), (Outcome::Succeeded, 2));
    assert!(
        msg.message
            .as_deref()
            .unwrap_or("")
            .contains("the scene's Python did not run"),
        "{msg:?}"
    );
    assert_eq!(ran(), Vec::<String>::new(), "the scene's Python ran");

    // A Freestyle Python style module: refused, since Blender would draw the frames without it.
    let freestyle = dir.join("freestyle");
    std::fs::create_dir_all(&freestyle).expect("dir");
    let (out, msg) = render(&freestyle, &dir.join("freestyle.blend"), "1..2", &[]);
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT), "{}", stderr(&out));
    let text = msg.message.clone().unwrap_or_default();
    assert!(
        text.contains("Freestyle") && text.contains("style.py"),
        "{text}"
    );
    assert_eq!((msg.frames_rendered, msg.frames_missing), (0, vec![1, 2]));
    assert_eq!(ran(), Vec::<String>::new(), "the style module ran");
}

#[test]
fn external_files_are_checked_before_the_first_frame() {
    let dir = workdir("external");
    let files = dir.join("scene");
    run_script(
        blender(),
        &scene_script("external.py"),
        &[files.as_os_str()],
    );
    let blend = files.join("scene.blend");
    let (texture, library) = (files.join("tex.png"), files.join("lib.blend"));
    // Each case in its own folder: termination-log, out/frame_0001.png.
    let case = |name: &str| {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).expect("case dir");
        d
    };
    let frame = |name: &str| dir.join(name).join("out/frame_0001.png");
    let green = |p: [u8; 3]| p[0] < 30 && p[1] > 220 && p[2] < 30;
    let red = |p: [u8; 3]| p[0] > 220 && p[1] < 30 && p[2] < 30;
    let magenta = |p: [u8; 3]| p[0] > 220 && p[1] < 30 && p[2] > 220;

    // Everything there: the texture in the middle, the library's red marker at the left.
    let (out, r) = render_reporting(&case("all"), &blend, "1", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(r.scene.missing_files.is_empty(), "{r:?}");
    let (middle, left) = (pixel(&frame("all"), 80, 45), pixel(&frame("all"), 24, 45));
    assert!(green(middle), "the texture is not in the frame: {middle:?}");
    assert!(red(left), "the linked marker is not in the frame: {left:?}");

    // The texture gone: bad input naming it, before any frame.
    std::fs::rename(&texture, files.join("tex.png.away")).expect("move texture");
    let (out, r) = render_reporting(&case("fail"), &blend, "1", &[]);
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT), "{}", stderr(&out));
    let path = texture.display().to_string();
    assert_eq!(r.scene.missing_files, std::slice::from_ref(&path));
    assert_eq!(r.scene.missing_files_count, 1);
    assert!(
        r.message.message.as_deref().unwrap_or("").contains(&path),
        "{r:?}"
    );
    assert!(!frame("fail").exists());
    assert!(events(&out).iter().any(
        |e| matches!(e, ProgressEvent::MissingFiles { action, count: 1, .. } if action == "fail")
    ));

    // --missing-files warn: rendered without it (Blender's magenta), and listed.
    let (out, r) = render_reporting(&case("warn"), &blend, "1", &["--missing-files", "warn"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        (r.message.outcome, r.message.frames_rendered),
        (Outcome::Succeeded, 1)
    );
    assert_eq!(r.scene.missing_files, std::slice::from_ref(&path));
    assert!(
        r.message
            .message
            .as_deref()
            .unwrap_or("")
            .contains("rendering without 1 external files"),
        "{r:?}"
    );
    let middle = pixel(&frame("warn"), 80, 45);
    assert!(
        magenta(middle),
        "a missing texture renders magenta: {middle:?}"
    );

    // The library gone (the texture back): bad input naming the library.
    std::fs::rename(files.join("tex.png.away"), &texture).expect("texture back");
    std::fs::rename(&library, files.join("lib.away")).expect("move library");
    let (out, r) = render_reporting(&case("nolib"), &blend, "1", &[]);
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT), "{}", stderr(&out));
    assert_eq!(r.scene.missing_files, [library.display().to_string()]);
    assert!(!frame("nolib").exists());
}

#[test]
fn help_and_version_exit_0() {
    for flag in ["--help", "--version"] {
        let out = Command::new(BIN).arg(flag).output().expect("runs");
        assert_eq!(out.status.code(), Some(0), "{flag}");
        assert!(!out.stdout.is_empty());
    }
}
