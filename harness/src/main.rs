fn main() {
    std::process::exit(netfault::cli::main());
}
