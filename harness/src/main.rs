fn main() {
    // Die quietly on a closed pipe (`netfault faults | head`), as Unix tools do.
    // SAFETY: restoring the default disposition of a signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    std::process::exit(netfault::cli::main());
}
