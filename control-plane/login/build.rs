//! Rebuilds the crate when a migration or the page changes (embedded at compile time).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=src/page.html");
}
