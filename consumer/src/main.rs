//! `visitlog-consumer`: see the library and `--help`.

fn main() -> std::process::ExitCode {
    visitlog_consumer::cli::main()
}
