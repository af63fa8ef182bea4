// New case files must become new tests: rebuild the test crate when this directory changes.
fn main() {
    println!("cargo::rerun-if-changed=.");
}
