//! Completion for `kubectl render <TAB>`: kubectl (1.26+) asks an executable named
//! `kubectl_complete-render` on PATH, in cobra's protocol: the words after `render` (the last
//! one being completed) in, one candidate a line and `:DIRECTIVE` out.

use kube::ResourceExt as _;
use kube::api::ListParams;

use crate::cli::{self, Global};
use crate::cluster::Ctx;

/// cobra's ShellCompDirective values.
const NO_FILES: u32 = 4;
const FILTER_EXT: u32 = 8;
const DIRS: u32 = 16;

/// Verbs whose first argument is a RenderJob.
const NAMED: [&str; 11] = [
    "watch", "fetch", "status", "logs", "retry", "pause", "resume", "delete", "w", "unblock",
    "rerender",
];

/// What to offer, without asking the cluster.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer {
    /// These words, then the directive.
    Words(Vec<(String, String)>, u32),
    /// The RenderJobs of the namespace.
    RenderJobs,
}

/// Decide what completes the last of `words` (the words after `kubectl render`).
pub fn offer(words: &[String]) -> Offer {
    let cmd = cli::command();
    let current = words.last().map(String::as_str).unwrap_or("");
    let before = &words[..words.len().saturating_sub(1)];
    let verb = first_word(before);
    let Some(verb) = verb else {
        let verbs = cmd
            .get_subcommands()
            .filter(|s| s.get_name().starts_with(current))
            .map(|s| {
                let about = s.get_about().map(|a| a.to_string()).unwrap_or_default();
                (s.get_name().to_string(), about)
            })
            .collect();
        return Offer::Words(verbs, NO_FILES);
    };
    let Some(sub) = cmd.find_subcommand(verb) else {
        return Offer::Words(Vec::new(), NO_FILES);
    };
    // A flag's value: its possible values, if it has a fixed set.
    if let Some(prev) = before.last().and_then(|w| w.strip_prefix("--"))
        && let Some(arg) = sub.get_arguments().find(|a| a.get_long() == Some(prev))
        && arg.get_action().takes_values()
    {
        let values = arg
            .get_possible_values()
            .iter()
            .map(|v| (v.get_name().to_string(), String::new()))
            .filter(|(v, _)| v.starts_with(current))
            .collect::<Vec<_>>();
        return Offer::Words(values, NO_FILES);
    }
    if current.starts_with('-') {
        let flags = sub
            .get_arguments()
            .chain(cmd.get_arguments())
            .filter_map(|a| {
                let long = format!("--{}", a.get_long()?);
                let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
                long.starts_with(current).then_some((long, help))
            })
            .collect();
        return Offer::Words(flags, NO_FILES);
    }
    let positionals = before
        .iter()
        .skip_while(|w| w.as_str() != verb)
        .skip(1)
        .filter(|w| !w.starts_with('-'))
        .count();
    match (verb, positionals) {
        ("submit", 0) => Offer::Words(vec![("blend".into(), String::new())], FILTER_EXT),
        ("fetch", 1) => Offer::Words(Vec::new(), DIRS),
        ("completion", 0) => Offer::Words(
            ["bash", "zsh", "fish", "powershell", "elvish"]
                .iter()
                .filter(|s| s.starts_with(current))
                .map(|s| (s.to_string(), String::new()))
                .collect(),
            NO_FILES,
        ),
        (v, 0) if NAMED.contains(&v) => Offer::RenderJobs,
        _ => Offer::Words(Vec::new(), NO_FILES),
    }
}

/// The first word that is neither a flag nor a global flag's value: the verb.
fn first_word(words: &[String]) -> Option<&str> {
    let mut skip = false;
    for w in words {
        if skip {
            skip = false;
        } else if matches!(
            w.as_str(),
            "-n" | "--namespace" | "--kubeconfig" | "--context"
        ) {
            skip = true;
        } else if !w.starts_with('-') {
            return Some(w);
        }
    }
    None
}

/// The `-n`/`--namespace` among the words, for listing RenderJobs.
fn namespace(words: &[String]) -> Option<String> {
    words
        .windows(2)
        .find_map(|w| matches!(w[0].as_str(), "-n" | "--namespace").then(|| w[1].clone()))
}

/// Print the candidates and the directive (errors only mean no candidates).
pub async fn run(words: &[String]) {
    let (list, directive) = match offer(words) {
        Offer::Words(list, d) => (list, d),
        Offer::RenderJobs => {
            let current = words.last().cloned().unwrap_or_default();
            let global = Global {
                namespace: namespace(words),
                kubeconfig: None,
                context: None,
            };
            let names = match Ctx::new(&global).await {
                Ok(ctx) => ctx
                    .rjs()
                    .list(&ListParams::default())
                    .await
                    .map(|l| {
                        l.items
                            .iter()
                            .map(|rj| {
                                let phase = rj
                                    .status
                                    .as_ref()
                                    .map(|s| s.phase.as_str())
                                    .unwrap_or("Pending");
                                (rj.name_any(), phase.to_string())
                            })
                            .filter(|(n, _)| n.starts_with(&current))
                            .collect()
                    })
                    .unwrap_or_default(),
                Err(_) => Vec::new(),
            };
            (names, NO_FILES)
        }
    };
    for (word, help) in list {
        if help.is_empty() {
            crate::out!("{word}");
        } else {
            crate::out!("{word}\t{help}");
        }
    }
    crate::out!(":{directive}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        let mut v: Vec<String> = s.split_whitespace().map(String::from).collect();
        if s.ends_with(' ') || s.is_empty() {
            v.push(String::new());
        }
        v
    }

    fn names(o: Offer) -> (Vec<String>, u32) {
        match o {
            Offer::Words(w, d) => (w.into_iter().map(|(n, _)| n).collect(), d),
            Offer::RenderJobs => (vec!["<renderjobs>".into()], 0),
        }
    }

    #[test]
    fn verbs_flags_values_and_names() {
        let (v, d) = names(offer(&words("")));
        assert!(v.contains(&"submit".to_string()) && v.contains(&"watch".to_string()));
        assert_eq!(d, NO_FILES);
        assert_eq!(
            names(offer(&words("re"))).0,
            ["retry", "rerender", "resume"]
        );
        assert_eq!(offer(&words("rerender ")), Offer::RenderJobs);
        assert_eq!(
            names(offer(&words("submit "))),
            (vec!["blend".into()], FILTER_EXT)
        );
        assert_eq!(
            names(offer(&words("submit a.blend --engine "))).0,
            ["CYCLES", "BLENDER_EEVEE", "BLENDER_WORKBENCH"]
        );
        assert!(
            names(offer(&words("submit a.blend --pa")))
                .0
                .contains(&"--parallelism".into())
        );
        assert_eq!(offer(&words("watch ")), Offer::RenderJobs);
        assert_eq!(offer(&words("-n art status sh")), Offer::RenderJobs);
        assert_eq!(names(offer(&words("fetch shot "))), (vec![], DIRS));
        assert_eq!(names(offer(&words("completion b"))).0, ["bash"]);
        assert_eq!(namespace(&words("-n art status sh")), Some("art".into()));
    }
}
