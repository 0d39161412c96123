//! Rebuilds the crate when a migration file changes, so the embedded migrations stay current.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
