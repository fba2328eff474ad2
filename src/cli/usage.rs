//! Command-line errors as Docker's CLI words them and exits with: an unknown or malformed flag
//! is 125 ("unknown flag: --x", the usage line, "Run 'strata run --help' for more
//! information"); a wrong number of arguments or an unknown command is 1, as Docker's.

use super::Cli;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, FromArgMatches};
use std::ffi::OsString;

/// The parsed command line, or the exit code after the error (or help) was printed.
pub fn parse() -> Result<Cli, i32> {
    let args: Vec<OsString> = std::env::args_os().collect();
    let mut cmd = Cli::command();
    let parsed = cmd
        .try_get_matches_from_mut(&args)
        .and_then(|mut m| Cli::from_arg_matches_mut(&mut m));
    match parsed {
        Ok(cli) => Ok(cli),
        Err(e) => Err(report(&e, &mut cmd, &args)),
    }
}

fn report(e: &clap::Error, root: &mut clap::Command, args: &[OsString]) -> i32 {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            return 0;
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return 0;
        }
        _ => {}
    }
    root.build();
    let (path, cmd) = command_path(root, args);
    let name = path.join(" ");
    let usage = cmd
        .clone()
        .render_usage()
        .to_string()
        .trim_start_matches("Usage:")
        .trim()
        .to_string();
    let tail = format!("\n\nUsage:  {usage}\n\nRun '{name} --help' for more information");
    let invalid = match e
        .get(ContextKind::InvalidArg)
        .or_else(|| e.get(ContextKind::InvalidSubcommand))
    {
        Some(ContextValue::String(s)) => s.clone(),
        Some(ContextValue::Strings(v)) => v.join(" "),
        _ => String::new(),
    };
    let positionals: Vec<&clap::Arg> = cmd.get_positionals().collect();
    let many = positionals
        .iter()
        .any(|a| a.get_num_args().is_some_and(|n| n.max_values() > 1));
    let plural = |n: usize| if n == 1 { "argument" } else { "arguments" };
    match e.kind() {
        ErrorKind::UnknownArgument if invalid.starts_with("--") => {
            let flag = invalid.split('=').next().unwrap_or(&invalid);
            eprintln!("unknown flag: {flag}{tail}");
            125
        }
        ErrorKind::UnknownArgument if invalid.starts_with('-') && invalid.len() > 1 => {
            let c = invalid[1..].chars().next().unwrap_or('-');
            eprintln!("unknown shorthand flag: '{c}' in {invalid}{tail}");
            125
        }
        ErrorKind::UnknownArgument | ErrorKind::TooManyValues => {
            if positionals.is_empty() {
                eprintln!(
                    "strata: '{name}' accepts no arguments{}",
                    see(&usage, &name)
                );
            } else {
                let n = positionals.len();
                eprintln!(
                    "strata: '{name}' requires at most {n} {}{}",
                    plural(n),
                    see(&usage, &name)
                );
            }
            1
        }
        ErrorKind::MissingRequiredArgument => {
            let n = positionals.iter().filter(|a| a.is_required_set()).count();
            let how = if many || n < positionals.len() {
                "at least"
            } else {
                "exactly"
            };
            eprintln!(
                "strata: '{name}' requires {how} {n} {}{}",
                plural(n),
                see(&usage, &name)
            );
            1
        }
        ErrorKind::InvalidSubcommand | ErrorKind::MissingSubcommand => {
            let bad = if invalid.is_empty() {
                String::new()
            } else {
                format!(" {invalid}")
            };
            if path.len() > 1 {
                eprintln!(
                    "strata: unknown command: {name}{bad}\n\nUsage:  {name}\n\nRun '{name} --help' for more information"
                );
            } else {
                eprintln!(
                    "strata: unknown command: {name}{bad}\n\nRun '{name} --help' for more information"
                );
            }
            1
        }
        _ => {
            // A malformed flag value: clap's sentence, Docker's layout and code.
            let text = e.to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ")
                .to_string();
            eprintln!("{first}{tail}");
            125
        }
    }
}

fn see(usage: &str, name: &str) -> String {
    format!("\n\nUsage:  {usage}\n\nSee '{name} --help' for more information")
}

/// The subcommand the arguments name (`strata container ls`), walking names and aliases;
/// flags between them are global options, whose values are skipped.
fn command_path<'a>(
    root: &'a clap::Command,
    args: &[OsString],
) -> (Vec<String>, &'a clap::Command) {
    let mut path = vec!["strata".to_string()];
    let mut cmd = root;
    let mut it = args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned());
    while cmd.has_subcommands() {
        let Some(a) = it.next() else { break };
        if let Some(flag) = a.strip_prefix("--") {
            if !flag.contains('=')
                && cmd
                    .get_arguments()
                    .any(|x| x.get_long() == Some(flag) && x.get_action().takes_values())
            {
                it.next();
            }
            continue;
        }
        if a.starts_with('-') {
            continue;
        }
        match cmd.find_subcommand(&a) {
            Some(sub) => {
                path.push(sub.get_name().to_string());
                cmd = sub;
            }
            None => break,
        }
    }
    (path, cmd)
}
