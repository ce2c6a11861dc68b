//! `dbi-cov` and `dbi-bbcount` on real programs: output and exit status as
//! natively; drcov files parsed back by the reader below, every block
//! inside its module; block counts identical across two runs of a
//! deterministic program.
#![cfg(target_arch = "x86_64")]

mod common;

use common::*;
use std::path::Path;

const DBI_COV: &str = env!("CARGO_BIN_EXE_dbi-cov");
const DBI_BBCOUNT: &str = env!("CARGO_BIN_EXE_dbi-bbcount");

/// A drcov file, as a drcov reader (Lighthouse's, DynamoRIO's drcov2lcov)
/// understands version 2.
#[derive(Debug)]
struct Drcov {
    /// (id, base, end, path).
    modules: Vec<(u16, u64, u64, String)>,
    /// (offset in module, size, module id).
    blocks: Vec<(u32, u16, u16)>,
}

fn parse_drcov(bytes: &[u8]) -> Result<Drcov, String> {
    let mut rest = bytes;
    let mut line = || -> Result<String, String> {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("truncated header")?;
        let text = String::from_utf8(rest[..end].to_vec()).map_err(|e| e.to_string())?;
        rest = &rest[end + 1..];
        Ok(text)
    };
    if line()? != "DRCOV VERSION: 2" {
        return Err("not drcov version 2".into());
    }
    if !line()?.starts_with("DRCOV FLAVOR: ") {
        return Err("no flavor line".into());
    }
    let table = line()?;
    let count: usize = table
        .strip_prefix("Module Table: version 2, count ")
        .ok_or_else(|| format!("bad module table line {table:?}"))?
        .parse()
        .map_err(|_| "bad module count")?;
    if line()? != "Columns: id, base, end, entry, checksum, timestamp, path" {
        return Err("unexpected columns".into());
    }
    let mut modules = Vec::new();
    for _ in 0..count {
        let row = line()?;
        let fields: Vec<&str> = row.splitn(7, ", ").collect();
        let [id, base, end, _entry, _checksum, _timestamp, path] = fields[..] else {
            return Err(format!("bad module row {row:?}"));
        };
        let number = |t: &str| u64::from_str_radix(t.trim().trim_start_matches("0x"), 16);
        modules.push((
            id.trim().parse().map_err(|_| "bad id")?,
            number(base).map_err(|_| "bad base")?,
            number(end).map_err(|_| "bad end")?,
            path.to_string(),
        ));
    }
    let bbs = line()?;
    let n: usize = bbs
        .strip_prefix("BB Table: ")
        .and_then(|t| t.strip_suffix(" bbs"))
        .ok_or_else(|| format!("bad BB table line {bbs:?}"))?
        .parse()
        .map_err(|_| "bad bb count")?;
    let table = rest;
    if table.len() != n * 8 {
        return Err(format!("{} bytes of BB table for {n} blocks", table.len()));
    }
    let blocks = table
        .chunks_exact(8)
        .map(|e| {
            (
                u32::from_le_bytes(e[..4].try_into().unwrap()),
                u16::from_le_bytes(e[4..6].try_into().unwrap()),
                u16::from_le_bytes(e[6..].try_into().unwrap()),
            )
        })
        .collect();
    Ok(Drcov { modules, blocks })
}

/// Every block lies inside the module it names.
fn assert_blocks_inside_modules(file: &Path, cov: &Drcov) {
    assert!(!cov.blocks.is_empty(), "{}: no blocks", file.display());
    for &(offset, size, id) in &cov.blocks {
        let (_, base, end, path) = cov
            .modules
            .iter()
            .find(|m| m.0 == id)
            .unwrap_or_else(|| panic!("{}: block names module {id}", file.display()));
        assert!(size > 0, "{}: empty block", file.display());
        assert!(
            base + u64::from(offset) + u64::from(size) <= *end,
            "{}: block {offset:#x}+{size} outside {path} ({base:#x}-{end:#x})",
            file.display()
        );
    }
}

fn coverage_of(name: &str, argv: &[&str]) -> Vec<(std::path::PathBuf, Drcov)> {
    let dir = scratch(&format!("dbi-cov-{name}"));
    let out = beside(&dir, "cov");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let native = run_in(&dir, argv, b"");
    let covered = under(DBI_COV, &["-o", out.to_str().unwrap()], &dir, argv, b"");
    assert_same_output(&format!("{argv:?} under dbi-cov"), &native, &covered);
    let mut files: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let cov = parse_drcov(&std::fs::read(&file).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            assert_blocks_inside_modules(&file, &cov);
            (file, cov)
        })
        .collect()
}

#[test]
fn dbi_cov_writes_a_drcov_file_whose_blocks_lie_in_their_modules() {
    let files = coverage_of("ls", &["ls", "-la", "/usr/share/doc"]);
    assert_eq!(files.len(), 1, "one process, one file");
    let (file, cov) = &files[0];
    let name = file.file_name().unwrap().to_str().unwrap();
    assert!(
        name.starts_with("drcov.ls.") && name.ends_with(".proc.log"),
        "{name}"
    );
    // The program's own code, libc's and the loader's remaining work ran
    // translated.
    for module in ["/ls", "/libc.so.6", "/ld-linux-x86-64.so.2"] {
        let id = cov
            .modules
            .iter()
            .find(|m| m.3.ends_with(module))
            .unwrap_or_else(|| panic!("no module {module}: {:?}", cov.modules))
            .0;
        assert!(cov.blocks.iter().any(|b| b.2 == id), "no block in {module}");
    }
}

#[test]
fn dbi_cov_writes_one_file_per_exec_d_process_of_a_pipeline() {
    // No SIGPIPE: a process killed by a signal writes no file.
    let files = coverage_of("sh", &["sh", "-c", "ls /usr/share/doc | sort -r | wc -l"]);
    let names: Vec<String> = files
        .iter()
        .map(|(f, _)| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for program in ["sh", "ls", "sort", "wc"] {
        assert!(
            names
                .iter()
                .any(|n| n.starts_with(&format!("drcov.{program}."))),
            "no file for {program}: {names:?}"
        );
    }
}

/// The report of the process whose modules include `module`.
fn bbcount_report(dir: &Path, argv: &[&str], module: &str) -> serde_json::Value {
    let report = beside(dir, "bbcount.json");
    let report_arg = report.to_str().unwrap().to_string();
    let native = run_in(dir, argv, b"");
    let counted = under(
        DBI_BBCOUNT,
        &["--json", "--top", "5", "-o", &report_arg],
        dir,
        argv,
        b"",
    );
    assert_same_output(&format!("{argv:?} under dbi-bbcount"), &native, &counted);
    let text = std::fs::read_to_string(&report).unwrap();
    let _ = std::fs::remove_file(&report);
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| {
            r["modules"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["path"].as_str().unwrap().ends_with(module))
        })
        .unwrap_or_else(|| panic!("no report with {module}: {text}"))
}

#[test]
fn dbi_bbcount_counts_are_identical_across_two_runs_of_a_deterministic_program() {
    if run_in(Path::new("/"), &["setarch", "-R", "true"], b"")
        .status
        .code()
        != Some(0)
    {
        return skip("setarch -R (no ASLR) is not available");
    }
    let dir = scratch("dbi-bbcount");
    // Without address randomization: with it, libc takes a few
    // alignment-dependent paths differently from run to run.
    let argv = ["setarch", "-R", "ls", "-la", "/usr/share/doc"];
    let mut first = bbcount_report(&dir, &argv, "/ls");
    let mut second = bbcount_report(&dir, &argv, "/ls");
    for report in [&mut first, &mut second] {
        let report = report.as_object_mut().unwrap();
        report.remove("pid");
        let modules = report.get_mut("modules").unwrap().as_array_mut().unwrap();
        modules.sort_by_key(|m| m["path"].as_str().unwrap().to_string());
    }
    assert_eq!(first, second);
    let executed = first["executed_blocks"].as_u64().unwrap();
    let instructions = first["instructions"].as_u64().unwrap();
    assert!(executed > 1000 && instructions > executed, "{first}");
    let per_module: u64 = first["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["executed_blocks"].as_u64().unwrap())
        .sum();
    assert!(per_module <= executed);
    // ls runs nothing native: no block was left to the trap path.
    assert_eq!(first["native_blocks"].as_u64(), Some(0), "{first}");
    let hottest = first["hottest"].as_array().unwrap();
    assert_eq!(hottest.len(), 5);
    let runs: Vec<u64> = hottest
        .iter()
        .map(|h| h["executions"].as_u64().unwrap())
        .collect();
    assert!(runs.windows(2).all(|w| w[0] >= w[1]), "{runs:?}");
}

#[test]
fn the_tools_have_help() {
    for tool in [DBI_COV, DBI_BBCOUNT] {
        let out = run_in(Path::new("/"), &[tool, "--help"], b"");
        assert_eq!(out.status.code(), Some(0));
        assert!(String::from_utf8_lossy(&out.stdout).contains("PROG"));
    }
}
