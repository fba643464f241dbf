//! `otter size`: the size gate for a build pipeline. Does the app fit the
//! smallest OTA slot (or a named slot), within a share of it that leaves room
//! for the next release? Exit 1 when not; `--explain` says which slot size
//! would fit with 20% to spare and what to change in the partition table.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use otter_format::flashplan::read_table;
use otter_format::image::inspect;
use otter_format::partition::suggest::{slot_size, SuggestOptions};
use otter_format::partition::{Entry, OwnedTable, APP_ALIGN};
use serde_json::{json, Value};

use crate::cmd::flash_plan::parse_offset;
use crate::cmd::partitions::parse_size;
use crate::output::{check_exit, human_size, print_json};

/// Spare room `--explain` plans for, in percent of the app size.
const MARGIN_PERCENT: u32 = 20;

/// Arguments of `otter size`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The app image (build/<project>.bin).
    image: PathBuf,
    /// The partition table: a gen_esp32part CSV or a binary table.
    #[arg(long)]
    partitions: PathBuf,
    /// Check this app partition (by name) instead of the smallest OTA slot.
    #[arg(long)]
    slot: Option<String>,
    /// Largest share of the slot the app may fill, in percent.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u8).range(1..=100))]
    max_percent: u8,
    /// Say which slot size would fit with 20% to spare, and what to change in
    /// the partition table.
    #[arg(long)]
    explain: bool,
    /// Flash size (4MB, ...), so --explain can say whether the resized table
    /// still fits.
    #[arg(long, value_parser = parse_size)]
    flash_size: Option<u64>,
    /// Flash offset of the partition table (for a CSV with automatic offsets).
    #[arg(long, default_value = "0x8000", value_parser = parse_offset)]
    table_offset: u32,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `otter size`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let image =
        std::fs::read(&args.image).with_context(|| format!("reading {}", args.image.display()))?;
    let info = inspect(&image)
        .with_context(|| format!("{} is not a readable ESP32 image", args.image.display()))?;
    let table_bytes = std::fs::read(&args.partitions)
        .with_context(|| format!("reading {}", args.partitions.display()))?;
    let (table, _) = read_table(&table_bytes, args.table_offset)
        .with_context(|| args.partitions.display().to_string())?;

    if let Some(e) = info.kind.not_an_app_error() {
        let msg = format!("{}: {e}", args.image.display());
        if args.json {
            print_json(&json!({ "ok": false, "error": "not-an-app", "message": msg }))?;
        } else {
            eprintln!("error: {msg}");
        }
        return Ok(check_exit(false));
    }

    let candidates = candidates(&table, args.slot.as_deref(), &args.partitions)?;
    let Some(slot) = candidates.iter().min_by_key(|e| e.partition.size).copied() else {
        let msg = format!(
            "{}: the table has no OTA slot and no factory partition, so there is no slot for the \
             app; add otadata and ota_0/ota_1 (otter partitions suggest --app {} --flash-size ...)",
            args.partitions.display(),
            args.image.display()
        );
        if args.json {
            print_json(&json!({ "ok": false, "error": "no-app-slot", "message": msg }))?;
        } else {
            eprintln!("error: {msg}");
        }
        return Ok(check_exit(false));
    };

    let app = image.len() as u64;
    let size = u64::from(slot.partition.size);
    let percent = app as f64 * 100.0 / size.max(1) as f64;
    let fits = app <= size;
    let within = u128::from(app) * 100 <= u128::from(size) * u128::from(args.max_percent);
    let ok = fits && within;
    let name = &slot.name;
    let which = if args.slot.is_some() {
        format!("`{name}`")
    } else if candidates.len() > 1 {
        format!("`{name}` (the smallest of {} OTA slots)", candidates.len())
    } else {
        format!("`{name}`")
    };
    let sizes = format!("{} of {}", human_size(app), human_size(size));
    let message = if !fits {
        format!(
            "{}: the app is {app} bytes but {which} holds {size} bytes ({sizes}, {percent:.1}%): \
             it does not fit, so flashing or updating it fails; enlarge the slot or shrink the app",
            args.image.display()
        )
    } else if !within {
        format!(
            "{}: the app fills {percent:.1}% of {which} ({sizes}), more than {}%: the next \
             release may not fit; enlarge the slot or shrink the app",
            args.image.display(),
            args.max_percent
        )
    } else {
        format!(
            "{}: the app fills {percent:.1}% of {which} ({sizes}), within {}%",
            args.image.display(),
            args.max_percent
        )
    };

    let explain = if args.explain {
        Some(explain(&args, &table, slot, app)?)
    } else {
        None
    };

    if args.json {
        print_json(&json!({
            "ok": ok,
            "image": args.image,
            "app_size": app,
            "partitions": args.partitions,
            "slot": {
                "name": name,
                "offset": slot.partition.offset,
                "size": slot.partition.size,
            },
            "slots_checked": candidates.iter().map(|e| json!({
                "name": e.name,
                "size": e.partition.size,
            })).collect::<Vec<_>>(),
            "percent_used": percent,
            "max_percent": args.max_percent,
            "fits": fits,
            "within_limit": within,
            "message": message,
            "explain": explain.as_ref().map(|e| &e.json),
        }))?;
    } else {
        if ok {
            println!("ok: {message}");
        } else {
            eprintln!("error: {message}");
            if !args.explain {
                eprintln!(
                    "hint: run with --explain to see the slot size that fits and what to change"
                );
            }
        }
        if let Some(e) = &explain {
            print!("{}", e.text);
        }
    }
    Ok(check_exit(ok))
}

/// The slots the app must fit: the named one; else every OTA slot; else the
/// factory partition.
fn candidates<'a>(
    table: &'a OwnedTable,
    slot: Option<&str>,
    path: &Path,
) -> anyhow::Result<Vec<&'a Entry>> {
    if let Some(name) = slot {
        let Some(e) = table.entries.iter().find(|e| e.name == name) else {
            let apps: Vec<&str> = table
                .entries
                .iter()
                .filter(|e| e.partition.is_app())
                .map(|e| e.name.as_str())
                .collect();
            bail!(
                "{}: no partition named `{name}`; the app partitions are: {}",
                path.display(),
                apps.join(", ")
            );
        };
        if !e.partition.is_app() {
            bail!(
                "{}: partition `{name}` is not an app partition",
                path.display()
            );
        }
        return Ok(vec![e]);
    }
    let ota: Vec<&Entry> = table
        .entries
        .iter()
        .filter(|e| e.partition.is_ota_slot())
        .collect();
    if !ota.is_empty() {
        return Ok(ota);
    }
    Ok(table
        .entries
        .iter()
        .filter(|e| e.partition.is_factory())
        .collect())
}

struct Explanation {
    text: String,
    json: Value,
}

/// One partition's move or resize.
struct Change {
    name: String,
    line: Option<usize>,
    old_offset: u32,
    new_offset: u32,
    old_size: u32,
    new_size: u32,
}

fn explain(args: &Args, table: &OwnedTable, slot: &Entry, app: u64) -> anyhow::Result<Explanation> {
    let flash = args.flash_size.unwrap_or(u64::from(u32::MAX));
    let opts = SuggestOptions {
        margin_percent: MARGIN_PERCENT,
        max_percent: args.max_percent,
        ..SuggestOptions::new(app, flash)
    };
    let needed = slot_size(&opts).context("computing the slot size")?;
    let needed32 = u32::try_from(needed).context("the app needs a slot past 4 GiB")?;

    // Which partitions grow: every app slot the app is planned into. OTA
    // slots stay equal, so all of them grow together, and the factory
    // partition (where `flash-plan` writes the app first) grows with them.
    let grow = |e: &Entry| {
        e.partition.size < needed32
            && if slot.partition.is_ota_slot() || slot.partition.is_factory() {
                e.partition.is_ota_slot() || e.partition.is_factory()
            } else {
                e.name == slot.name
            }
    };
    let mut resized = table.clone();
    let mut order: Vec<usize> = (0..resized.entries.len()).collect();
    order.sort_by_key(|&i| resized.entries[i].partition.offset);
    let mut delta: u64 = 0;
    for &i in &order {
        let e = &mut resized.entries[i];
        let p = &mut e.partition;
        if p.is_primary_boot_row() {
            continue;
        }
        let align = u64::from(p.ty.offset_alignment());
        let moved = (u64::from(p.offset) + delta).div_ceil(align) * align;
        delta = moved - u64::from(p.offset);
        p.offset = u32::try_from(moved).context("the resized table passes 4 GiB")?;
        if grow(&table.entries[i]) {
            delta += u64::from(needed32 - p.size);
            p.size = needed32;
        }
    }
    let mut end = resized
        .entries
        .iter()
        .map(|e| e.partition.end_u64())
        .max()
        .unwrap_or(0);
    // Past the flash: take the overflow from a data partition at the end.
    let mut shrunk = None;
    if let Some(fs) = args.flash_size {
        if end > fs {
            let over = end - fs;
            if let Some(&last) = order.last() {
                let p = &mut resized.entries[last].partition;
                if !p.is_app() && u64::from(p.size) > over {
                    p.size -= u32::try_from(over).unwrap_or(u32::MAX);
                    shrunk = Some((resized.entries[last].name.clone(), over));
                    end = fs;
                }
            }
        }
    }
    let changes: Vec<Change> = table
        .entries
        .iter()
        .zip(&resized.entries)
        .filter(|(a, b)| a.partition != b.partition)
        .map(|(a, b)| Change {
            name: a.name.clone(),
            line: a.line,
            old_offset: a.partition.offset,
            new_offset: b.partition.offset,
            old_size: a.partition.size,
            new_size: b.partition.size,
        })
        .collect();
    let fits_flash = args.flash_size.map(|fs| end <= fs);

    let mut text = String::new();
    let current = u64::from(slot.partition.size);
    text.push_str(&format!(
        "explain: a slot of {needed:#x} bytes ({}) holds this {} app with {MARGIN_PERCENT}% to \
         spare ({app} bytes x 1.{MARGIN_PERCENT}, within {}%, rounded up to 64 KiB because app \
         partitions are 0x{APP_ALIGN:x}-aligned); `{}` is {current:#x} ({}).\n",
        human_size(needed),
        human_size(app),
        args.max_percent,
        slot.name,
        human_size(current)
    ));
    if changes.is_empty() {
        text.push_str("explain: the slot is already large enough; nothing to change.\n");
    } else {
        text.push_str(&format!("explain: in {}:\n", args.partitions.display()));
        for c in &changes {
            let line = c.line.map(|l| format!(" (line {l})")).unwrap_or_default();
            let mut what = Vec::new();
            if c.old_offset != c.new_offset {
                what.push(format!("offset {:#x} -> {:#x}", c.old_offset, c.new_offset));
            }
            if c.old_size != c.new_size {
                what.push(format!("size {:#x} -> {:#x}", c.old_size, c.new_size));
            }
            text.push_str(&format!("  {}{line}: {}\n", c.name, what.join(", ")));
        }
        if let Some((name, by)) = &shrunk {
            text.push_str(&format!(
                "explain: `{name}` shrinks by {by:#x} so the table still fits the flash.\n"
            ));
        }
        match fits_flash {
            Some(true) => text.push_str(&format!(
                "explain: the table then ends at {end:#x}, within the {} flash.\n",
                human_size(args.flash_size.unwrap_or(0))
            )),
            Some(false) => text.push_str(&format!(
                "explain: the table then ends at {end:#x}, past the {} flash: use a larger flash, \
                 remove the factory partition, or shrink the app.\n",
                human_size(args.flash_size.unwrap_or(0))
            )),
            None => text.push_str(&format!(
                "explain: the table then ends at {end:#x}; pass --flash-size to check it fits.\n"
            )),
        }
        text.push_str("explain: the resized table:\n");
        for l in resized.to_csv().lines() {
            text.push_str(&format!("  {l}\n"));
        }
        text.push_str(&format!(
            "explain: or start from a fresh layout: otter partitions suggest --app {} --flash-size SIZE\n",
            args.image.display()
        ));
    }
    let json = json!({
        "needed_slot_size": needed,
        "margin_percent": MARGIN_PERCENT,
        "changes": changes.iter().map(|c| json!({
            "name": c.name,
            "line": c.line,
            "old_offset": c.old_offset,
            "new_offset": c.new_offset,
            "old_size": c.old_size,
            "new_size": c.new_size,
        })).collect::<Vec<_>>(),
        "end": end,
        "flash_size": args.flash_size,
        "fits_flash": fits_flash,
        "shrunk": shrunk.as_ref().map(|(n, by)| json!({ "name": n, "by": by })),
        "csv": resized.to_csv(),
    });
    Ok(Explanation { text, json })
}
