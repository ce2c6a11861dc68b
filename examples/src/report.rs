//! The count report of `syscount` and `sudtrace -c`: a table, or one JSON
//! object (schema in examples/JSON.md).

use crate::config::SharedArea;
use crate::launcher;
use std::sync::atomic::Ordering::Relaxed;

/// The counts, biggest first (ties by name); only the numbers in `only`
/// when given (`sudtrace -c -e trace=...`).
pub fn counts(shared: &SharedArea, only: Option<&[u64]>) -> Vec<(String, u64)> {
    let mut counts: Vec<(String, u64)> = shared
        .per_number
        .iter()
        .enumerate()
        .map(|(nr, c)| (nr, c.load(Relaxed)))
        .filter(|&(_, n)| n > 0)
        .filter(|&(nr, _)| only.is_none_or(|list| list.contains(&(nr as u64))))
        .map(|(nr, n)| (launcher::slot_name(nr), n))
        .collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts
}

/// The report's text: the table, or the JSON object and a newline.
pub fn count_report(shared: &SharedArea, json: bool, only: Option<&[u64]>) -> String {
    let counts = counts(shared, only);
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    let processes = shared.processes.load(Relaxed);
    let threads = shared.threads.load(Relaxed);
    if json {
        // Syscall names are [a-z0-9_]: no escaping needed.
        let fields: Vec<String> = counts
            .iter()
            .map(|(name, n)| format!("\"{name}\": {n}"))
            .collect();
        let [trap, rewritten, direct] = shared.entrances.each_ref().map(|c| c.load(Relaxed));
        format!(
            "{{\"total\": {total}, \"counts\": {{{}}}, \"processes\": {processes}, \"threads\": {threads}, \
             \"entrances\": {{\"trap\": {trap}, \"rewritten\": {rewritten}, \"direct\": {direct}}}, \
             \"compat\": {}, \"patched_sites\": {}}}\n",
            fields.join(", "),
            shared.compat.load(Relaxed),
            shared.patched_sites.load(Relaxed),
        )
    } else {
        let mut text = format!("{:>10}  syscall\n", "calls");
        for (name, n) in &counts {
            text += &format!("{n:>10}  {name}\n");
        }
        text += &format!("{total:>10}  total ({processes} processes, {threads} threads)\n");
        text
    }
}

/// `syscount --dbi`'s table: a last line with how many calls arrived by
/// trap and by direct call (the JSON has them in `"entrances"` always).
pub fn with_entrance_line(report: String, shared: &SharedArea) -> String {
    let [trap, _, direct] = shared.entrances.each_ref().map(|c| c.load(Relaxed));
    format!("{report}{trap:>10}  by trap, {direct} by direct call\n")
}
