//! Compiles the shared engine source with `--cfg pool_model` (shuttle primitives, virtual clock).
fn main() {
    println!("cargo:rustc-check-cfg=cfg(pool_model)");
    println!("cargo:rustc-cfg=pool_model");
}
