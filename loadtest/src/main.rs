//! `rhizo-loadtest`: see `rhizo_loadtest::cli` and `rhizo-loadtest --help`.

fn main() -> std::process::ExitCode {
    rhizo_loadtest::cli::main()
}
