//! Tells the tests which vector extensions the build machine's CPU has,
//! so a vector test the CPU cannot run is reported as ignored (with the
//! reason) instead of passing without checking anything. Tests run on the
//! machine that builds them.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(sud_host_avx)");
    println!("cargo::rustc-check-cfg=cfg(sud_host_avx512f)");
    println!("cargo::rerun-if-changed=build.rs");
    #[cfg(target_arch = "x86_64")]
    {
        let host_is_target = std::env::var("HOST").ok() == std::env::var("TARGET").ok();
        if host_is_target && std::is_x86_feature_detected!("avx") {
            println!("cargo::rustc-cfg=sud_host_avx");
        }
        if host_is_target && std::is_x86_feature_detected!("avx512f") {
            println!("cargo::rustc-cfg=sud_host_avx512f");
        }
    }
}
