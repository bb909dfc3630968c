//! `render-preview`: a finished render's preview video (`preview.mp4`) and contact sheet
//! (`contact.jpg`) beside its frames, from the frames on disk, and a JSON termination message
//! (`PreviewReport`). Exit codes: 0 both written, 64 bad input (no frame on disk, bad
//! arguments), 75 ffmpeg failed (worth a retry).

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use render_contract::args::{error_line, termination_log_from};
use render_contract::{PreviewArgs, PreviewReport, exit};
use render_node::preview::{self, Ended};

fn failed(code: i32, text: String) -> Ended {
    Ended {
        code,
        report: PreviewReport {
            ok: false,
            frames: 0,
            columns: 0,
            rows: 0,
            message: Some(text),
        },
    }
}

fn main() -> ExitCode {
    let args = match PreviewArgs::try_parse() {
        Ok(args) => args,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            let argv: Vec<String> = std::env::args().collect();
            let line = error_line(&e);
            let code =
                preview::finish(&termination_log_from(&argv), &failed(exit::BAD_INPUT, line));
            return ExitCode::from(code as u8);
        }
    };
    let ended = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rt.block_on(preview::run(&args))
        }))
        .unwrap_or_else(|_| {
            failed(
                exit::RENDER_FAILED,
                "render-preview failed unexpectedly (a bug: see the log above)".into(),
            )
        }),
        Err(e) => failed(exit::RENDER_FAILED, format!("cannot start: {e}")),
    };
    ExitCode::from(preview::finish(&args.termination_log, &ended) as u8)
}
