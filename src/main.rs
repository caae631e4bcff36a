fn main() -> std::process::ExitCode {
    callrecords_etl::cli::main()
}
