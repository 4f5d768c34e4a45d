fn main() -> std::process::ExitCode {
    ccsync::cli::main()
}
