//! The tools on real programs of this machine: each program prints and
//! exits exactly as without a tool, and syscount counts what `strace -f`
//! counts for the syscalls the dynamic loader does not make.
#![cfg(target_arch = "x86_64")]

mod common;

use common::*;

fn check(name: &str, argv: &[&str], stdin: &[u8]) {
    let dir = scratch(name);
    assert_transparent(&dir, argv, stdin);
    assert_counts_match(&dir, argv, stdin, STABLE_COUNTS);
}

#[test]
fn coreutils_ls_cat_sort_cp_find_rm() {
    let script = "mkdir -p t/a/b && echo one > t/a/b/f && printf 'b\\na\\nc\\n' > t/g && \
                  ls -la t/a && cat t/a/b/f && sort t/g && cp -r t u && find u | sort && \
                  rm -r t u && ls";
    check("coreutils", &["sh", "-c", script], b"");
    check("ls", &["ls", "-l", "/usr/share/doc"], b"");
    check("find", &["find", "/usr/share/doc", "-name", "*.gz"], b"");
    check("sort-stdin", &["sort", "-r"], b"pear\napple\nfig\n");
}

#[test]
fn sh_pipelines_sequences_traps_and_background_jobs() {
    // dash: a SIGCHLD handler whose sa_mask blocks every signal, a trap,
    // pipelines, `a; b`, a background job, and a non-zero exit.
    check("sh", &["sh", "-c", SH_SCRIPT], b"");
}

#[test]
fn bash_functions_subshells_and_exit_trap() {
    check("bash", &["bash", "-c", BASH_SCRIPT], b"");
}

#[test]
fn python_threads_subprocess_and_signal_handlers() {
    check("python", &["/usr/bin/python3", "-c", PYTHON_SCRIPT], b"");
}

#[test]
fn perl_readdir_and_system() {
    check("perl", &["perl", "-e", PERL_SCRIPT], b"");
}

#[test]
fn git_init_add_commit_log() {
    let script = "rm -rf r && git init -q r && cd r && echo x > f && git add f && \
                  git -c user.email=t@example.invalid -c user.name=t commit -qm first && \
                  git log --format=%s && git status --short";
    let dir = scratch("git");
    assert_transparent(&dir, &["sh", "-c", script], b"");
    assert_counts_match(
        &dir,
        &["sh", "-c", script],
        b"",
        &["execve", "wait4", "unlinkat"],
    );
}

#[test]
fn tar_create_and_list_through_a_pipe() {
    let script = "tar cf - -C /usr/share/doc bash coreutils | tar tf - | sort";
    check("tar", &["sh", "-c", script], b"");
}

#[test]
fn node_jit_runs_unchanged() {
    let dir = scratch("node");
    let native = assert_transparent(
        &dir,
        &[
            "node",
            "-e",
            "console.log([1, 2, 3].map(x => x * 2).join(','))",
        ],
        b"",
    );
    assert_eq!(String::from_utf8_lossy(&native.stdout), "2,4,6\n");
    let counted = syscount(&dir, &["node", "-e", "console.log('x')"], b"");
    // node runs a thread pool and JIT threads: all of them are counted.
    assert!(counted.threads > 1, "threads {}", counted.threads);
    assert!(counted.counts.get("write").copied().unwrap_or(0) >= 1);
}
