//! Embeds the eBPF object that `cargo xtask build` compiled, so the agent is
//! one self-contained binary. With INGRESS_EBPF_STUB set (clippy, pure unit
//! tests on a machine without the eBPF toolchain) an empty object is embedded
//! and loading the dataplane fails at run time with a message saying so.
//! On the way in, the object's BTF is made acceptable to the kernel
//! (`build_btf.rs`).

use std::path::PathBuf;

#[path = "build_btf.rs"]
mod build_btf;

fn main() {
    println!("cargo:rerun-if-env-changed=INGRESS_EBPF_STUB");
    println!("cargo:rerun-if-env-changed=INGRESS_EBPF_OBJECT");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("ingress-ebpf.o");
    if std::env::var_os("INGRESS_EBPF_STUB").is_some() {
        std::fs::write(&out, []).unwrap();
        return;
    }
    let object = std::env::var_os("INGRESS_EBPF_OBJECT").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../ingress-ebpf/target/bpfel-unknown-none/release/ingress-ebpf")
    });
    println!("cargo:rerun-if-changed={}", object.display());
    let mut bytes = std::fs::read(&object).unwrap_or_else(|error| {
        panic!(
            "the eBPF object {} is missing ({error}).\n\
             Build it first with `cargo xtask build`, or set INGRESS_EBPF_STUB=1 to build \
             without it (the agent then cannot load its dataplane).",
            object.display()
        )
    });
    if let Err(error) = build_btf::fix_union_offsets(&mut bytes) {
        // Still a working object: the agent warns that the kernel refused
        // its BTF, and verifying its programs takes longer.
        println!("cargo:warning=the BTF of {} was left as it is: {error}", object.display());
    }
    std::fs::write(&out, bytes).unwrap();
}
