//! The `strata` command line. All storage logic is in the library; this binary parses
//! arguments, calls the engine and prints what Docker would.

mod cli;

fn main() {
    std::process::exit(cli::main());
}
