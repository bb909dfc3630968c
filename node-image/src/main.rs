//! `render-node`: renders one batch of frames with Blender, skipping frames already on disk,
//! verifying every output file, and leaving a JSON termination message for Kubernetes.
//! It writes a thumbnail of every frame (`<frames>/.thumbs/<frame>.jpg`) as it is saved.
//! Exit codes: 0 done, 64 bad input, 75 render failed (retry), 143 stopped by SIGTERM/SIGINT.

mod blend;
mod blender;
mod check;
mod fault;
mod isolation;
mod node;
mod parse;
mod report;
mod retry;
mod thumbs;
mod tracker;
mod verify;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory, FromArgMatches};
use render_contract::args::{error_line, termination_log_from};
use render_contract::{Outcome, RenderArgs, SceneFacts};

fn main() -> ExitCode {
    // `RenderArgs::try_parse()`, with render-node's own description in `--help`.
    let parsed = RenderArgs::command()
        .about(env!("CARGO_PKG_DESCRIPTION"))
        .try_get_matches()
        .and_then(|m| RenderArgs::from_arg_matches(&m));
    let args = match parsed {
        Ok(args) => args,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            let argv: Vec<String> = std::env::args().collect();
            let code = report::finish(
                &termination_log_from(&argv),
                &report::plain(Outcome::BadInput, error_line(&e)),
                &SceneFacts::default(),
            );
            return ExitCode::from(code as u8);
        }
    };
    let log = args.termination_log.clone();
    let fail = |why: String| {
        ExitCode::from(report::finish(
            &log,
            &report::plain(Outcome::RenderFailed, why),
            &SceneFacts::default(),
        ) as u8)
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start: {e}")),
    };
    // A panic still leaves a termination message (Blender is killed when its handle drops).
    let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(async {
            let stop = blender::Stop::listen()?;
            Ok::<i32, std::io::Error>(node::run(args, stop).await)
        })
    }));
    match code {
        Ok(Ok(code)) => ExitCode::from(code as u8),
        Ok(Err(e)) => fail(format!("cannot listen for signals: {e}")),
        Err(_) => fail("render-node failed unexpectedly (a bug: see the log above)".to_string()),
    }
}
