//! The same program under the name of the tool it replaces.
fn main() -> std::process::ExitCode {
    ccsync::cli::main()
}
