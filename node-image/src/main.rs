//! `render-node`: renders one batch of frames with Blender, skipping frames already on disk,
//! verifying every output file, and leaving a JSON termination message for Kubernetes.

mod blender;
mod check;
mod parse;

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use render_contract::{Outcome, ProgressEvent, RenderArgs, TerminationMessage, exit};

fn main() -> ExitCode {
    let args = match RenderArgs::try_parse() {
        Ok(args) => args,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(exit::BAD_INPUT as u8);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let code = match runtime {
        Ok(rt) => rt.block_on(run(&args)),
        Err(e) => {
            eprintln!("render-node: cannot start: {e}");
            exit::RENDER_FAILED
        }
    };
    ExitCode::from(code as u8)
}

/// Write the termination message and the final progress line; return the exit code.
fn finish(args: &RenderArgs, mut msg: TerminationMessage) -> i32 {
    let code = match msg.outcome {
        Outcome::Succeeded => exit::SUCCESS,
        Outcome::BadInput => exit::BAD_INPUT,
        Outcome::RenderFailed => exit::RENDER_FAILED,
        Outcome::Terminated => exit::TERMINATED,
    };
    if let Some(spf) = msg.seconds_per_frame {
        msg.seconds_per_frame = Some((spf * 1000.0).round() / 1000.0);
    }
    if let Some(m) = &msg.message {
        eprintln!("render-node: {m}");
    }
    println!(
        "{}",
        ProgressEvent::Done {
            rendered: msg.frames_rendered,
            skipped: msg.frames_skipped,
            seconds_per_frame: msg.seconds_per_frame,
            exit_code: code,
        }
        .to_line()
    );
    if let Err(e) = std::fs::write(&args.termination_log, msg.to_json_bounded()) {
        eprintln!(
            "render-node: warning: cannot write termination message to {}: {e}",
            args.termination_log.display()
        );
    }
    code
}

fn message(outcome: Outcome, text: impl Into<String>) -> TerminationMessage {
    TerminationMessage {
        outcome,
        frames_rendered: 0,
        frames_skipped: 0,
        frames_missing: vec![],
        seconds_per_frame: None,
        device: None,
        blender_version: None,
        message: Some(text.into()),
    }
}

async fn run(args: &RenderArgs) -> i32 {
    if let Err(why) = check::input(args) {
        return finish(args, message(Outcome::BadInput, why));
    }
    let (todo, skipped) = check::missing(args);
    println!(
        "{}",
        ProgressEvent::Start {
            frames: args.frames.frames(),
            to_render: todo.clone(),
            skipped: skipped.clone(),
            device: args.device.as_str().to_string(),
        }
        .to_line()
    );
    if todo.is_empty() {
        let mut msg = message(Outcome::Succeeded, "every frame was already on disk");
        msg.frames_skipped = skipped.len() as u32;
        return finish(args, msg);
    }

    let run = match blender::render(args, &todo).await {
        Ok(run) => run,
        Err(e) => {
            return finish(
                args,
                message(
                    Outcome::RenderFailed,
                    format!("cannot run {}: {e}", args.blender.display()),
                ),
            );
        }
    };
    // Blender sometimes exits 0 having rendered nothing: the files are the truth.
    let missing: Vec<i32> = args
        .frames
        .frames()
        .into_iter()
        .filter(|f| !check::rendered(&args.output_file(*f)))
        .collect();
    let rendered = todo.iter().filter(|f| !missing.contains(f)).count() as u32;
    let outcome = if run.terminated {
        Outcome::Terminated
    } else if run.bad_input() || run.exit_code == Some(exit::BAD_INPUT) {
        Outcome::BadInput
    } else if missing.is_empty() && run.exit_code == Some(0) {
        Outcome::Succeeded
    } else {
        Outcome::RenderFailed
    };
    let text = match outcome {
        Outcome::Succeeded => None,
        Outcome::Terminated => Some("stopped by SIGTERM".to_string()),
        _ => Some(run.errors.first().cloned().unwrap_or_else(|| {
            let list: Vec<String> = missing.iter().take(10).map(i32::to_string).collect();
            format!(
                "Blender exited with {:?} and frames {} are missing",
                run.exit_code,
                list.join(",")
            )
        })),
    };
    let seconds = (!run.frame_seconds.is_empty())
        .then(|| run.frame_seconds.iter().sum::<f64>() / run.frame_seconds.len() as f64);
    finish(
        args,
        TerminationMessage {
            outcome,
            frames_rendered: rendered,
            frames_skipped: skipped.len() as u32,
            frames_missing: missing,
            seconds_per_frame: seconds,
            device: run.device,
            blender_version: run.version,
            message: text,
        },
    )
}
