// Item 17: a Rust program that overflows its main thread's stack must die
// the way it does natively: "has overflowed its stack" and SIGABRT (Rust
// catches the guard-page SIGSEGV on its own 8 KiB-ish alternate stack).
#[allow(unconditional_recursion)]
fn recurse(n: u64, pad: &mut [u8; 4096]) -> u64 {
    pad[(n % 4096) as usize] = n as u8;
    let mut next = [0u8; 4096];
    std::hint::black_box(&mut next);
    recurse(n + 1, &mut next) + pad[0] as u64
}

fn main() {
    println!("start");
    let mut pad = [0u8; 4096];
    std::hint::black_box(recurse(0, &mut pad));
}
