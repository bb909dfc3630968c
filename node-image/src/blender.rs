//! Runs Blender once for a batch, streams its output as progress events, forwards SIGTERM.

use std::process::Stdio;
use std::time::Instant;

use render_contract::{Device, ProgressEvent, RenderArgs};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::check::blender_frames;
use crate::parse::{Line, is_bad_input, parse};

/// What Blender did.
#[derive(Debug, Default)]
pub struct Run {
    pub exit_code: Option<i32>,
    pub terminated: bool,
    pub errors: Vec<String>,
    pub device: Option<String>,
    pub version: Option<String>,
    /// Render seconds per saved frame, from Blender's own `Time:` lines or the wall clock.
    pub frame_seconds: Vec<f64>,
}

impl Run {
    pub fn bad_input(&self) -> bool {
        self.errors.iter().any(|e| is_bad_input(e))
    }
}

/// Python run inside Blender before rendering: picks the Cycles device and prints the one used.
/// A GPU that is not there is an error (exit 64 through `--python-exit-code`) unless fallback
/// is allowed.
fn device_script(device: Device, fallback: bool) -> String {
    let fallback = if fallback { "True" } else { "False" };
    format!(
        r#"
import bpy
want, fallback = "{device}", {fallback}
scene = bpy.context.scene
if scene.render.engine != "CYCLES" or want == "CPU":
    if scene.render.engine == "CYCLES":
        scene.cycles.device = "CPU"
    print("RENDER_NODE_DEVICE=CPU", flush=True)
else:
    prefs = bpy.context.preferences.addons["cycles"].preferences
    found = []
    try:
        prefs.compute_device_type = want
        prefs.get_devices()
        found = [d for d in prefs.devices if d.type == want]
    except Exception as e:
        print("render-node: cannot select", want, ":", e, flush=True)
    if found:
        for d in prefs.devices:
            d.use = d.type == want
        scene.cycles.device = "GPU"
        print("RENDER_NODE_DEVICE=" + want + " (" + ", ".join(d.name for d in found) + ")", flush=True)
    elif fallback:
        scene.cycles.device = "CPU"
        print("render-node: no " + want + " device found; falling back to CPU as allowed", flush=True)
        print("RENDER_NODE_DEVICE=CPU", flush=True)
    else:
        print("RENDER_NODE_ERROR: no " + want + " device found (use --allow-cpu-fallback to render on CPU)", flush=True)
        raise SystemExit(64)
"#,
        device = device.as_str(),
    )
}

/// The Blender command line; order matters: output, format and engine before the frames.
pub fn command_line(args: &RenderArgs, frames: &[i32]) -> Vec<String> {
    let mut argv = vec![
        "-b".to_string(),
        args.blend_file.display().to_string(),
        "-o".to_string(),
        args.output.clone(),
        "-F".to_string(),
        args.format.as_str().to_string(),
        "-x".to_string(),
        "1".to_string(),
        "-E".to_string(),
        args.engine.as_str().to_string(),
    ];
    if args.threads > 0 {
        argv.extend(["-t".to_string(), args.threads.to_string()]);
    }
    argv.extend([
        "--python-exit-code".to_string(),
        "64".to_string(),
        "--python-expr".to_string(),
        device_script(args.device, args.allow_cpu_fallback),
        "-f".to_string(),
        blender_frames(frames),
    ]);
    argv
}

fn emit(event: &ProgressEvent) {
    println!("{}", event.to_line());
}

/// Run Blender on `frames`, printing progress; SIGTERM/SIGINT are forwarded to Blender.
pub async fn render(args: &RenderArgs, frames: &[i32]) -> std::io::Result<Run> {
    let mut child = Command::new(&args.blender)
        .args(command_line(args, frames))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id();
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut run = Run::default();
    let mut current: Option<(i32, Instant)> = None;
    let mut pending_save: Option<(i32, String, Instant)> = None;
    let flush =
        |pending: &mut Option<(i32, String, Instant)>, run: &mut Run, seconds: Option<f64>| {
            if let Some((frame, path, started)) = pending.take() {
                let s = seconds.unwrap_or_else(|| started.elapsed().as_secs_f64());
                run.frame_seconds.push(s);
                emit(&ProgressEvent::FrameSaved {
                    frame,
                    path,
                    seconds: Some((s * 1000.0).round() / 1000.0),
                });
            }
        };
    loop {
        tokio::select! {
            line = rx.recv() => {
                let Some(line) = line else { break };
                match parse(&line) {
                    Line::Version(v) => run.version = Some(v),
                    Line::Device(d) => {
                        run.device = Some(d.split_whitespace().next().unwrap_or("CPU").to_string());
                        eprintln!("render-node: rendering on {d}");
                    }
                    Line::Frame { frame, samples } => {
                        if current.map(|(f, _)| f) != Some(frame) {
                            flush(&mut pending_save, &mut run, None);
                            current = Some((frame, Instant::now()));
                            emit(&ProgressEvent::FrameStarted { frame });
                        }
                        if let Some((done, total)) = samples
                            && (done == total || done % 16 == 0) {
                                emit(&ProgressEvent::Samples { frame, done, total });
                            }
                    }
                    Line::Saved(path) => {
                        flush(&mut pending_save, &mut run, None);
                        let (frame, started) = current.unwrap_or((0, Instant::now()));
                        pending_save = Some((frame, path, started));
                    }
                    Line::FrameTime(t) => flush(&mut pending_save, &mut run, Some(t)),
                    Line::Error(e) => {
                        eprintln!("blender: {e}");
                        emit(&ProgressEvent::BlenderError { message: e.clone() });
                        run.errors.push(e);
                    }
                    Line::Other => {
                        if !line.trim().is_empty() {
                            eprintln!("blender: {line}");
                        }
                    }
                }
            }
            _ = term.recv() => { forward(pid); run.terminated = true; }
            _ = int.recv() => { forward(pid); run.terminated = true; }
        }
    }
    flush(&mut pending_save, &mut run, None);
    let status = child.wait().await?;
    run.exit_code = status.code();
    Ok(run)
}

/// Pass the stop request on to Blender (SIGTERM stops it at once, leaving no partial file).
fn forward(pid: Option<u32>) {
    if let Some(pid) = pid {
        // SAFETY: kill(2) with a pid we spawned and still wait on; no memory is involved.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use render_contract::FrameSet;

    #[test]
    fn output_format_and_engine_come_before_the_frames() {
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
        let argv = command_line(&a, &[1, 3]);
        let at = |flag: &str| argv.iter().position(|x| x == flag).unwrap_or(usize::MAX);
        assert!(
            at("-o") < at("-f")
                && at("-F") < at("-f")
                && at("-E") < at("-f")
                && at("--python-expr") < at("-f")
        );
        assert_eq!(argv.last().map(String::as_str), Some("1,3"));
        assert_eq!(argv[at("-t") + 1], "4");
    }
}
