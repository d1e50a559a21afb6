//! The commands that keep people's data private and the log honest: shred, keys, audit, verify.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::json;
use tracevault_core::integrity::{self, VerifyReport};
use tracevault_core::keys::{SlotState, hex};
use tracevault_core::log::MasterKeyAfterShred;
use tracevault_core::storage::FsStorage;
use tracevault_core::{Access, Decision, Role, audit, layout};

use super::Ctx;

/// The person running the command, as the audit log names them: the OS account of the
/// process's real uid (not `$USER`, which anyone can set).
pub fn os_user() -> String {
    let uid = uzers::get_current_uid();
    match uzers::get_user_by_uid(uid) {
        Some(user) => format!("{} (uid {uid})", user.name().to_string_lossy()),
        None => format!("uid {uid}"),
    }
}

/// Who the CLI acts as: the OS account, in `role`, for `purpose`.
pub fn cli_access(role: Role, purpose: &str, ticket: Option<&str>) -> Access {
    let access = Access::new(os_user(), role, purpose);
    match ticket {
        Some(t) => access.with_ticket(t),
        None => access,
    }
}

/// Refuses a path that holds no tracevault log, for the commands that read files directly
/// (offline verification): a mistyped `--data` must not verify as an empty, perfect log.
fn require_data_dir(data: &Path) -> Result<()> {
    if data.join(layout::KEYSTORE).is_file() || data.join(layout::SEGMENTS.dir).is_dir() {
        return Ok(());
    }
    anyhow::bail!("{}: no tracevault data directory here (check --data)", data.display())
}

pub fn shred(ctx: &Ctx, user: &str, purpose: &str, ticket: Option<&str>, json: bool) -> Result<ExitCode> {
    let log = ctx.open_to_read()?;
    let done = log
        .shred(&cli_access(Role::Admin, purpose, ticket), user)
        .with_context(|| format!("shredding user {user:?}"))?;
    ctx.close(log)?;
    let mut out = std::io::stdout().lock();
    if json {
        let (replaced, kept) = match &done.master_key {
            MasterKeyAfterShred::Replaced(fp) => (Some(fp.as_str()), None),
            MasterKeyAfterShred::Kept(why) => (None, Some(why.as_str())),
            MasterKeyAfterShred::Unchanged => (None, None),
        };
        let value = json!({
            "user": user,
            "keys_erased": done.keys,
            "sessions": done.sessions,
            "audit_seq": done.audit_seq,
            "new_master_key": replaced,
            "master_key_kept": kept,
        });
        writeln!(out, "{value}")?;
    } else if done.keys.is_empty() {
        writeln!(
            out,
            "user {user:?} has no key in this log: nothing to erase (recorded as audit entry {})",
            done.audit_seq
        )?;
    } else {
        writeln!(
            out,
            "erased key(s) {:?} of user {user:?}: {} session(s) can never be decrypted again ({}); audit entry {}",
            done.keys,
            done.sessions.len(),
            done.sessions.join(", "),
            done.audit_seq
        )?;
        match &done.master_key {
            MasterKeyAfterShred::Replaced(fp) => writeln!(
                out,
                "the remaining keys are re-wrapped under a new master key ({fp}) and the old one destroyed: a copy \
                 of the key store from before this shred no longer opens"
            )?,
            MasterKeyAfterShred::Kept(why) => {
                writeln!(out, "warning: the master key was not replaced: {why}")?
            }
            MasterKeyAfterShred::Unchanged => {}
        }
        writeln!(
            out,
            "not erased by this: exports already made, and backups of the data directory with their keys"
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn keys_rotate(ctx: &Ctx, json: bool) -> Result<ExitCode> {
    let log = ctx.open_to_read()?;
    let (old, keys) = log.keys();
    let new = log
        .rotate_master_key(&cli_access(Role::Admin, "rotate the master key", None))
        .context("rotating the master key")?;
    ctx.close(log)?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", json!({"old_master": old, "new_master": new, "keys_rewrapped": keys.len()}))?;
    } else {
        writeln!(out, "master key {old} -> {new}: {} data key(s) re-wrapped, no data rewritten", keys.len())?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn keys_list(ctx: &Ctx, json: bool) -> Result<ExitCode> {
    let log = ctx.open_to_read()?;
    let (master, keys) = log.keys();
    ctx.close(log)?;
    let state = |s: &SlotState| match s {
        SlotState::Live => "live".to_owned(),
        SlotState::Erased => "erased".to_owned(),
        SlotState::Damaged(r) => format!("damaged: {r}"),
    };
    let mut out = std::io::stdout().lock();
    if json {
        let rows: Vec<_> = keys
            .iter()
            .map(|k| json!({"id": k.id, "user_hash": hex(&k.user_hash), "state": state(&k.state)}))
            .collect();
        writeln!(out, "{}", json!({"master": master, "keys": rows}))?;
    } else {
        writeln!(out, "master key {master}; {} data key(s)", keys.len())?;
        for k in &keys {
            writeln!(out, "{:>6}  user {}…  {}", k.id, &hex(&k.user_hash)[..16], state(&k.state))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn time(us: u64) -> String {
    // RFC 3339 in UTC, to the second.
    match jiff::Timestamp::from_microsecond(us as i64) {
        Ok(t) => t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Err(_) => format!("{us} µs after the Unix epoch"),
    }
}

pub fn audit_list(ctx: &Ctx, json: bool) -> Result<ExitCode> {
    let data = ctx.data();
    require_data_dir(data)?;
    let scan = audit::scan(&FsStorage::new(data)).context("reading the access audit log")?;
    let mut out = std::io::stdout().lock();
    if json {
        for e in &scan.entries {
            writeln!(out, "{}", serde_json::to_string(e)?)?;
        }
    } else {
        let mut table = super::table(
            &["SEQ", "TIME", "ACTOR", "ROLE", "ACTION", "SESSIONS / KEYS", "PURPOSE", "DECISION"],
            &[0],
        );
        for e in &scan.entries {
            let what =
                if e.sessions.is_empty() { format!("keys {:?}", e.keys) } else { e.sessions.join(",") };
            let decision = match &e.decision {
                Decision::Allowed => "allowed".to_owned(),
                Decision::Denied(r) => format!("denied: {r}"),
            };
            let purpose = match &e.ticket {
                Some(t) => format!("{} [{t}]", e.purpose),
                None => e.purpose.clone(),
            };
            table.add_row(vec![
                e.seq.to_string(),
                time(e.time_unix_us),
                e.actor.clone(),
                e.role.as_str().to_owned(),
                serde_json::to_value(e.action)?.as_str().unwrap_or("?").to_owned(),
                what,
                purpose,
                decision,
            ]);
        }
        writeln!(out, "{}", table.trim_fmt())?;
    }
    if let Some((offset, reason)) = scan.problem {
        eprintln!(
            "warning: the audit log stops at offset {offset}: {reason} (run `tracevault audit verify`)"
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// The public key to verify with: given (hex or a file holding it), else the key directory's
/// (`signing.pub`). Verification never opens the log: opening runs recovery, which could cut away
/// the very damage an auditor is looking for, and would create keys on an auditor's machine.
fn public_key(ctx: &Ctx, given: Option<&str>) -> Result<integrity::PublicKey> {
    match given {
        Some(text) => {
            let text = if Path::new(text).is_file() {
                std::fs::read_to_string(text).with_context(|| format!("reading the public key {text}"))?
            } else {
                text.to_owned()
            };
            integrity::parse_public_key(text.trim()).map_err(|e| anyhow::anyhow!("--public-key: {e}"))
        }
        None => Ok(ctx.settings.keys.public_key()?),
    }
}

pub fn audit_verify(ctx: &Ctx, public: Option<&str>, json: bool) -> Result<ExitCode> {
    let data = ctx.data();
    require_data_dir(data)?;
    let key = public_key(ctx, public)?;
    let report = integrity::verify_audit(&FsStorage::new(data), &key).context("verifying the audit log")?;
    print_report(data, &report, json, "audit log", &[])
}

/// `tracevault verify`'s arguments.
pub struct VerifyArgs<'a> {
    pub public_key: Option<&'a str>,
    pub session: Option<&'a str>,
    pub witness_keys: &'a [String],
    pub allow_repaired: bool,
    pub json: bool,
}

pub fn verify(ctx: &Ctx, args: VerifyArgs<'_>) -> Result<ExitCode> {
    if let Some(id) = args.session {
        return verify_session(ctx, id, args.json);
    }
    let data = ctx.data();
    require_data_dir(data)?;
    let key = public_key(ctx, args.public_key)?;
    let witnesses = args
        .witness_keys
        .iter()
        .map(|k| integrity::parse_public_key(k).map_err(|e| anyhow::anyhow!("--witness-key {k}: {e}")))
        .collect::<Result<Vec<_>>>()?;
    let spinner = super::progress::spinner("verify", args.json);
    let report = integrity::verify_witnessed(&FsStorage::new(data), &key, &witnesses).context("verifying");
    let online = ask_witnesses(ctx, data, &key);
    spinner.finish_and_clear();
    let report = report?;
    let code = print_report(data, &report, args.json, "log", &online)?;
    if code == ExitCode::SUCCESS && !report.discontinuities.is_empty() && !args.allow_repaired {
        eprintln!(
            "error: the history was repaired {} time(s) (listed above): the signed heads cannot vouch for what came \
             before a repair; --allow-repaired accepts it",
            report.discontinuities.len()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(code)
}

/// What each configured witness (`--witness URL`) says is the newest head of this log it
/// cosigned, against the chain here: that head must be in it. This is what catches a data
/// directory rolled back whole, cosignatures and all: the witness remembers the later head.
fn ask_witnesses(
    ctx: &Ctx,
    data: &Path,
    key: &integrity::PublicKey,
) -> Vec<(String, Result<String, String>)> {
    use tracevault_core::witness::Witness;
    let heads = integrity::read_heads(&FsStorage::new(data)).map(|(h, _)| h).unwrap_or_default();
    ctx.settings
        .witnesses
        .iter()
        .map(|url| {
            let answer = match tracevault::witness::HttpWitness::new(url).latest(key) {
                Err(e) => Err(format!("could not ask it: {e}")),
                Ok(None) => Err("it has cosigned no head of this log".to_owned()),
                Ok(Some(theirs)) if heads.iter().any(|h| h.counter == theirs.counter && h.hash() == theirs.hash()) => {
                    Ok(format!("its newest cosigned head of this log, {}, is in the chain here", theirs.counter))
                }
                Ok(Some(theirs)) => Err(format!(
                    "it cosigned head {} ({} frames, {} audit entries), which the chain here does not hold: this copy \
                     was rolled back or rewritten",
                    theirs.counter, theirs.tree_size, theirs.audit_size
                )),
            };
            (url.clone(), answer)
        })
        .collect()
}

/// `tracevault repair`: opens the log to repair it, as an admin, and says what was found.
pub fn repair(ctx: &Ctx, purpose: &str, ticket: Option<&str>, json: bool) -> Result<ExitCode> {
    let log = ctx.open_to_repair(cli_access(Role::Admin, purpose, ticket))?;
    let repaired = log.repaired().clone();
    let head = log.signed_heads().ok().and_then(|h| h.last().cloned());
    ctx.close(log)?;
    let mut out = std::io::stdout().lock();
    if json {
        let found: Vec<_> = repaired
            .findings
            .iter()
            .map(|f| json!({"file": f.path.display().to_string(), "reason": f.reason}))
            .collect();
        let moved: Vec<_> = repaired
            .moved
            .iter()
            .map(|(from, to)| json!({"from": from.display().to_string(), "to": to.display().to_string()}))
            .collect();
        writeln!(
            out,
            "{}",
            json!({"repaired": !found.is_empty(), "found": found, "moved_aside": moved, "head": head.map(|h| h.counter)})
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    if repaired.findings.is_empty() {
        writeln!(out, "nothing to repair: the log verifies against its newest signed head")?;
        return Ok(ExitCode::SUCCESS);
    }
    for f in &repaired.findings {
        writeln!(out, "found: {}: {}", f.path.display(), f.reason)?;
    }
    for (from, to) in &repaired.moved {
        writeln!(out, "moved aside (kept): {} -> {}", from.display(), to.display())?;
    }
    if let Some(h) = head {
        writeln!(
            out,
            "signed repair head {} over {} frames and {} audit entries; every verify will report this discontinuity",
            h.counter, h.tree_size, h.audit_size
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(
    data: &Path,
    report: &VerifyReport,
    json: bool,
    what: &str,
    online: &[(String, Result<String, String>)],
) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let problem = report.first_problem.as_ref();
    let witnesses_failed = online.iter().any(|(_, a)| a.is_err());
    let discontinuities: Vec<_> = report
        .discontinuities
        .iter()
        .map(|d| {
            json!({
                "head": d.counter,
                "time": time(d.time_unix_us),
                "found": d.found,
                "last_known_head": d.last_known,
            })
        })
        .collect();
    if json {
        let value = json!({
            "ok": problem.is_none() && !witnesses_failed,
            "segments": report.segments,
            "frames": report.frames,
            "bytes": report.bytes,
            "signed_heads": report.heads,
            "signed_frames": report.signed_frames,
            "unsigned_frames": report.unsigned_frames,
            "audit_entries": report.audit_entries,
            "public_key": report.public_key,
            "discontinuities": discontinuities,
            "keystore": report.keystore.as_ref().map(|k| json!({
                "changes": k.changes,
                "live_keys": k.live,
                "erased_keys": k.erased,
                "changed_since_newest_head": k.changed_since_head,
            })),
            "cosigned_by": report.cosigned_by,
            "witnesses_asked": online.iter().map(|(url, a)| match a {
                Ok(said) => json!({"witness": url, "ok": true, "said": said}),
                Err(said) => json!({"witness": url, "ok": false, "said": said}),
            }).collect::<Vec<_>>(),
            "latest_head": report.latest_head.as_ref().map(|h| json!({
                "counter": h.counter,
                "tree_size": h.tree_size,
                "root": hex(&h.root),
                "audit_size": h.audit_size,
                "audit_root": hex(&h.audit_root),
                "time": time(h.time_unix_us),
            })),
            "first_problem": problem.map(|p| json!({
                "file": data.join(&p.path).display().to_string(),
                "offset": p.offset,
                "frame": p.frame,
                "reason": p.reason,
            })),
        });
        writeln!(out, "{value}")?;
    } else {
        match problem {
            None => {
                writeln!(
                    out,
                    "ok: {what} verified: {} segments, {} frames, {} bytes; {} signed heads (the newest covers {} \
                     frames and {} audit entries), {} audit entries",
                    report.segments,
                    report.frames,
                    report.bytes,
                    report.heads,
                    report.latest_head.as_ref().map_or(0, |h| h.tree_size),
                    report.latest_head.as_ref().map_or(0, |h| h.audit_size),
                    report.audit_entries
                )?;
                if report.unsigned_frames > 0 {
                    writeln!(
                        out,
                        "note: the last {} frames were written after the newest signed head (the log was not closed \
                         since): they are checked, not yet signed",
                        report.unsigned_frames
                    )?;
                }
                if let Some(h) = &report.latest_head {
                    writeln!(
                        out,
                        "newest signed head: {} (chained to every head before it), root {} at {} (public key {})",
                        h.counter,
                        hex(&h.root),
                        time(h.time_unix_us),
                        report.public_key
                    )?;
                }
                if let Some(k) = &report.keystore {
                    writeln!(
                        out,
                        "key store: change {}, {} live and {} erased key(s), every erasure recorded in the audit log{}",
                        k.changes,
                        k.live,
                        k.erased,
                        if k.changed_since_head { " (changed since the newest head)" } else { "" }
                    )?;
                }
                for w in &report.cosigned_by {
                    writeln!(out, "cosigned by witness {w}")?;
                }
                for d in &report.discontinuities {
                    let known = d.last_known.map_or("none".to_owned(), |c| format!("head {c}"));
                    writeln!(
                        out,
                        "DISCONTINUITY at head {} ({}): repaired; {}; last head known: {known}",
                        d.counter,
                        time(d.time_unix_us),
                        d.found.join("; ")
                    )?;
                }
            }
            Some(p) => {
                let mut shown = p.clone();
                shown.path = data.join(&p.path);
                writeln!(out, "FAILED: {shown}")?;
                writeln!(
                    out,
                    "the log is proven intact up to frame {} by a signed head",
                    report.signed_frames
                )?;
            }
        }
    }
    if !json {
        for (url, answer) in online {
            match answer {
                Ok(said) => writeln!(out, "witness {url}: {said}")?,
                Err(said) => writeln!(out, "FAILED: witness {url}: {said}")?,
            }
        }
    }
    Ok(if problem.is_none() && !witnesses_failed { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn verify_session(ctx: &Ctx, id: &str, json: bool) -> Result<ExitCode> {
    let _ = ctx.data();
    let log = ctx.open_to_read()?;
    let result = log.verify_session(id);
    ctx.close(log)?;
    let mut out = std::io::stdout().lock();
    match result {
        Ok(proof) => {
            if json {
                let frames: Vec<_> = proof
                    .frames
                    .iter()
                    .map(|f| json!({"frame": f.frame, "block": f.block, "leaf": hex(&f.leaf), "path_hashes": f.path.len()}))
                    .collect();
                writeln!(
                    out,
                    "{}",
                    json!({
                        "ok": true,
                        "session": proof.session,
                        "tree_size": proof.head.tree_size,
                        "root": hex(&proof.head.root),
                        "events": proof.events,
                        "unsealed_events": proof.unsealed_events,
                        "frames": frames,
                    })
                )?;
            } else {
                writeln!(
                    out,
                    "ok: session {id}: {} block frame(s), {} events, each proven in the log of {} frames under signed root {}",
                    proof.frames.len(),
                    proof.events,
                    proof.head.tree_size,
                    hex(&proof.head.root)
                )?;
                if proof.unsealed_events > 0 {
                    writeln!(
                        out,
                        "{} events are not yet sealed into a block and not yet in the tree",
                        proof.unsealed_events
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if json {
                writeln!(out, "{}", json!({"ok": false, "session": id, "reason": e.to_string()}))?;
            } else {
                writeln!(out, "FAILED: session {id}: {e}")?;
            }
            Ok(ExitCode::from(1))
        }
    }
}
