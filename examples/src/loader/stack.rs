//! The program's initial stack, laid out as the kernel's
//! `create_elf_tables` and `copy_strings` lay it out (from the top down):
//! a null word, the `AT_EXECFN` string, the environment strings, the
//! argument strings, a random gap of up to 8 KiB (`arch_align_stack`), the
//! `AT_PLATFORM` string, the 16 `AT_RANDOM` bytes, then 16-byte aligned:
//! argc, argv, NULL, envp, NULL, the auxiliary vector.

/// `AT_*` types the loader sets or rewrites.
pub const AT_NULL: u64 = 0;
pub const AT_PHDR: u64 = 3;
pub const AT_PHENT: u64 = 4;
pub const AT_PHNUM: u64 = 5;
pub const AT_BASE: u64 = 7;
pub const AT_FLAGS: u64 = 8;
pub const AT_ENTRY: u64 = 9;
pub const AT_PLATFORM: u64 = 15;
pub const AT_RANDOM: u64 = 25;
pub const AT_EXECFN: u64 = 31;

/// A built stack, to be copied to `[sp, sp + image.len())`.
pub struct Stack {
    pub image: Vec<u8>,
    pub sp: usize,
    /// Where envp starts.
    pub envp: usize,
    pub arg: (usize, usize),
    pub env: (usize, usize),
    /// The auxiliary vector as written (pairs, `AT_NULL` last), for
    /// `/proc/self/auxv` (`PR_SET_MM_MAP`).
    pub auxv: Vec<u64>,
}

/// What goes on the stack.
pub struct Contents<'a> {
    pub argv: &'a [Vec<u8>],
    pub envp: &'a [Vec<u8>],
    pub execfn: &'a [u8],
    pub platform: &'a [u8],
    pub random: [u8; 16],
    /// The auxiliary vector to pass, in the kernel's order: pointer
    /// entries (`AT_EXECFN`, `AT_RANDOM`, `AT_PLATFORM`) are pointed here.
    pub auxv: &'a [(u64, u64)],
    /// `arch_align_stack`'s random gap, below 8 KiB.
    pub gap: usize,
}

/// Lays `contents` out below `top`.
pub fn build(top: usize, c: &Contents<'_>) -> Stack {
    let strings_len = |list: &[Vec<u8>]| list.iter().map(|s| s.len() + 1).sum::<usize>();
    let execfn_at = top - 8 - (c.execfn.len() + 1);
    let env_start = execfn_at - strings_len(c.envp);
    let arg_start = env_start - strings_len(c.argv);
    let mut p = (arg_start - c.gap) & !0xf;
    let platform_at = if c.platform.is_empty() {
        0
    } else {
        p -= c.platform.len() + 1;
        p
    };
    p -= 16;
    let random_at = p;
    let mut auxv = Vec::with_capacity(2 * c.auxv.len() + 2);
    for &(kind, value) in c.auxv {
        let value = match kind {
            AT_EXECFN => execfn_at as u64,
            AT_RANDOM => random_at as u64,
            AT_PLATFORM if platform_at != 0 => platform_at as u64,
            _ => value,
        };
        auxv.extend([kind, value]);
    }
    auxv.extend([AT_NULL, 0]);
    let words = 1 + c.argv.len() + 1 + c.envp.len() + 1 + auxv.len();
    let sp = (p - words * 8) & !0xf;
    let mut image = vec![0u8; top - sp];
    let mut put = |at: usize, bytes: &[u8]| {
        image[at - sp..at - sp + bytes.len()].copy_from_slice(bytes);
    };
    let mut word_at = sp;
    let mut word = |put: &mut dyn FnMut(usize, &[u8]), value: u64| {
        put(word_at, &value.to_ne_bytes());
        word_at += 8;
    };
    word(&mut put, c.argv.len() as u64);
    let mut at = arg_start;
    for arg in c.argv {
        word(&mut put, at as u64);
        put(at, arg);
        at += arg.len() + 1;
    }
    word(&mut put, 0);
    for var in c.envp {
        word(&mut put, at as u64);
        put(at, var);
        at += var.len() + 1;
    }
    word(&mut put, 0);
    for &value in &auxv {
        word(&mut put, value);
    }
    put(execfn_at, c.execfn);
    if platform_at != 0 {
        put(platform_at, c.platform);
    }
    put(random_at, &c.random);
    Stack {
        image,
        sp,
        envp: sp + 8 * (c.argv.len() + 2),
        arg: (arg_start, env_start),
        env: (env_start, execfn_at),
        auxv,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_is_the_kernels() {
        let argv = vec![b"prog".to_vec(), b"-x".to_vec()];
        let envp = vec![b"A=1".to_vec()];
        let top = 0x7fff_0000_0000;
        let s = build(
            top,
            &Contents {
                argv: &argv,
                envp: &envp,
                execfn: b"/bin/prog",
                platform: b"x86_64",
                random: [7; 16],
                auxv: &[(AT_PHNUM, 9), (AT_RANDOM, 0), (AT_EXECFN, 0)],
                gap: 100,
            },
        );
        assert_eq!(s.sp % 16, 0);
        let word = |at: usize| {
            let o = at - s.sp;
            u64::from_ne_bytes(s.image[o..o + 8].try_into().unwrap())
        };
        let cstr = |at: u64| {
            let o = at as usize - s.sp;
            let end = s.image[o..].iter().position(|&b| b == 0).unwrap();
            s.image[o..o + end].to_vec()
        };
        assert_eq!(word(s.sp), 2);
        assert_eq!(cstr(word(s.sp + 8)), b"prog");
        assert_eq!(cstr(word(s.sp + 16)), b"-x");
        assert_eq!(word(s.sp + 24), 0);
        assert_eq!(cstr(word(s.sp + 32)), b"A=1");
        assert_eq!(word(s.sp + 40), 0);
        assert_eq!((word(s.sp + 48), word(s.sp + 56)), (AT_PHNUM, 9));
        assert_eq!(word(s.sp + 64), AT_RANDOM);
        let random = word(s.sp + 72) as usize - s.sp;
        assert_eq!(&s.image[random..random + 16], &[7; 16]);
        assert_eq!(cstr(word(s.sp + 88)), b"/bin/prog");
        assert_eq!(word(s.sp + 96), AT_NULL);
        assert_eq!(s.env.1, top - 8 - 10, "execfn ends just below the top word");
        assert_eq!(word(top - 8), 0);
    }
}
