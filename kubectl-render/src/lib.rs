//! `kubectl render`: submit a .blend to renderfarm from this machine, watch it render, and
//! fetch the frames back, using only the user's kubeconfig.
//!
//! [`cli`] is the command line, [`submit`], [`watch`], [`fetch`], [`manage`] and [`logs`] the
//! verbs; [`upload`] and [`pod`] move files through a short-lived pod that mounts the claim;
//! [`blend`] reads a scene's settings; [`frames`] and [`progress`] are pure helpers.

/// `println!` that ends the program quietly when stdout is gone (`| head`).
#[macro_export]
macro_rules! out {
    ($($t:tt)*) => {
        $crate::print_line(&format!($($t)*))
    };
}

/// Write one line to stdout; a closed pipe ends the program with success, as it does for
/// `cat`.
pub fn print_line(line: &str) {
    print_bytes(format!("{line}\n").as_bytes());
}

/// Write bytes to stdout, as [`print_line`].
pub fn print_bytes(bytes: &[u8]) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .is_err()
    {
        std::process::exit(0);
    }
}

pub mod blend;
pub mod choose;
pub mod cli;
pub mod cluster;
pub mod complete;
pub mod error;
pub mod fetch;
pub mod frames;
pub mod logs;
pub mod manage;
pub mod pack;
pub mod pod;
pub mod preview;
pub mod progress;
pub mod rerender;
pub mod submit;
pub mod ui;
pub mod unblock;
pub mod upload;
pub mod watch;

use clap::FromArgMatches as _;

use crate::cli::{Cli, Command};
pub use crate::error::{Error, Result};

/// Parse the command line and run the verb.
pub async fn run() -> Result<()> {
    // kubectl's completion of `kubectl render ...` runs `kubectl_complete-render WORDS...`
    // (a link to this binary) or, through a script, `kubectl-render __complete WORDS...`.
    let args: Vec<String> = std::env::args().collect();
    let invoked = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if invoked == "kubectl_complete-render" {
        complete::run(&args[1..]).await;
        return Ok(());
    }
    if args.get(1).map(String::as_str) == Some("__complete") {
        complete::run(&args[2..]).await;
        return Ok(());
    }
    let matches = cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let g = &cli.global;
    match &cli.command {
        Command::Submit(a) => submit::run(g, a).await,
        Command::Watch(a) => {
            let ctx = cluster::Ctx::new(g).await?;
            watch::follow(&ctx, &a.name, a.plain, a.preview).await
        }
        Command::Fetch(a) => fetch::run(g, a).await,
        Command::List(a) => manage::list(g, a).await,
        Command::Status(a) => manage::status(g, a).await,
        Command::Logs(a) => logs::run(g, a).await,
        Command::Retry(a) => manage::retry(g, a).await,
        Command::Rerender(a) => rerender::run(g, a).await,
        Command::Unblock(a) => unblock::run(g, a).await,
        Command::Pause(a) => manage::suspend(g, a, true).await,
        Command::Resume(a) => manage::suspend(g, a, false).await,
        Command::Delete(a) => manage::delete(g, a).await,
        Command::Ui(a) => ui::run(g, a).await,
        Command::Completion(a) => {
            let mut script = Vec::new();
            clap_complete::generate(a.shell, &mut cli::command(), "kubectl-render", &mut script);
            print_bytes(&script);
            Ok(())
        }
    }
}
